// The gateway's upstream tools, end to end: a real third-party MCP server from npm
// (`@modelcontextprotocol/server-everything`, Streamable HTTP on loopback) configured as an
// operator-added provider whose tools come from that server (`auth = "api_key"`, `tools = { kind =
// "mcp" }`). A person signs up, an app gets a token, the person connects the provider with a key;
// then an MCP client (the official TypeScript SDK) on Bridgekeeper's /mcp sees, next to the
// built-ins, the server's tools under `everything_<tool>` and calls them: the answer (text, image,
// structured content) arrives unchanged, the server received the tenant's key as its bearer token
// and never the client's token. Another tenant without a connection sees none of them and cannot
// call them; a grant that disables the provider hides them; when the server is down, the gateway
// still lists the built-ins.
//
//   BK_BIN=/abs/path/to/bridgekeeper e2e/connections/run.sh     (runs every *.test.mjs here)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';

import { UserAgent } from './lib/agent.mjs';
import { api, authorizeApp, signUpAndAuthorizeApp, startBridgekeeper } from './lib/bridgekeeper.mjs';
import { everythingEnv, startEverything, withLogsOf } from './lib/everything.mjs';
import { setTimeout as sleep } from 'node:timers/promises';
import { parsePrometheus } from './lib/python.mjs';

const APP_REDIRECT = 'http://127.0.0.1:53690/connected';
const TEST_TIMEOUT_MS = 60_000;
const rand = () => randomBytes(6).toString('hex');

/**
 * A 2026-07-28 request to `issuer`'s /mcp as the SDKs send it (stateless: the `_meta` envelope in
 * `params`, the version, method and name headers): the fetch Response.
 */
const modernPost = (issuer, token, { id = 1, method = 'tools/call', params = {}, capabilities = {}, meta = {}, stream = false, signal } = {}) =>
    fetch(new URL('/mcp', issuer), {
        method: 'POST',
        signal,
        headers: {
            Authorization: `Bearer ${token}`,
            'Content-Type': 'application/json',
            Accept: stream ? 'application/json, text/event-stream' : 'application/json',
            'MCP-Protocol-Version': '2026-07-28',
            'Mcp-Method': method,
            ...(params.name ? { 'Mcp-Name': params.name } : {})
        },
        body: JSON.stringify({
            jsonrpc: '2.0',
            id,
            method,
            params: {
                ...params,
                _meta: {
                    'io.modelcontextprotocol/protocolVersion': '2026-07-28',
                    'io.modelcontextprotocol/clientCapabilities': capabilities,
                    ...meta
                }
            }
        })
    });

