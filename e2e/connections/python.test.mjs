// The gateway with the official MCP Python SDK as the client: the same setup as gateway.test.mjs
// (server-everything from npm on loopback behind a recording proxy, configured as the operator-added
// `api_key` provider `everything` whose tools come from it; a person signs up, an app gets a token,
// the person connects the provider with a key), but the MCP client on Bridgekeeper's /mcp is
// `mcp` from PyPI (the version locked in ../python/requirements.txt, in ../python/.venv, created
// here when missing), run as ./python_client.py with the access token as its bearer. Through the
// Python SDK's own Streamable HTTP transport and parsing, the tenant sees the built-ins (whoami
// answers for the token's person) and the server's tools under `everything_<tool>`, calls them
// (text, a sum, a base64 PNG image block, structured content validated by the SDK against the
// passed-through output schema), lists and gets the server's prompts and lists and reads its
// resources, all namespaced; an unknown tool is a JSON-RPC error; the server only ever saw the
// tenant's key. Another tenant without a connection, running the same script, sees and reaches
// none of it: the same error as an unknown tool, no prompts, its resources not found.
//
//   BK_BIN=/abs/path/to/bridgekeeper e2e/connections/run.sh     (runs every *.test.mjs here)
//
// Needs Python >= 3.10 (PYTHON overrides the interpreter); PyPI is used once, to install the
// locked requirements into e2e/python/.venv (as e2e/python/run.sh does, with the same stamp).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { UserAgent } from './lib/agent.mjs';
import { api, signUpAndAuthorizeApp, startBridgekeeper } from './lib/bridgekeeper.mjs';
import { everythingEnv, startEverything, withLogsOf } from './lib/everything.mjs';
import { pythonVenv } from './lib/python.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const APP_REDIRECT = 'http://127.0.0.1:53692/connected';
const TEST_TIMEOUT_MS = 60_000;
const SCRIPT_TIMEOUT_MS = 45_000;
const rand = () => randomBytes(6).toString('hex');


