// End-to-end: the knowledge-base tools through the official MCP TypeScript SDK as the client, with
// personal access tokens made in a signed-in browser. add-to-knowledge-base stores what
// search-knowledge-base then finds, best match first; a token limited to one knowledge base
// (knowledge_base_ids) neither finds nor writes to another, and another account finds nothing.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { startServer } from './lib/server.mjs';
import { Browser, extractForm } from './lib/browser.mjs';

const PASSWORD = 'correct horse battery staple';
const SCOPES = ['universal-mcp-read-write', 'user-data'];

/** Signs a person up and in; returns the browser (its session cookie makes PATs). */
async function person(issuer) {
    const email = `kb-${randomBytes(5).toString('hex')}@example.com`;
    const browser = new Browser(issuer);
    let form = extractForm((await browser.get('/signup')).text, '/signup');
    let res = await browser.post('/signup', { csrf_token: form.hidden.get('csrf_token'), next: '/', email, password: PASSWORD });
    assert.equal(res.status, 303, `sign-up: ${res.status}`);
    form = extractForm((await browser.get('/login')).text, '/login');
    res = await browser.post('/login', { csrf_token: form.hidden.get('csrf_token'), next: '/', email, password: PASSWORD });
    assert.equal(res.status, 303, `sign-in: ${res.status}`);
    return browser;
}

/** A personal access token of the browser's account (JSON body `extra` adds restrictions). */
async function pat(issuer, browser, extra = {}) {
    const res = await fetch(`${issuer}/api/v1/auth/pat`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Cookie: browser.jar.header() },
        body: JSON.stringify({ name: 'kb e2e', scopes: SCOPES, ...extra })
    });
    assert.equal(res.status, 201, `PAT: ${await res.clone().text()}`);
    return (await res.json()).token;
}

async function mcp(issuer, token) {
    const client = new Client({ name: 'kb-e2e', version: '1.0.0' });
    await client.connect(
        new StreamableHTTPClientTransport(new URL(`${issuer}/mcp`), { requestInit: { headers: { Authorization: `Bearer ${token}` } } })
    );
    return client;
}

async function createBase(issuer, token, name) {
    const res = await fetch(`${issuer}/api/v1/knowledge/bases`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
        body: JSON.stringify({ name })
    });
    assert.equal(res.status, 201);
    return (await res.json()).id;
}

const titles = result => result.structuredContent.results.map(r => r.title);

describe('knowledge-base tools with the TypeScript SDK', { timeout: 60_000 }, () => {
    let server;
    const clients = [];
    before(async () => {
        server = await startServer();
    });
    after(async () => {
        for (const c of clients) await c.close().catch(() => {});
        await server?.stop();
    });

    test('add, then search ranked; restricted and foreign tokens reach nothing else', async () => {
        const issuer = server.issuer;
        const alice = await person(issuer);
        const full = await pat(issuer, alice);
        const client = await mcp(issuer, full);
        clients.push(client);

        const { tools } = await client.listTools();
        const byName = Object.fromEntries(tools.map(t => [t.name, t]));
        assert.equal(byName['add-to-knowledge-base']?.annotations?.readOnlyHint, false);
        assert.equal(byName['search-knowledge-base']?.annotations?.readOnlyHint, true);

        const garden = await createBase(issuer, full, 'Garden');
        const secret = await createBase(issuer, full, 'Secret');
        for (const [name, title, content] of [
            ['Garden', 'Vegetables', 'Carrots and potatoes grow in the garden; tomatoes too.'],
            ['Garden', 'Tomatoes', 'Growing tomatoes: tomatoes need sun. Water tomatoes daily.'],
            ['Secret', 'Vault', 'The tomatoes password is marmalade.']
        ]) {
            const r = await client.callTool({ name: 'add-to-knowledge-base', arguments: { name, title, content } });
            assert.ok(!r.isError, JSON.stringify(r));
            assert.equal(r.structuredContent.knowledgeBase.name, name);
        }
        const ranked = await client.callTool({ name: 'search-knowledge-base', arguments: { query: 'tomatoes', name: 'Garden' } });
        assert.deepEqual(titles(ranked), ['Tomatoes', 'Vegetables']);
        assert.match(ranked.structuredContent.results[0].snippet, /\*\*/);
        const syntax = await client.callTool({ name: 'search-knowledge-base', arguments: { query: '"tomatoes AND NEAR(' } });
        assert.ok(!syntax.isError, 'search syntax is plain words');

        // A token limited to the Garden base: the Secret base is "not found", never reached.
        const limited = await mcp(issuer, await pat(issuer, alice, { knowledge_base_ids: [garden] }));
        clients.push(limited);
        const all = await limited.callTool({ name: 'search-knowledge-base', arguments: { query: 'tomatoes marmalade' } });
        assert.deepEqual(titles(all).sort(), ['Tomatoes', 'Vegetables']);
        const refused = await limited.callTool({ name: 'search-knowledge-base', arguments: { query: 'marmalade', name: 'Secret' } });
        assert.equal(refused.isError, true);
        assert.match(refused.content[0].text, /no knowledge base named "Secret"/);
        const planted = await limited.callTool({ name: 'add-to-knowledge-base', arguments: { name: 'Secret', content: 'planted' } });
        assert.equal(planted.isError, true);

        // Another account: nothing of Alice's, under any name.
        const mallory = await mcp(issuer, await pat(issuer, await person(issuer)));
        clients.push(mallory);
        const none = await mallory.callTool({ name: 'search-knowledge-base', arguments: { query: 'tomatoes marmalade' } });
        assert.deepEqual(titles(none), []);
        const foreign = await mallory.callTool({ name: 'search-knowledge-base', arguments: { query: 'x', name: 'Garden' } });
        assert.equal(foreign.isError, true);

        const res = await fetch(`${issuer}/api/v1/knowledge/bases/${secret}`, { headers: { Authorization: `Bearer ${full}` } });
        assert.equal((await res.json()).documentCount, 1, 'nothing was planted in the Secret base');
    });
});