describe('the gateway: a tenant’s connected MCP server as tools on /mcp (server-everything)', () => {
    let everything;
    let bk;
    const key = `ev-key-${rand()}`;
    let alice;
    let bob;

    /** An MCP client (official TypeScript SDK) on Bridgekeeper's /mcp with `token`. */
    const mcpClient = async token => {
        const client = new Client({ name: 'gateway-e2e', version: '1.0.0' });
        const transport = new StreamableHTTPClientTransport(new URL('/mcp', bk.issuer), {
            requestInit: { headers: { Authorization: `Bearer ${token}` } }
        });
        await client.connect(transport);
        return client;
    };

    before(async () => {
        everything = await startEverything();
        bk = await startBridgekeeper(
            everythingEnv(everything.url, {
                BRIDGEKEEPER_METRICS__PUBLIC: 'true',
                BRIDGEKEEPER_CONNECTIONS__MCP_CALL_TIMEOUT_MS: '3000'
            })
        );
        const person = async name => {
            const agent = new UserAgent();
            const app = await signUpAndAuthorizeApp(agent, bk.issuer, {
                email: `${name}-${rand()}@example.com`,
                password: `pw-${rand()}-correct horse`,
                redirectUri: APP_REDIRECT,
                scope: 'connections universal-mcp-read-write'
            });
            return { agent, app };
        };
        alice = await person('alice');
        bob = await person('bob');
        const res = await api(bk.issuer, 'POST', '/api/v1/connections/initiate', {
            token: alice.app.accessToken,
            json: { providerId: 'everything', redirectUrl: APP_REDIRECT, providerParams: { apiKey: key } }
        });
        assert.equal(res.status, 201, `connect with a key: ${res.text}`);
    });

    after(async () => {
        await bk?.stop();
        await everything?.stop();
    });

    const withLogs = withLogsOf(() => bk);

    test(
        'the tenant sees the server’s tools next to the built-ins, namespaced, read-only where the server says so',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const client = await mcpClient(alice.app.accessToken);
            const { tools } = await client.listTools();
            const names = tools.map(t => t.name);
            for (const n of ['whoami', 'list-connections', 'everything_echo', 'everything_get-sum', 'everything_get-tiny-image'])
                assert.ok(names.includes(n), `${n} in ${names.join(', ')}`);
            assert.ok(names.indexOf('whoami') < names.indexOf('everything_echo'), 'built-ins first');
            const echo = tools.find(t => t.name === 'everything_echo');
            assert.equal(echo.annotations.readOnlyHint, true, 'echo says it only reads');
            assert.ok(echo.inputSchema.properties.message, 'the upstream input schema passes through');
            // The list is stable while nothing changes.
            const again = (await client.listTools()).tools.map(t => t.name);
            assert.deepEqual(again, names);
            await client.close();
        })
    );

    test(
        'calls reach the server with the tenant’s key (never the client’s token) and answers pass unchanged',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const before = everything.requests.length;
            const client = await mcpClient(alice.app.accessToken);
            const echoed = await client.callTool({ name: 'everything_echo', arguments: { message: 'hello upstream' } });
            assert.equal(echoed.isError ?? false, false);
            assert.equal(echoed.content[0].type, 'text');
            assert.match(echoed.content[0].text, /hello upstream/);
            const sum = await client.callTool({ name: 'everything_get-sum', arguments: { a: 2, b: 40 } });
            assert.match(sum.content[0].text, /42/);
            const image = await client.callTool({ name: 'everything_get-tiny-image', arguments: {} });
            const img = image.content.find(c => c.type === 'image');
            assert.ok(img && img.mimeType === 'image/png' && img.data.length > 50, `an image block: ${JSON.stringify(image.content).slice(0, 300)}`);
            const structured = await client.callTool({ name: 'everything_get-structured-content', arguments: { location: 'New York' } });
            assert.ok(structured.structuredContent, `structured content passes: ${JSON.stringify(structured)}`);
            await client.close();
            const seen = everything.requests.slice(before);
            assert.ok(seen.some(r => r.rpc === 'tools/call'), 'the server was called');
            for (const r of seen) {
                assert.equal(r.authorization, `Bearer ${key}`, `every request carries the tenant's key: ${JSON.stringify(r)}`);
                assert.ok(!r.authorization?.includes(alice.app.accessToken), 'never the client token');
            }
        })
    );

    test(
        'answers pass through a filter: token-shaped text is redacted, text beyond 50 KB is cut with a notice',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const client = await mcpClient(alice.app.accessToken);
            const leaked = await client.callTool({
                name: 'everything_echo',
                arguments: { message: 'the key is Bearer abcdefghijklmnopqrstuvwxyz and ghp_0123456789abcdefghijABCDEFGHIJ' }
            });
            const text = leaked.content.map(c => c.text).join(' ');
            assert.ok(!text.includes('abcdefghijklmnopqrstuvwxyz') && !text.includes('ghp_0123'), text);
            assert.match(text, /\[REDACTED\]/);
            const big = await client.callTool({ name: 'everything_echo', arguments: { message: 'x'.repeat(60 * 1024) } });
            const total = big.content.filter(c => c.type === 'text').reduce((n, c) => n + c.text.length, 0);
            assert.ok(total < 52 * 1024, `cut: ${total}`);
            assert.match(big.content.at(-1).text, /the gateway cut \d+ KB/);
            await client.close();
        })
    );

    test(
        'faults: a hanging call ends at the time limit, a 10 MB answer is cut, a malformed one is a clear error; the session lives on',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const client = await mcpClient(alice.app.accessToken);
            const echo = args => client.callTool({ name: 'everything_echo', arguments: args });
            try {
                everything.setMode('hang');
                const started = Date.now();
                const hung = await echo({ message: 'x' });
                assert.equal(hung.isError, true);
                assert.match(hung.content[0].text, /no answer within 3 s/, JSON.stringify(hung));
                assert.ok(Date.now() - started < 8000, `bounded: ${Date.now() - started} ms`);
                everything.setMode('huge');
                const huge = await echo({ message: 'x' });
                const total = huge.content.filter(c => c.type === 'text').reduce((n, c) => n + c.text.length, 0);
                assert.ok(total < 52 * 1024, `cut to 50 KB: ${total}`);
                assert.match(huge.content.at(-1).text, /the gateway cut/);
                everything.setMode('garbage');
                const garbage = await echo({ message: 'x' });
                assert.equal(garbage.isError, true);
                assert.match(garbage.content[0].text, /everything/, JSON.stringify(garbage));
            } finally {
                everything.setMode('ok');
            }
            const fine = await echo({ message: 'after the faults' });
            assert.match(fine.content[0].text, /after the faults/);
            await client.close();
        })
    );

    test(
        'the server’s prompts and resources too: listed namespaced, got and read through the gateway',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const client = await mcpClient(alice.app.accessToken);
            const { prompts } = await client.listPrompts();
            const names = prompts.map(p => p.name);
            assert.ok(names.includes('everything_simple-prompt') && names.includes('everything_args-prompt'), names.join(', '));
            const got = await client.getPrompt({ name: 'everything_args-prompt', arguments: { city: 'Lisbon' } });
            assert.ok(got.messages.length > 0 && JSON.stringify(got.messages).includes('Lisbon'), JSON.stringify(got));
            // A missing argument is the client's mistake: invalid params, as the server said.
            const missing_arg = await client.getPrompt({ name: 'everything_args-prompt', arguments: {} }).then(
                r => assert.fail(`expected -32602, got ${JSON.stringify(r)}`),
                e => e
            );
            assert.equal(missing_arg.code, -32602, String(missing_arg));
            assert.match(missing_arg.message, /city/);
            const { resources } = await client.listResources();
            const doc = resources.find(r => r.uri.startsWith('demo://resource/static/document/'));
            assert.ok(doc, JSON.stringify(resources.slice(0, 3)));
            assert.ok(doc.name.startsWith('everything_'), `namespaced: ${doc.name}`);
            const read = await client.readResource({ uri: doc.uri });
            assert.equal(read.contents[0].uri, doc.uri);
            assert.ok((read.contents[0].text ?? read.contents[0].blob ?? '').length > 0);
            const { resourceTemplates } = await client.listResourceTemplates();
            assert.ok(resourceTemplates.some(t => t.uriTemplate === 'demo://resource/dynamic/text/{resourceId}'), JSON.stringify(resourceTemplates));
            const dynamic = await client.readResource({ uri: 'demo://resource/dynamic/text/7' });
            assert.equal(dynamic.contents[0].uri, 'demo://resource/dynamic/text/7');
            const missing = await client.readResource({ uri: 'nowhere://x' }).then(
                () => 'read',
                e => String(e.message)
            );
            assert.match(missing, /not found/i);
            await client.close();
            // Bob holds no connection: nothing of it, and its resources are not found for him.
            const other = await mcpClient(bob.app.accessToken);
            assert.deepEqual((await other.listPrompts()).prompts, []);
            const hidden = await other.readResource({ uri: doc.uri }).then(
                () => 'read',
                e => String(e.message)
            );
            assert.match(hidden, /not found/i);
            await other.close();
        })
    );

    test(
        'the REST face: a provider’s tools and a call, for backends without MCP, under the same policy',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const listed = await api(bk.issuer, 'GET', '/api/v1/providers/everything/tools', { token: alice.app.accessToken });
            assert.equal(listed.status, 200, listed.text);
            const echo = listed.body.tools.find(t => t.name === 'echo');
            assert.ok(echo, listed.text.slice(0, 500));
            assert.equal(echo.mode, 'read');
            assert.equal(echo.mcpName, 'everything_echo');
            assert.ok(echo.parameters.properties.message);
            assert.equal(listed.body.tools.find(t => t.name === 'toggle-simulated-logging').mode, 'write');
            const called = await api(bk.issuer, 'POST', '/api/v1/providers/everything/tools/echo', {
                token: alice.app.accessToken,
                json: { message: 'over REST' }
            });
            assert.equal(called.status, 200, called.text);
            assert.match(called.body.content[0].text, /over REST/);
            const bad = await api(bk.issuer, 'POST', '/api/v1/providers/everything/tools/get-sum', {
                token: alice.app.accessToken,
                json: { a: 'two' }
            });
            assert.equal(bad.body.isError, true, `invalid arguments are a tool error: ${bad.text}`);
            // Bob has no connection: no tools, and a call is 404 like an unknown tool.
            const none = await api(bk.issuer, 'GET', '/api/v1/providers/everything/tools', { token: bob.app.accessToken });
            assert.deepEqual(none.body.tools, []);
            const refused = await api(bk.issuer, 'POST', '/api/v1/providers/everything/tools/echo', {
                token: bob.app.accessToken,
                json: { message: 'x' }
            });
            assert.equal(refused.status, 404, refused.text);
            assert.match(refused.headers['content-type'], /problem\+json/);
            const anonymous = await api(bk.issuer, 'GET', '/api/v1/providers/everything/tools');
            assert.equal(anonymous.status, 401);
        })
    );

    test(
        'progress from the server reaches the client while the call runs, under the client’s own token',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const client = await mcpClient(alice.app.accessToken);
            const seen = [];
            const r = await client.callTool(
                { name: 'everything_trigger-long-running-operation', arguments: { duration: 2, steps: 4 } },
                undefined,
                { onprogress: p => seen.push(p), timeout: 20_000 }
            );
            assert.match(r.content[0].text, /Long running operation completed/);
            assert.deepEqual(
                seen.map(p => [p.progress, p.total]),
                [[1, 4], [2, 4], [3, 4], [4, 4]],
                `every step relayed in order: ${JSON.stringify(seen)}`
            );
            await client.close();
        })
    );

    test(
        'a client that cancels a running call stops it at the server too (notifications/cancelled relayed)',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const client = await mcpClient(alice.app.accessToken);
            const mark = everything.requests.length;
            const abort = new AbortController();
            const progressed = new Promise(resolve => {
                client
                    .callTool(
                        { name: 'everything_trigger-long-running-operation', arguments: { duration: 30, steps: 30 } },
                        undefined,
                        { signal: abort.signal, onprogress: resolve, timeout: 60_000 }
                    )
                    .catch(() => {});
            });
            await progressed; // the call runs upstream
            abort.abort('the person changed their mind');
            let cancelled;
            for (let i = 0; i < 50 && !cancelled; i++) {
                await sleep(100);
                cancelled = everything.requests.slice(mark).find(r => r.rpc === 'notifications/cancelled');
            }
            assert.ok(cancelled, `the server was told: ${JSON.stringify(everything.requests.slice(mark).map(r => r.rpc))}`);
            assert.equal(cancelled.authorization, `Bearer ${key}`, 'with the tenant’s credential');
            // The session goes on.
            const r = await client.callTool({ name: 'everything_echo', arguments: { message: 'still here' } });
            assert.match(r.content[0].text, /still here/);
            await client.close();
        })
    );

    /** A 2026-07-28 tools/call (stateless, `_meta` envelope) answered as an event stream. */
    const modernCall = (token, name, args, meta, signal) =>
        modernPost(bk.issuer, token, {
            id: 'call-1',
            params: { name, arguments: args },
            meta: { 'io.modelcontextprotocol/clientInfo': { name: 'raw-2026', version: '1' }, ...meta },
            stream: true,
            signal
        });

    test(
        '2026-07-28: progress and log messages stream before the result; closing the stream cancels the call upstream',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const res = await modernCall(
                alice.app.accessToken,
                'everything_trigger-long-running-operation',
                { duration: 1, steps: 2 },
                { progressToken: 'p-42', 'io.modelcontextprotocol/logLevel': 'info' }
            );
            assert.equal(res.status, 200);
            assert.match(res.headers.get('content-type'), /text\/event-stream/);
            const messages = (await res.text())
                .split('\n')
                .filter(l => l.startsWith('data:'))
                .map(l => JSON.parse(l.slice(5)));
            const progress = messages.filter(m => m.method === 'notifications/progress').map(m => m.params);
            assert.deepEqual(progress, [
                { progressToken: 'p-42', progress: 1, total: 2 },
                { progressToken: 'p-42', progress: 2, total: 2 }
            ]);
            const last = messages.at(-1);
            assert.equal(last.id, 'call-1');
            assert.equal(last.result.resultType, 'complete');
            assert.match(last.result.content[0].text, /Long running operation completed/);
            assert.ok(messages.some(m => m.method === 'notifications/message' && /called tool/.test(m.params.data.message)));

            // Closing the stream is the cancellation (2026-07-28, Streamable HTTP).
            const mark = everything.requests.length;
            const abort = new AbortController();
            const long = await modernCall(
                alice.app.accessToken,
                'everything_trigger-long-running-operation',
                { duration: 30, steps: 30 },
                { progressToken: 'p-43' },
                abort.signal
            );
            const reader = long.body.getReader();
            const first = new TextDecoder().decode((await reader.read()).value);
            assert.match(first, /notifications\/progress/, 'the call is running');
            abort.abort();
            let cancelled;
            for (let i = 0; i < 50 && !cancelled; i++) {
                await sleep(100);
                cancelled = everything.requests.slice(mark).find(r => r.rpc === 'notifications/cancelled');
            }
            assert.ok(cancelled, `the server was told: ${JSON.stringify(everything.requests.slice(mark).map(r => r.rpc))}`);
        })
    );

    test(
        'the server’s sampling and elicitation requests reach the client of the call that caused them; a client without the capability is refused cleanly',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const asked = [];
            const able = new Client(
                { name: 'gateway-e2e-sampling', version: '1.0.0' },
                { capabilities: { sampling: {}, elicitation: { form: {} } } }
            );
            able.setRequestHandler(CreateMessageRequestSchema, async req => {
                asked.push(req.params);
                // A scripted stand-in for the person's LLM (nothing real can run here).
                return { model: 'scripted-llm', role: 'assistant', content: { type: 'text', text: `scripted answer to: ${req.params.messages[0].content.text}` } };
            });
            able.setRequestHandler(ElicitRequestSchema, async req => {
                asked.push(req.params);
                return { action: 'accept', content: { name: 'Ada Lovelace' } };
            });
            await able.connect(
                new StreamableHTTPClientTransport(new URL('/mcp', bk.issuer), {
                    requestInit: { headers: { Authorization: `Bearer ${alice.app.accessToken}` } }
                })
            );
            const names = (await able.listTools()).tools.map(t => t.name);
            assert.ok(names.includes('everything_trigger-sampling-request') && names.includes('everything_trigger-elicitation-request'), names.join(', '));
            const sampled = await able.callTool({ name: 'everything_trigger-sampling-request', arguments: { prompt: 'the capital of Portugal', maxTokens: 20 } });
            assert.equal(sampled.isError ?? false, false, JSON.stringify(sampled));
            assert.match(sampled.content[0].text, /scripted-llm/);
            assert.match(sampled.content[0].text, /scripted answer to: .*the capital of Portugal/);
            assert.equal(asked[0].maxTokens, 20, 'the server’s request reached the client as it was sent');
            const elicited = await able.callTool({ name: 'everything_trigger-elicitation-request', arguments: {} });
            assert.match(elicited.content.map(c => c.text).join('\n'), /Ada Lovelace/, JSON.stringify(elicited));
            assert.equal(asked[1].requestedSchema.required[0], 'name');
            await able.close();

            // A client that declared neither: the server's request is refused, the call ends with
            // the server's error, the session goes on.
            const plain = await mcpClient(alice.app.accessToken);
            const refused = await plain.callTool({ name: 'everything_trigger-sampling-request', arguments: { prompt: 'x', maxTokens: 5 } }).then(
                r => JSON.stringify(r),
                e => String(e.message)
            );
            assert.match(refused, /did not declare the capability sampling\/createMessage needs/);
            const r = await plain.callTool({ name: 'everything_echo', arguments: { message: 'still here' } });
            assert.match(r.content[0].text, /still here/);
            await plain.close();
        })
    );

    test(
        'security: a question an upstream server relays to the client passes the redactor, as answers do',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZW5hbnQtc2VjcmV0In0.c2lnbmF0dXJlLWJ5dGVzLWhlcmU';
            const asked = [];
            const client = new Client({ name: 'gateway-e2e-redaction', version: '1.0.0' }, { capabilities: { sampling: {} } });
            client.setRequestHandler(CreateMessageRequestSchema, async req => {
                asked.push(req.params);
                return { model: 'scripted-llm', role: 'assistant', content: { type: 'text', text: 'ok' } };
            });
            await client.connect(
                new StreamableHTTPClientTransport(new URL('/mcp', bk.issuer), {
                    requestInit: { headers: { Authorization: `Bearer ${alice.app.accessToken}` } }
                })
            );
            await client.callTool({ name: 'everything_trigger-sampling-request', arguments: { prompt: `leak ${jwt}`, maxTokens: 5 } });
            assert.equal(asked.length, 1, 'the question reached the client');
            const seen = JSON.stringify(asked[0]);
            assert.ok(!seen.includes(jwt), `a token-shaped string reached the client: ${seen}`);
            assert.match(seen, /\[REDACTED\]/);
            await client.close();
        })
    );

    test(
        '2026-07-28: a listen stream watching a resource of the server hears when it changes; closing it unsubscribes upstream',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const client = await mcpClient(alice.app.accessToken);
            const { resources } = await client.listResources();
            const uri = resources.find(r => r.uri.startsWith('demo://resource/static/document/')).uri;
            const mark = everything.requests.length;
            const abort = new AbortController();
            const res = await modernPost(bk.issuer, alice.app.accessToken, {
                id: 'sub-1',
                method: 'subscriptions/listen',
                params: { notifications: { resourceSubscriptions: [uri, 'nowhere://not-offered'] } },
                stream: true,
                signal: abort.signal
            });
            assert.equal(res.status, 200);
            const reader = res.body.getReader();
            const decoder = new TextDecoder();
            let buffered = '';
            const nextMessage = async () => {
                for (;;) {
                    const at = buffered.indexOf('\n\n');
                    if (at >= 0) {
                        const chunk = buffered.slice(0, at);
                        buffered = buffered.slice(at + 2);
                        const data = chunk.split('\n').find(l => l.startsWith('data:'));
                        if (data) return JSON.parse(data.slice(5));
                        continue;
                    }
                    const { value, done } = await reader.read();
                    if (done) throw new Error('the stream ended');
                    buffered += decoder.decode(value, { stream: true });
                }
            };
            const ack = await nextMessage();
            assert.equal(ack.method, 'notifications/subscriptions/acknowledged');
            assert.deepEqual(ack.params.notifications.resourceSubscriptions, [uri], 'only what a connection offers is honoured');
            assert.ok(everything.requests.slice(mark).some(r => r.rpc === 'resources/subscribe'), 'subscribed upstream');
            // The server starts sending updates for what its session subscribed to.
            await client.callTool({ name: 'everything_toggle-subscriber-updates', arguments: {} });
            try {
                const update = await Promise.race([
                    nextMessage(),
                    sleep(15_000).then(() => assert.fail('no resource update within 15 s'))
                ]);
                assert.equal(update.method, 'notifications/resources/updated');
                assert.equal(update.params.uri, uri);
                assert.equal(update.params._meta['io.modelcontextprotocol/subscriptionId'], 'sub-1');
            } finally {
                await client.callTool({ name: 'everything_toggle-subscriber-updates', arguments: {} });
                abort.abort();
            }
            let unsubscribed;
            for (let i = 0; i < 50 && !unsubscribed; i++) {
                await sleep(100);
                unsubscribed = everything.requests.slice(mark).find(r => r.rpc === 'resources/unsubscribe');
            }
            assert.ok(unsubscribed, 'the last watcher gone, the upstream subscription ends');
            await client.close();
        })
    );

    test(
        '2026-07-28: the server’s sampling and elicitation requests become input rounds the client answers on its retry',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const round = async (name, args, extra) => {
                const res = await modernPost(bk.issuer, alice.app.accessToken, {
                    id: 11,
                    params: { name, arguments: args, ...extra },
                    capabilities: { sampling: {}, elicitation: { form: {} } }
                });
                assert.equal(res.status, 200);
                const body = await res.json();
                assert.ok(body.result, JSON.stringify(body));
                return body.result;
            };
            const args = { prompt: 'the capital of Portugal', maxTokens: 20 };
            const asked = await round('everything_trigger-sampling-request', args, {});
            assert.equal(asked.resultType, 'input_required', JSON.stringify(asked));
            const [[key, question]] = Object.entries(asked.inputRequests);
            assert.equal(question.method, 'sampling/createMessage');
            assert.equal(question.params.maxTokens, 20);
            const done = await round('everything_trigger-sampling-request', args, {
                requestState: asked.requestState,
                inputResponses: {
                    [key]: { model: 'scripted-llm', role: 'assistant', content: { type: 'text', text: 'scripted: Lisbon' } }
                }
            });
            assert.equal(done.resultType, 'complete', JSON.stringify(done));
            assert.match(done.content[0].text, /scripted: Lisbon/);
            // The state is spent: the parked call ended.
            const again = await modernPost(bk.issuer, alice.app.accessToken, {
                id: 12,
                params: {
                    name: 'everything_trigger-sampling-request',
                    arguments: args,
                    requestState: asked.requestState,
                    inputResponses: { [key]: {} }
                },
                capabilities: { sampling: {} }
            }).then(r => r.json());
            assert.equal(again.error.code, -32602, JSON.stringify(again));
            assert.match(again.error.message, /no longer waiting/);

            const form = await round('everything_trigger-elicitation-request', {}, {});
            assert.equal(form.resultType, 'input_required', JSON.stringify(form));
            const [[fkey, fq]] = Object.entries(form.inputRequests);
            assert.equal(fq.method, 'elicitation/create');
            assert.equal(fq.params.requestedSchema.required[0], 'name');
            const filled = await round('everything_trigger-elicitation-request', {}, {
                requestState: form.requestState,
                inputResponses: { [fkey]: { action: 'accept', content: { name: 'Grace Hopper' } } }
            });
            assert.match(filled.content.map(c => c.text).join('\n'), /Grace Hopper/, JSON.stringify(filled));
        })
    );

    test(
        'another tenant without a connection sees none of those tools and cannot call them',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const client = await mcpClient(bob.app.accessToken);
            const names = (await client.listTools()).tools.map(t => t.name);
            assert.ok(names.includes('whoami'));
            assert.ok(!names.some(n => n.startsWith('everything_')), names.join(', '));
            const res = await client.callTool({ name: 'everything_echo', arguments: { message: 'x' } }).then(
                r => ({ result: r }),
                e => ({ error: e })
            );
            const text = res.error ? String(res.error.message) : JSON.stringify(res.result);
            assert.match(text, /unknown tool/i, 'the same answer as a tool that does not exist');
            await client.close();
        })
    );

    test(
        'a server that is down leaves the built-ins listed and its tools out; the call says what failed',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const metric = async (name, outcome) => {
                const text = (await api(bk.issuer, 'GET', '/metrics')).text;
                const m = text.match(new RegExp(`^${name}\\{outcome="${outcome}"\\} (\\d+)$`, 'm'));
                assert.ok(m, `${name}{outcome="${outcome}"} in /metrics:\n${text}`);
                return Number(m[1]);
            };
            const failedCalls = await metric('bridgekeeper_upstream_tool_calls_total', 'failed');
            assert.ok((await metric('bridgekeeper_upstream_tool_calls_total', 'ok')) >= 4, 'the calls above counted');
            const client = await mcpClient(alice.app.accessToken);
            everything.setDown(true);
            try {
                const r = await client.callTool({ name: 'everything_echo', arguments: { message: 'x' } });
                assert.equal(r.isError, true);
                assert.match(r.content[0].text, /everything/);
                // A different tenant view (a fresh listing) while the server is down: built-ins only.
                const carol = await signUpAndAuthorizeApp(new UserAgent(), bk.issuer, {
                    email: `carol-${rand()}@example.com`,
                    password: `pw-${rand()}-correct horse`,
                    redirectUri: APP_REDIRECT,
                    scope: 'connections universal-mcp-read-write'
                });
                const res = await api(bk.issuer, 'POST', '/api/v1/connections/initiate', {
                    token: carol.accessToken,
                    json: { providerId: 'everything', redirectUrl: APP_REDIRECT, providerParams: { apiKey: 'carol-key' } }
                });
                assert.equal(res.status, 201, res.text);
                const listFailures = await metric('bridgekeeper_upstream_tool_lists_total', 'failed');
                const c2 = await mcpClient(carol.accessToken);
                const names = (await c2.listTools()).tools.map(t => t.name);
                assert.ok(names.includes('whoami') && !names.some(n => n.startsWith('everything_')), names.join(', '));
                await c2.close();
                assert.ok((await metric('bridgekeeper_upstream_tool_lists_total', 'failed')) > listFailures, 'the failed listing is counted');
            } finally {
                everything.setDown(false);
            }
            assert.ok((await metric('bridgekeeper_upstream_tool_calls_total', 'failed')) > failedCalls, 'the failed call is counted');
            await client.close();
        })
    );

    test(
        'the one policy: a grant that may only read the provider sees and calls only its read-only tools; disabled hides all',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const writer = 'everything_toggle-simulated-logging';
            const full = await mcpClient(alice.app.accessToken);
            assert.ok((await full.listTools()).tools.some(t => t.name === writer), 'the full grant lists the write tool');
            await full.close();
            const grant = async permission =>
                authorizeApp(alice.agent, bk.issuer, {
                    redirectUri: APP_REDIRECT,
                    scope: 'universal-mcp-read-write',
                    extra: { provider_permissions: JSON.stringify({ everything: permission }) }
                });
            const reader = await mcpClient((await grant('read')).accessToken);
            const names = (await reader.listTools()).tools.map(t => t.name);
            assert.ok(names.includes('everything_echo') && !names.includes(writer), names.join(', '));
            const refused = await reader.callTool({ name: writer, arguments: {} }).then(
                r => JSON.stringify(r),
                e => String(e.message)
            );
            assert.match(refused, /unknown tool/i, 'what it cannot see it cannot call');
            await reader.close();
            const none = await mcpClient((await grant('disabled')).accessToken);
            const left = (await none.listTools()).tools.map(t => t.name);
            assert.ok(left.includes('whoami') && !left.some(n => n.startsWith('everything_')), left.join(', '));
            await none.close();
        })
    );

    test(
        'two connections of one provider: each tool once per connection under its label, each called with its own key',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const key2 = `ev-key-2-${rand()}`;
            const res = await api(bk.issuer, 'POST', '/api/v1/connections/initiate', {
                token: alice.app.accessToken,
                json: { providerId: 'everything', redirectUrl: APP_REDIRECT, providerParams: { apiKey: key2 } }
            });
            assert.equal(res.status, 201, res.text);
            await sleep(2200); // the tenant's connections are read again after 2 s
            const client = await mcpClient(alice.app.accessToken);
            const echoes = (await client.listTools()).tools.map(t => t.name).filter(n => /^everything_.*echo$/.test(n));
            assert.equal(echoes.length, 2, echoes.join(', '));
            for (const n of echoes) assert.match(n, /^everything_[a-z0-9]{6}_echo$/);
            const again = (await client.listTools()).tools.map(t => t.name).filter(n => /^everything_.*echo$/.test(n));
            assert.deepEqual(again, echoes, 'the same names in the same order');
            const keys = [];
            for (const n of echoes) {
                const mark = everything.requests.length;
                const r = await client.callTool({ name: n, arguments: { message: n } });
                assert.match(r.content[0].text, new RegExp(n));
                keys.push(...new Set(everything.requests.slice(mark).filter(x => x.rpc === 'tools/call').map(x => x.authorization)));
            }
            assert.deepEqual(keys.sort(), [`Bearer ${key}`, `Bearer ${key2}`].sort());
            await client.close();
        })
    );

    test(
        'two tenants with their own keys: each call carries its own tenant’s key, never the other’s',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const bobKey = `bob-key-${rand()}`;
            const res = await api(bk.issuer, 'POST', '/api/v1/connections/initiate', {
                token: bob.app.accessToken,
                json: { providerId: 'everything', redirectUrl: APP_REDIRECT, providerParams: { apiKey: bobKey } }
            });
            assert.equal(res.status, 201, res.text);
            await sleep(2200);
            const asBob = await mcpClient(bob.app.accessToken);
            const names = (await asBob.listTools()).tools.map(t => t.name);
            assert.ok(names.includes('everything_echo'), 'one connection: no label');
            let mark = everything.requests.length;
            await asBob.callTool({ name: 'everything_echo', arguments: { message: 'bob' } });
            const bobSaw = new Set(everything.requests.slice(mark).map(r => r.authorization));
            assert.deepEqual([...bobSaw], [`Bearer ${bobKey}`]);
            await asBob.close();
            const asAlice = await mcpClient(alice.app.accessToken);
            const echo = (await asAlice.listTools()).tools.map(t => t.name).find(n => /^everything_.*echo$/.test(n));
            mark = everything.requests.length;
            await asAlice.callTool({ name: echo, arguments: { message: 'alice' } });
            const aliceSaw = [...new Set(everything.requests.slice(mark).map(r => r.authorization))];
            assert.ok(aliceSaw.length > 0 && !aliceSaw.includes(`Bearer ${bobKey}`), JSON.stringify(aliceSaw));
            await asAlice.close();
        })
    );
});

