// Two Bridgekeeper instances on one database and one Redis, as behind a load balancer without
// session affinity: a legacy MCP client's call runs on instance A, and what the client sends back
// for it — its answer to the upstream server's sampling request, its `notifications/cancelled` —
// reaches instance B. B passes them on over the instance bus (Redis publish/subscribe) and A
// applies them: the sampled answer reaches server-everything and the call completes; the cancelled
// call stops at the server. Needs Redis on 127.0.0.1:6379 (as the scale-out tests do).
//
//   BK_BIN=/abs/path/to/bridgekeeper e2e/connections/run.sh     (runs every *.test.mjs here)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema } from '@modelcontextprotocol/sdk/types.js';

import { UserAgent } from './lib/agent.mjs';
import { api, signUpAndAuthorizeApp, startBridgekeeper } from './lib/bridgekeeper.mjs';
import { everythingEnv, startEverything, withLogsOf } from './lib/everything.mjs';

const APP_REDIRECT = 'http://127.0.0.1:53694/connected';
const TEST_TIMEOUT_MS = 60_000;
const rand = () => randomBytes(6).toString('hex');

describe('two instances: what a client sends back for a call reaches the instance running it', () => {
    let everything;
    let a;
    let b;
    let alice;
    const redis = {
        BRIDGEKEEPER_REDIS__URL: 'redis://127.0.0.1:6379',
        BRIDGEKEEPER_REDIS__KEY_PREFIX: `bk-e2e-${rand()}`
    };

    before(async () => {
        everything = await startEverything();
        a = await startBridgekeeper(everythingEnv(everything.url, redis));
        // B shares A's database and public URL (the issuer is configuration, not the address).
        b = await startBridgekeeper(everythingEnv(everything.url, { ...redis, BRIDGEKEEPER_ISSUER: a.issuer }), {
            peerOf: a.dataDir
        });
        assert.notEqual(a.addr, b.addr);
        alice = await signUpAndAuthorizeApp(new UserAgent(), a.issuer, {
            email: `alice-${rand()}@example.com`,
            password: `pw-${rand()}-correct horse`,
            redirectUri: APP_REDIRECT,
            scope: 'connections universal-mcp-read-write'
        });
        const res = await api(a.issuer, 'POST', '/api/v1/connections/initiate', {
            token: alice.accessToken,
            json: { providerId: 'everything', redirectUrl: APP_REDIRECT, providerParams: { apiKey: `k-${rand()}` } }
        });
        assert.equal(res.status, 201, res.text);
    });

    after(async () => {
        await b?.stop();
        await a?.stop();
        await everything?.stop();
    });

    const withLogs = withLogsOf(() => a);

    /**
     * A client of A whose messages without a method (responses) and whose cancellations go to B,
     * as a load balancer without affinity might send them. `sent` counts what went to B.
     */
    const splitClient = async (capabilities, sent) => {
        const toB = (url, init) => {
            let msg;
            try {
                msg = JSON.parse(init?.body ?? 'null');
            } catch {
                msg = null;
            }
            const diverted = msg && (msg.method === undefined || msg.method === 'notifications/cancelled');
            if (!diverted) return fetch(url, init);
            sent.push(msg.method ?? 'response');
            const target = new URL(url);
            target.host = new URL(`http://${b.addr}`).host;
            return fetch(target, init);
        };
        const client = new Client({ name: 'split', version: '1.0.0' }, { capabilities });
        await client.connect(
            new StreamableHTTPClientTransport(new URL('/mcp', a.issuer), {
                requestInit: { headers: { Authorization: `Bearer ${alice.accessToken}` } },
                fetch: toB
            })
        );
        return client;
    };

    test('the answer to a sampling request reaches the instance that asked', { timeout: TEST_TIMEOUT_MS }, withLogs(async () => {
        const sent = [];
        const client = await splitClient({ sampling: {} }, sent);
        client.setRequestHandler(CreateMessageRequestSchema, async () => ({
            model: 'scripted-llm',
            role: 'assistant',
            content: { type: 'text', text: 'answered through instance B' }
        }));
        const r = await client.callTool({ name: 'everything_trigger-sampling-request', arguments: { prompt: 'hi', maxTokens: 5 } });
        assert.equal(r.isError ?? false, false, JSON.stringify(r));
        assert.match(r.content[0].text, /answered through instance B/);
        assert.ok(sent.includes('response'), `the answer went to B: ${JSON.stringify(sent)}`);
        await client.close();
    }));

    test('a cancellation sent to the other instance stops the call at the server', { timeout: TEST_TIMEOUT_MS }, withLogs(async () => {
        // Raw HTTP, so that the call's stream on A stays open: only the bus can carry the
        // cancellation from B to A.
        const post = (base, body, session) =>
            fetch(new URL('/mcp', base), {
                method: 'POST',
                headers: {
                    Authorization: `Bearer ${alice.accessToken}`,
                    'Content-Type': 'application/json',
                    Accept: 'application/json, text/event-stream',
                    'MCP-Protocol-Version': '2025-11-25',
                    ...(session ? { 'Mcp-Session-Id': session } : {})
                },
                body: JSON.stringify(body)
            });
        const init = await post(a.issuer, {
            jsonrpc: '2.0',
            id: 1,
            method: 'initialize',
            params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } }
        });
        const session = init.headers.get('mcp-session-id');
        assert.ok(session, 'a session');
        const mark = everything.requests.length;
        const call = await post(
            a.issuer,
            {
                jsonrpc: '2.0',
                id: 'long-1',
                method: 'tools/call',
                params: {
                    name: 'everything_trigger-long-running-operation',
                    arguments: { duration: 30, steps: 30 },
                    _meta: { progressToken: 'p-1' }
                }
            },
            session
        );
        const reader = call.body.getReader();
        const first = new TextDecoder().decode((await reader.read()).value);
        assert.match(first, /notifications\/progress/, 'the call runs on A');
        const cancel = await post(
            `http://${b.addr}`,
            { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'long-1', reason: 'changed my mind' } },
            session
        );
        assert.equal(cancel.status, 202);
        let cancelled;
        for (let i = 0; i < 50 && !cancelled; i++) {
            await sleep(100);
            cancelled = everything.requests.slice(mark).find(r => r.rpc === 'notifications/cancelled');
        }
        assert.ok(cancelled, `the server was told: ${JSON.stringify(everything.requests.slice(mark).map(r => r.rpc))}`);
        // The cancelled call's stream on A ends without a result.
        let rest = '';
        for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            rest += new TextDecoder().decode(value);
        }
        assert.ok(!/"result"/.test(rest), `no result after a cancellation: ${rest.slice(0, 300)}`);
    }));
});