/** Runs python_client.py with `env` and returns the one JSON object it printed (kept in $BK_E2E_PY_DUMP, a directory, when set). */
function runClient(python, env) {
    return new Promise((resolve, reject) => {
        const child = spawn(python, ['-u', path.join(here, 'python_client.py')], {
            env: { ...process.env, ...env },
            stdio: ['ignore', 'pipe', 'pipe']
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', c => (stdout += c));
        child.stderr.on('data', c => (stderr += c));
        const timer = setTimeout(() => child.kill('SIGKILL'), SCRIPT_TIMEOUT_MS);
        child.once('error', reject);
        child.once('close', (code, signal) => {
            clearTimeout(timer);
            let report;
            try {
                report = JSON.parse(stdout);
            } catch {
                reject(new Error(`python_client.py (exit ${code}, ${signal ?? 'no signal'}) printed no JSON:\n${stdout}\n--- stderr ---\n${stderr}`));
                return;
            }
            if (code !== 0 || report.fatal) {
                reject(new Error(`python_client.py failed (exit ${code}): ${report.fatal}\n${report.traceback ?? ''}\n--- stderr ---\n${stderr}`));
                return;
            }
            if (process.env.BK_E2E_PY_DUMP) writeFileSync(path.join(process.env.BK_E2E_PY_DUMP, `${Date.now()}-${rand()}.json`), stdout);
            resolve(report);
        });
    });
}

/** The result of a step that must have succeeded. */
const ok = (report, name) => {
    const s = report[name];
    assert.ok(s && 'result' in s, `${name} succeeded: ${JSON.stringify(s)}`);
    return s.result;
};
/** The error of a step that must have failed. */
const failed = (report, name) => {
    const s = report[name];
    assert.ok(s && 'error' in s, `${name} failed: ${JSON.stringify(s)?.slice(0, 500)}`);
    return s.error;
};
const texts = result => result.content.filter(c => c.type === 'text').map(c => c.text);

describe('the gateway with the official MCP Python SDK as the client (server-everything upstream)', () => {
    let python;
    let everything;
    let bk;
    const key = `ev-key-${rand()}`;
    let alice;
    let bob;
    let aliceReport;

    before(
        async () => {
            python = pythonVenv();
            everything = await startEverything();
            bk = await startBridgekeeper(everythingEnv(everything.url));
            const person = async name => {
                const email = `${name}-${rand()}@example.com`;
                const app = await signUpAndAuthorizeApp(new UserAgent(), bk.issuer, {
                    email,
                    password: `pw-${rand()}-correct horse`,
                    redirectUri: APP_REDIRECT,
                    scope: 'connections universal-mcp-read-write'
                });
                return { ...app, email };
            };
            alice = await person('alice');
            bob = await person('bob');
            const res = await api(bk.issuer, 'POST', '/api/v1/connections/initiate', {
                token: alice.accessToken,
                json: { providerId: 'everything', redirectUrl: APP_REDIRECT, providerParams: { apiKey: key } }
            });
            assert.equal(res.status, 201, `connect with a key: ${res.text}`);
        },
        { timeout: 360_000 } // a fresh machine installs the venv first (PyPI)
    );

    after(async () => {
        await bk?.stop();
        await everything?.stop();
    });

    const withLogs = withLogsOf(() => bk);
    const mcpUrl = () => new URL('/mcp', bk.issuer).href;

    test(
        'the connected tenant: tools, calls, prompts and resources of the server through the Python SDK',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const mark = everything.requests.length;
            const r = (aliceReport = await runClient(python, { BK_MCP_URL: mcpUrl(), BK_ACCESS_TOKEN: alice.accessToken }));
            assert.equal(r.sdk, '2.3.0', 'the locked SDK ran');
            assert.ok(r.initialize.capabilities.tools, `tools capability: ${JSON.stringify(r.initialize)}`);

            // tools/list: the built-ins first, then the server's tools, namespaced, schemas intact.
            const tools = ok(r, 'tools').items;
            const names = tools.map(t => t.name);
            for (const n of ['whoami', 'everything_echo', 'everything_get-sum', 'everything_get-tiny-image'])
                assert.ok(names.includes(n), `${n} in ${names.join(', ')}`);
            assert.ok(names.indexOf('whoami') < names.indexOf('everything_echo'), 'built-ins first');
            assert.equal(new Set(names).size, names.length, `no name twice: ${names.join(', ')}`);
            assert.ok(!names.includes('echo'), 'no un-namespaced upstream tool');
            // A built-in answers for the token's person (structuredContent checked by the SDK against its outputSchema).
            const me = ok(r, 'whoami');
            assert.equal(me.structuredContent?.email, alice.email, JSON.stringify(me));
            assert.equal(me.structuredContent.client_id, alice.clientId);
            const echoTool = tools.find(t => t.name === 'everything_echo');
            assert.equal(echoTool.inputSchema.properties.message.type, 'string', JSON.stringify(echoTool));
            assert.equal(echoTool.annotations?.readOnlyHint, true, JSON.stringify(echoTool));

            // tools/call: the answers as the server gave them.
            const echo = ok(r, 'echo');
            assert.equal(echo.isError ?? false, false, JSON.stringify(echo));
            assert.deepEqual(texts(echo), ['Echo: hello from the Python SDK']);
            const sum = ok(r, 'sum');
            assert.equal(sum.isError ?? false, false, JSON.stringify(sum));
            assert.deepEqual(texts(sum), ['The sum of 1234 and 4321 is 5555.']);
            const image = ok(r, 'image');
            assert.equal(image.isError ?? false, false, JSON.stringify(image).slice(0, 300));
            const img = image.content.find(c => c.type === 'image');
            assert.ok(img, `an image block: ${JSON.stringify(image.content).slice(0, 300)}`);
            assert.equal(img.mimeType, 'image/png');
            assert.match(img.data, /^[A-Za-z0-9+/]+=*$/, 'base64 data');
            assert.equal(image.decodedImages.length, 1);
            assert.equal(image.decodedImages[0].pngSignature, true, 'the data decodes to a PNG');
            assert.ok(image.decodedImages[0].bytes > 100, `a real image: ${image.decodedImages[0].bytes} bytes`);
            // The SDK validated structuredContent against the output schema the gateway passed on.
            const structured = ok(r, 'structured');
            assert.equal(structured.isError ?? false, false, JSON.stringify(structured));
            assert.ok(structured.structuredContent && typeof structured.structuredContent === 'object', JSON.stringify(structured));

            // An unknown tool is a JSON-RPC error (-32602, as the spec has it), in the built-ins' namespace or the server's.
            for (const step of ['unknownTool', 'unknownUpstreamTool']) {
                const e = failed(r, step);
                assert.equal(e.type, 'MCPError', JSON.stringify(e));
                assert.equal(e.code, -32602, JSON.stringify(e));
                assert.match(e.message, /unknown tool/i, JSON.stringify(e));
            }

            // prompts: the server's, namespaced; one got with its argument.
            const prompts = ok(r, 'prompts').items.map(p => p.name);
            assert.ok(prompts.includes('everything_simple-prompt') && prompts.includes('everything_args-prompt'), prompts.join(', '));
            assert.ok(prompts.every(n => n.startsWith('everything_')), `only the server's prompts: ${prompts.join(', ')}`);
            const prompt = ok(r, 'prompt');
            assert.equal(prompt.messages.length, 1, JSON.stringify(prompt));
            assert.equal(prompt.messages[0].role, 'user');
            assert.deepEqual(prompt.messages[0].content, { type: 'text', text: "What's weather in Lisbon?" });

            // resources: the server's, namespaced by name, URIs unchanged; one read.
            const resources = ok(r, 'resources').items;
            const doc = resources.find(x => x.uri === r.readUri);
            assert.ok(doc, `a static document among ${JSON.stringify(resources.slice(0, 3))}`);
            assert.ok(doc.name.startsWith('everything_'), `namespaced: ${doc.name}`);
            const read = ok(r, 'read');
            assert.equal(read.contents.length, 1, JSON.stringify(read).slice(0, 300));
            assert.equal(read.contents[0].uri, doc.uri);
            assert.equal(read.contents[0].mimeType, doc.mimeType);
            assert.ok(read.contents[0].text.length > 0, 'the document has text');

            // The server saw every request with the tenant's key, never the client's token.
            const seen = everything.requests.slice(mark);
            for (const m of ['tools/list', 'tools/call', 'prompts/list', 'prompts/get', 'resources/list', 'resources/read'])
                assert.ok(seen.some(x => x.rpc === m), `the server received ${m}: ${seen.map(x => x.rpc).join(', ')}`);
            for (const x of seen) {
                assert.equal(x.authorization, `Bearer ${key}`, `the tenant's key: ${JSON.stringify(x)}`);
                assert.ok(!x.authorization.includes(alice.accessToken), 'never the client token');
            }
        })
    );

    test(
        'another tenant without a connection, same script: the built-ins only, and nothing of the server reachable',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            assert.ok(aliceReport?.readUri, 'the first test found a document to try');
            const mark = everything.requests.length;
            const r = await runClient(python, {
                BK_MCP_URL: mcpUrl(),
                BK_ACCESS_TOKEN: bob.accessToken,
                BK_READ_URI: aliceReport.readUri
            });
            const names = ok(r, 'tools').items.map(t => t.name);
            assert.ok(names.includes('whoami'), names.join(', '));
            assert.equal(ok(r, 'whoami').structuredContent?.email, bob.email, 'the token is Bob’s');
            assert.ok(!names.some(n => n.startsWith('everything_')), names.join(', '));
            // The same answer as a tool that does not exist at all.
            const unknown = failed(r, 'unknownTool');
            for (const step of ['echo', 'sum', 'image', 'structured']) {
                const e = failed(r, step);
                assert.equal(e.type, 'MCPError', JSON.stringify(e));
                assert.equal(e.code, unknown.code, `${step}: ${JSON.stringify(e)} vs ${JSON.stringify(unknown)}`);
                assert.match(e.message, /unknown tool/i, JSON.stringify(e));
            }
            assert.deepEqual(ok(r, 'prompts').items, []);
            assert.match(failed(r, 'prompt').message, /unknown prompt/i);
            assert.ok(!ok(r, 'resources').items.some(x => x.uri.startsWith('demo://')), JSON.stringify(r.resources).slice(0, 300));
            const hidden = failed(r, 'read');
            assert.match(hidden.message, /not found/i, JSON.stringify(hidden));
            // Nothing of Bob's session reached the server.
            assert.deepEqual(everything.requests.slice(mark), []);
        })
    );
});