// Declarative HTTP tools: a company's own REST API behind the gateway. The API here is a real
// server run by the test — a second Bridgekeeper binary, whose `/api/v1/account` and
// `/api/v1/connections` answer a bearer token — configured on the gateway as provider `company`
// (`api_key`, the tenant's key = a token of that API; `tools = { kind = "http", definitions = … }`).
describe('the gateway: declarative HTTP tools against a real REST API', () => {
    let apiServer;
    let bk;
    let apiToken;
    let apiEmail;
    let alice;
    let bob;

    before(async () => {
        apiServer = await startBridgekeeper({});
        apiEmail = `api-user-${rand()}@example.com`;
        apiToken = (
            await signUpAndAuthorizeApp(new UserAgent(), apiServer.issuer, {
                email: apiEmail,
                password: `pw-${rand()}-correct horse`,
                redirectUri: APP_REDIRECT,
                scope: 'account connections'
            })
        ).accessToken;
        const base = apiServer.issuer;
        const definitions = [
            `{ name = "account", description = "The account at the company", url = "${base}/api/v1/account", render = "json" }`,
            `{ name = "connections", description = "Its connections", url = "${base}/api/v1/connections", render = "table", table_path = "/connections", input_schema = { type = "object", properties = { limit = { type = "integer" } } } }`,
            `{ name = "connection", description = "One connection", url = "${base}/api/v1/connections/{id}", input_schema = { type = "object", properties = { id = { type = "string" } }, required = ["id"] } }`
        ];
        const p = 'BRIDGEKEEPER_CONNECTIONS__PROVIDERS__COMPANY__';
        bk = await startBridgekeeper({
            [`${p}NAME`]: 'Company API',
            [`${p}AUTH`]: 'api_key',
            [`${p}TOOLS__KIND`]: 'http',
            [`${p}TOOLS__DEFINITIONS`]: `[${definitions.join(', ')}]`,
            [`${p}READ_TOOLS`]: '["account", "connections", "connection"]',
            BRIDGEKEEPER_CONNECTIONS__ALLOW_PRIVATE_ADDRESSES: 'true',
            BRIDGEKEEPER_CONNECTIONS__ALLOW_HTTP_LOOPBACK: 'true'
        });
        const person = async (name, key) => {
            const app = await signUpAndAuthorizeApp(new UserAgent(), bk.issuer, {
                email: `${name}-${rand()}@example.com`,
                password: `pw-${rand()}-correct horse`,
                redirectUri: APP_REDIRECT,
                scope: 'connections universal-mcp-read-write'
            });
            const res = await api(bk.issuer, 'POST', '/api/v1/connections/initiate', {
                token: app.accessToken,
                json: { providerId: 'company', redirectUrl: APP_REDIRECT, providerParams: { apiKey: key } }
            });
            assert.equal(res.status, 201, res.text);
            return { ...app, connectionId: res.body.connection.id };
        };
        alice = await person('alice', apiToken);
        bob = await person('bob', 'not-a-token-of-that-api');
    });

    after(async () => {
        await bk?.stop();
        await apiServer?.stop();
    });

    const client = async token => {
        const c = new Client({ name: 'gateway-http-e2e', version: '1.0.0' });
        await c.connect(
            new StreamableHTTPClientTransport(new URL('/mcp', bk.issuer), {
                requestInit: { headers: { Authorization: `Bearer ${token}` } }
            })
        );
        return c;
    };

    test('the tools are listed as company_<name>, read-only as the catalog says', { timeout: TEST_TIMEOUT_MS }, async () => {
        const c = await client(alice.accessToken);
        const { tools } = await c.listTools();
        const account = tools.find(t => t.name === 'company_account');
        assert.ok(account, tools.map(t => t.name).join(', '));
        assert.equal(account.annotations.readOnlyHint, true);
        assert.ok(tools.find(t => t.name === 'company_connection').inputSchema.required.includes('id'));
        await c.close();
    });

    test('a call reaches the API with the tenant’s key and the answer is rendered', { timeout: TEST_TIMEOUT_MS }, async () => {
        const c = await client(alice.accessToken);
        const account = await c.callTool({ name: 'company_account', arguments: {} });
        assert.equal(account.isError ?? false, false, JSON.stringify(account));
        assert.equal(account.structuredContent.email, apiEmail, 'the API answered for the key’s account');
        assert.match(account.content[0].text, new RegExp(apiEmail.replace('.', '\\.')));
        const list = await c.callTool({ name: 'company_connections', arguments: { limit: 5 } });
        assert.equal(list.content[0].text, '(no rows)', JSON.stringify(list));
        // A path argument stays one segment of the operator's URL: no way out of /connections/.
        const probe = await c.callTool({ name: 'company_connection', arguments: { id: '../account' } });
        assert.equal(probe.isError, true);
        assert.match(probe.content[0].text, /HTTP 404/, JSON.stringify(probe));
        await c.close();
    });

    test('a key the API refuses (401) is a tool error asking to reconnect; the arguments are checked first', { timeout: TEST_TIMEOUT_MS }, async () => {
        const c = await client(bob.accessToken);
        // The arguments are checked against the schema before any call.
        const invalid = await c.callTool({ name: 'company_connection', arguments: {} });
        assert.equal(invalid.isError, true);
        assert.match(invalid.content[0].text, /id/, JSON.stringify(invalid));
        const refused = await c.callTool({ name: 'company_account', arguments: {} });
        assert.equal(refused.isError, true);
        assert.match(refused.content[0].text, /refused the credential.*reconnect/, JSON.stringify(refused));
        // The connection says so: expired, with the reason (the key cannot be refreshed).
        const conn = await api(bk.issuer, 'GET', `/api/v1/connections/${bob.connectionId}`, { token: bob.accessToken });
        assert.equal(conn.body.status, 'expired', conn.text);
        assert.match(conn.body.lastError, /401/);
        // Its tools stay listed; a call now says what is wrong and where to fix it.
        await sleep(2200);
        const again = await c.callTool({ name: 'company_account', arguments: {} });
        assert.equal(again.isError, true);
        assert.ok(again.content[0].text.includes(`connection is expired`) && again.content[0].text.includes(`${bk.issuer}/connections`), JSON.stringify(again));
        await c.close();
    });

    test('a client that can open URLs is asked to reconnect in the browser: -32042 on 2025-11-25, input_required on 2026-07-28, retried until it works', { timeout: TEST_TIMEOUT_MS }, async () => {
        // Legacy: the official SDK client declaring URL-mode elicitation gets URLElicitationRequiredError.
        const legacy = new Client({ name: 'url-elicitation', version: '1.0.0' }, { capabilities: { elicitation: { url: {} } } });
        await legacy.connect(
            new StreamableHTTPClientTransport(new URL('/mcp', bk.issuer), {
                requestInit: { headers: { Authorization: `Bearer ${bob.accessToken}` } }
            })
        );
        const err = await legacy.callTool({ name: 'company_account', arguments: {} }).then(
            r => assert.fail(`expected -32042, got ${JSON.stringify(r)}`),
            e => e
        );
        assert.equal(err.code, -32042, String(err));
        const [elicitation] = err.data.elicitations;
        assert.equal(elicitation.mode, 'url');
        assert.equal(elicitation.url, `${bk.issuer}/connections`);
        assert.ok(elicitation.elicitationId.length >= 16);
        assert.match(elicitation.message, /company connection is expired/);
        await legacy.close();

        // 2026-07-28: an input round; a decline ends the call with a tool error.
        const modern = async extra => {
            const res = await modernPost(bk.issuer, bob.accessToken, {
                id: 7,
                params: { name: 'company_account', arguments: {}, ...extra },
                capabilities: { elicitation: { url: {} } }
            });
            assert.equal(res.status, 200);
            return (await res.json()).result;
        };
        const asked = await modern({});
        assert.equal(asked.resultType, 'input_required', JSON.stringify(asked));
        assert.deepEqual(asked.inputRequests.connect.method, 'elicitation/create');
        assert.equal(asked.inputRequests.connect.params.mode, 'url');
        assert.equal(asked.inputRequests.connect.params.url, `${bk.issuer}/connections`);
        const declined = await modern({ requestState: asked.requestState, inputResponses: { connect: { action: 'decline' } } });
        assert.equal(declined.isError, true);
        assert.match(declined.content[0].text, /chose not to/);
        // Accepted but not done yet: asked again.
        const still = await modern({ requestState: asked.requestState, inputResponses: { connect: { action: 'accept' } } });
        assert.equal(still.resultType, 'input_required');
        // The person reconnects (a new key, the old connection removed); the retry goes through.
        const res = await api(bk.issuer, 'POST', '/api/v1/connections/initiate', {
            token: bob.accessToken,
            json: { providerId: 'company', redirectUrl: APP_REDIRECT, providerParams: { apiKey: apiToken } }
        });
        assert.equal(res.status, 201, res.text);
        const gone = await api(bk.issuer, 'DELETE', `/api/v1/connections/${bob.connectionId}`, { token: bob.accessToken });
        assert.ok([200, 204].includes(gone.status), gone.text);
        await sleep(2200);
        const done = await modern({ requestState: still.requestState, inputResponses: { connect: { action: 'accept' } } });
        assert.equal(done.resultType, 'complete', JSON.stringify(done));
        assert.equal(done.structuredContent.email, apiEmail);
    });
});

// Calls that fail well: per-tool rate limits ("N/min", globs, `_default`) answered 429 with
// `Retry-After` on /mcp and the REST face alike, counted per tenant; and the circuit breaker: a
// server that keeps failing is left alone (calls fail at once, without reaching it) until one probe
// after the cooldown finds it back.
describe('the gateway: rate limits per tool and a circuit breaker per upstream server', () => {
    let everything;
    let bk;
    let alice;
    let bob;

    before(async () => {
        everything = await startEverything();
        bk = await startBridgekeeper(
            everythingEnv(everything.url, {
                BRIDGEKEEPER_METRICS__PUBLIC: 'true',
                BRIDGEKEEPER_CONNECTIONS__BREAKER_FAILURES: '2',
                BRIDGEKEEPER_CONNECTIONS__BREAKER_COOLDOWN_MS: '2000',
                BRIDGEKEEPER_MCP__TOOL_RATE_LIMITS__PER_TOOL: '{"everything_e*" = "3/min", "_default" = "100/min"}'
            })
        );
        const person = async name => {
            const app = await signUpAndAuthorizeApp(new UserAgent(), bk.issuer, {
                email: `${name}-${rand()}@example.com`,
                password: `pw-${rand()}-correct horse`,
                redirectUri: APP_REDIRECT,
                scope: 'connections universal-mcp-read-write'
            });
            const res = await api(bk.issuer, 'POST', '/api/v1/connections/initiate', {
                token: app.accessToken,
                json: { providerId: 'everything', redirectUrl: APP_REDIRECT, providerParams: { apiKey: `${name}-key` } }
            });
            assert.equal(res.status, 201, res.text);
            return app;
        };
        alice = await person('alice');
        bob = await person('bob');
    });

    after(async () => {
        await bk?.stop();
        await everything?.stop();
    });

    /** One JSON-RPC tools/call as a backend makes it (no session, plain JSON): status, headers, body. */
    const call = async (token, name, args) => {
        const res = await fetch(new URL('/mcp', bk.issuer), {
            method: 'POST',
            headers: {
                Authorization: `Bearer ${token}`,
                'Content-Type': 'application/json',
                Accept: 'application/json',
                'X-Response-Format': 'json',
                'MCP-Protocol-Version': '2025-11-25'
            },
            body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: args } })
        });
        return { status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.json() };
    };

    test('a tool over its limit is refused with 429 and Retry-After on /mcp and REST; other tools and tenants go on', { timeout: TEST_TIMEOUT_MS }, async () => {
        for (let i = 0; i < 3; i++) {
            const ok = await call(alice.accessToken, 'everything_echo', { message: `m${i}` });
            assert.equal(ok.status, 200, JSON.stringify(ok.body));
            assert.match(ok.body.result.content[0].text, new RegExp(`m${i}`));
        }
        const seen = everything.requests.filter(r => r.rpc === 'tools/call').length;
        const refused = await call(alice.accessToken, 'everything_echo', { message: 'one too many' });
        assert.equal(refused.status, 429, JSON.stringify(refused.body));
        assert.ok(Number(refused.retryAfter) >= 1 && Number(refused.retryAfter) <= 60, `Retry-After: ${refused.retryAfter}`);
        assert.match(refused.body.error.message, /rate limit exceeded: 3 calls of everything_echo by this account per minute \(rule everything_e\*\)/);
        assert.equal(refused.body.error.data.rule, 'everything_e*');
        assert.equal(refused.body.error.data.limit, 'per_tool');
        assert.equal(everything.requests.filter(r => r.rpc === 'tools/call').length, seen, 'the refused call never reached the server');
        // The REST face counts the same calls.
        const rest = await api(bk.issuer, 'POST', '/api/v1/providers/everything/tools/echo', {
            token: alice.accessToken,
            json: { message: 'rest' }
        });
        assert.equal(rest.status, 429, rest.text);
        assert.ok(Number(rest.headers['retry-after']) >= 1, JSON.stringify(rest.headers));
        assert.match(rest.body.detail, /rate limit exceeded/);
        // Another tool (the `_default` rule) and another tenant are counted apart.
        const sum = await call(alice.accessToken, 'everything_get-sum', { a: 2, b: 3 });
        assert.equal(sum.status, 200, JSON.stringify(sum.body));
        const other = await call(bob.accessToken, 'everything_echo', { message: 'bob' });
        assert.equal(other.status, 200, JSON.stringify(other.body));
    });

    test('a server that keeps failing is left alone for that tenant after 2 failures and tried again after the cooldown', { timeout: TEST_TIMEOUT_MS }, async () => {
        const metric = async name => {
            const text = (await api(bk.issuer, 'GET', '/metrics')).text;
            const m = text.match(new RegExp(`^${name} (\\d+)$`, 'm'));
            assert.ok(m, `${name} in /metrics`);
            return Number(m[1]);
        };
        const opened = await metric('bridgekeeper_upstream_circuits_opened_total');
        const refusals = await metric('bridgekeeper_upstream_circuit_refusals_total');
        everything.setDown(true);
        try {
            for (let i = 0; i < 2; i++) {
                const failed = await call(bob.accessToken, 'everything_get-sum', { a: 1, b: i });
                assert.equal(failed.body.result.isError, true, JSON.stringify(failed.body));
                assert.match(failed.body.result.content[0].text, /everything server failed/);
            }
            const before = everything.requests.length;
            const fast = await call(bob.accessToken, 'everything_get-sum', { a: 1, b: 9 });
            assert.equal(fast.body.result.isError, true);
            assert.match(fast.body.result.content[0].text, /has been failing; it is left alone for now: retry in \d+ s/);
            assert.equal(everything.requests.length, before, 'the open circuit sent nothing to the server');
            // Another tenant's circuit is its own: its call still tries the server (no tenant can
            // open the circuit for the others).
            const other = await call(alice.accessToken, 'everything_get-sum', { a: 2, b: 2 });
            assert.match(other.body.result.content[0].text, /everything server failed/);
            assert.ok(everything.requests.length > before, 'it reached the server');
            assert.equal(await metric('bridgekeeper_upstream_circuits_opened_total'), opened + 1);
            assert.equal(await metric('bridgekeeper_upstream_circuit_refusals_total'), refusals + 1, 'the one fast failure');
        } finally {
            everything.setDown(false);
        }
        await sleep(2100);
        const back = await call(bob.accessToken, 'everything_get-sum', { a: 20, b: 22 });
        assert.equal(back.body.result.isError ?? false, false, JSON.stringify(back.body));
        assert.match(back.body.result.content[0].text, /42/);
        const again = await call(alice.accessToken, 'everything_get-sum', { a: 1, b: 1 });
        assert.equal(again.body.result.isError ?? false, false, JSON.stringify(again.body));
    });

    test('after that traffic, /metrics read by a Prometheus text-format parser (prometheus-client) has every family operators need, with samples', { timeout: TEST_TIMEOUT_MS }, async () => {
        const res = await fetch(new URL('/metrics', bk.issuer));
        assert.equal(res.status, 200);
        assert.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
        const families = new Map(parsePrometheus(await res.text()).map(f => [f.name, f]));
        /** The samples named `sample` of the family `name` (of `type`, described), matching `labels`. */
        const samples = (name, type, sample = name, labels = {}) => {
            const f = families.get(name.replace(/_total$/, ''));
            assert.ok(f, `${name} in /metrics (families: ${[...families.keys()].join(', ')})`);
            assert.equal(f.type, type, name);
            assert.ok(f.help?.length > 0, `${name} is described`);
            return f.samples.filter(s => s.name === sample && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
        };
        const sum = (name, type, labels = {}, sample = name) => samples(name, type, sample, labels).reduce((n, s) => n + s.value, 0);

        // Requests by route (the route template, never a raw path with ids in it) and status, with latency.
        assert.ok(sum('bridgekeeper_http_requests_total', 'counter', { route: '/mcp', method: 'POST', status: '200' }) > 0);
        assert.ok(sum('bridgekeeper_http_requests_total', 'counter', { route: '/api/v1/providers/{id}/tools/{tool}', status: '429' }) > 0);
        assert.ok(samples('bridgekeeper_http_requests_total', 'counter').every(s => !/[0-9a-f]{16}/.test(s.labels.route)), 'no ids in route labels');
        const latency = 'bridgekeeper_http_request_duration_seconds';
        assert.ok(sum(latency, 'histogram', { route: '/mcp' }, `${latency}_count`) > 0);
        assert.ok(samples(latency, 'histogram', `${latency}_bucket`, { route: '/mcp' }).length > 5, 'latency buckets');
        // Token grants by type and outcome; MCP methods; upstream calls by provider and outcome.
        assert.ok(sum('bridgekeeper_token_grants_total', 'counter', { grant_type: 'authorization_code', outcome: 'issued' }) >= 2);
        assert.ok(sum('bridgekeeper_mcp_requests_total', 'counter', { method: 'tools/call' }) > 0);
        const mcpLatency = 'bridgekeeper_mcp_request_duration_seconds';
        assert.ok(sum(mcpLatency, 'histogram', { method: 'tools/call' }, `${mcpLatency}_count`) > 0);
        assert.ok(sum('bridgekeeper_upstream_calls_total', 'counter', { provider: 'everything', outcome: 'ok' }) > 0);
        assert.ok(sum('bridgekeeper_upstream_calls_total', 'counter', { provider: 'everything', outcome: 'failed' }) >= 2);
        const upLatency = 'bridgekeeper_upstream_call_duration_seconds';
        assert.ok(sum(upLatency, 'histogram', { provider: 'everything' }, `${upLatency}_count`) > 0);
        // Caches, rate-limit refusals (the per-tool rule above), database pools, the audit queue.
        assert.ok(sum('bridgekeeper_cache_requests_total', 'counter', { result: 'hit' }) > 0);
        assert.ok(sum('bridgekeeper_rate_limit_refusals_total', 'counter', { bucket: 'tool_calls:per_tool' }) >= 2);
        assert.ok(sum('bridgekeeper_db_pool_max_connections', 'gauge') > 0);
        assert.ok(samples('bridgekeeper_db_pool_connections', 'gauge').some(s => s.labels.state === 'idle'));
        assert.ok(sum('bridgekeeper_audit_events_written_total', 'counter') > 0);
        // Present even when nothing waits or was dropped (an alert needs the series to exist).
        assert.equal(samples('bridgekeeper_audit_queue_depth', 'gauge').length, 1);
        assert.equal(samples('bridgekeeper_audit_events_dropped_total', 'counter').length, 1);
        assert.equal(sum('bridgekeeper_audit_events_dropped_total', 'counter'), 0);
        assert.ok(sum('bridgekeeper_upstream_circuits_opened_total', 'counter') >= 1);
    });
});
