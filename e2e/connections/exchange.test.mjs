// End-to-end: reference 002's scoped-token bridge, through the real binary. A company ("Nexus
// CRM") puts its own API behind Bridgekeeper: its backend has a verify endpoint that, given a
// verified email and the operator's admin token, answers an API token scoped to that user, and a
// leads API that answers only to such tokens. The provider is `token_exchange` with a declarative
// HTTP tool (`search_leads`). A person signs up, follows the verification link (read from the
// server's outbox: log-only mail), connects Nexus through the REST API, and an MCP client (the
// official TypeScript SDK) calls `nexus_search_leads`, which reaches the backend with that user's
// scoped token, never the client's own token. Unverified accounts and users the backend refuses
// get 403 and no connection; two tenants see only their own leads.
//
// Bridge mode (the same provider with `bridge = true`, a second server): a verified person signs
// in, the backend is asked at consent, and the SDK's tool call reaches the backend with the token
// sealed on that sign-in's session — no connection, nothing in the JWT, the answer or the log.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { UserAgent } from './lib/agent.mjs';
import { api, authorizeApp, signUpAndAuthorizeApp, startBridgekeeper } from './lib/bridgekeeper.mjs';

const APP_REDIRECT = 'http://127.0.0.1:53691/connected';
const TEST_TIMEOUT_MS = 60_000;
const rand = () => randomBytes(6).toString('hex');
const ADMIN_TOKEN = `nexus-admin-${rand()}${rand()}`;

/** The company's backend: POST /auth/verify (admin token), GET /leads?query= (a user's scoped token). */
async function startNexus(users) {
    const issued = new Map(); // scoped token -> user
    const seen = { verify: [], leads: [] };
    const server = createServer(async (req, res) => {
        const send = (status, body) => {
            res.writeHead(status, { 'Content-Type': 'application/json' });
            res.end(JSON.stringify(body));
        };
        const auth = req.headers.authorization ?? '';
        const url = new URL(req.url, 'http://x');
        if (req.method === 'POST' && url.pathname === '/auth/verify') {
            let raw = '';
            for await (const chunk of req) raw += chunk;
            seen.verify.push({ auth, body: raw });
            if (auth !== `Bearer ${ADMIN_TOKEN}`) return send(401, { error: 'invalid_admin_token' });
            const { email } = JSON.parse(raw);
            const user = users[email];
            if (!user) return send(403, { error: 'user_not_found', detail: `no user ${email}` });
            const token = `nx_${randomBytes(24).toString('base64url')}`;
            issued.set(token, user);
            return send(200, { access_token: token, user_id: user.id, expires_in: 3600 });
        }
        if (req.method === 'GET' && url.pathname === '/leads') {
            seen.leads.push({ auth });
            const user = issued.get(auth.replace(/^Bearer /, ''));
            if (!user) return send(401, { error: 'invalid_token' });
            const q = (url.searchParams.get('query') ?? '').toLowerCase();
            return send(200, { leads: user.leads.filter(l => l.name.toLowerCase().includes(q)) });
        }
        send(404, { error: 'not_found' });
    });
    await new Promise(r => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${server.address().port}`;
    return { base, issued, seen, stop: () => new Promise(r => server.close(r)) };
}

/** The newest message in the server's outbox to `to` with `subject`, decoded (quoted-printable). */
async function mailTo(dataDir, to, subject) {
    const dir = path.join(dataDir, 'outbox');
    const deadline = Date.now() + 10_000;
    for (;;) {
        const files = (await readdir(dir).catch(() => [])).sort().reverse();
        for (const f of files) {
            const raw = await readFile(path.join(dir, f), 'utf8');
            const text = raw.replace(/=\r\n/g, '').replace(/=([0-9A-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
            if (text.includes(`To: ${to}`) && text.includes(`Subject: ${subject}`)) return text;
        }
        if (Date.now() > deadline) throw new Error(`no message "${subject}" to ${to} in ${dir}`);
        await sleep(50);
    }
}

describe('token_exchange (reference 002): a verified email exchanged for the backend’s scoped token', () => {
    let nexus;
    let bk;
    const people = {};

    before(async () => {
        const emails = { alice: `alice-${rand()}@example.com`, bob: `bob-${rand()}@example.com`, carol: `carol-${rand()}@example.com`, dave: `dave-${rand()}@example.com` };
        nexus = await startNexus({
            [emails.alice]: { id: 'u_alice', leads: [{ name: 'Acme Corp', owner: 'alice' }, { name: 'Globex', owner: 'alice' }] },
            [emails.bob]: { id: 'u_bob', leads: [{ name: 'Acme Industries', owner: 'bob' }] },
            [emails.dave]: { id: 'u_dave', leads: [] }
            // carol is not a Nexus user.
        });
        const p = 'BRIDGEKEEPER_CONNECTIONS__PROVIDERS__NEXUS__';
        bk = await startBridgekeeper({
            [`${p}NAME`]: 'Nexus CRM',
            [`${p}AUTH`]: 'token_exchange',
            [`${p}TOKEN_EXCHANGE__VERIFY_URL`]: `${nexus.base}/auth/verify`,
            [`${p}TOKEN_EXCHANGE__ADMIN_TOKEN_ENV`]: 'E2E_NEXUS_ADMIN_TOKEN',
            E2E_NEXUS_ADMIN_TOKEN: ADMIN_TOKEN,
            [`${p}TOOLS__KIND`]: 'http',
            [`${p}TOOLS__DEFINITIONS`]: `[{ name = "search_leads", description = "Search the leads of the signed-in user", url = "${nexus.base}/leads", render = "json", input_schema = { type = "object", properties = { query = { type = "string" } }, required = ["query"] } }]`,
            [`${p}READ_TOOLS`]: '["search_leads"]',
            BRIDGEKEEPER_CONNECTIONS__ALLOW_PRIVATE_ADDRESSES: 'true',
            BRIDGEKEEPER_CONNECTIONS__ALLOW_HTTP_LOOPBACK: 'true'
        });
        for (const [name, email] of Object.entries(emails)) {
            const app = await signUpAndAuthorizeApp(new UserAgent(), bk.issuer, {
                email,
                password: `pw-${rand()}-correct horse`,
                redirectUri: APP_REDIRECT,
                scope: 'connections universal-mcp-read-write'
            });
            people[name] = { ...app, email };
        }
        // Everyone but dave follows the link the sign-up sent.
        for (const name of ['alice', 'bob', 'carol']) {
            const message = await mailTo(bk.dataDir, people[name].email, 'Verify your email address');
            const link = message.match(/https?:\/\/\S+\/verify-email\?token=\S+/)[0];
            const res = await fetch(link);
            assert.equal(res.status, 200, await res.text());
        }
    });

    after(async () => {
        await bk?.stop();
        await nexus?.stop();
    });

    const connect = who =>
        api(bk.issuer, 'POST', '/api/v1/connections/initiate', {
            token: people[who].accessToken,
            json: { providerId: 'nexus', redirectUrl: APP_REDIRECT }
        });

    const mcp = async token => {
        const c = new Client({ name: 'exchange-e2e', version: '1.0.0' });
        await c.connect(new StreamableHTTPClientTransport(new URL('/mcp', bk.issuer), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
        return c;
    };

    test('an unverified address is never sent to the backend', { timeout: TEST_TIMEOUT_MS }, async () => {
        const before = nexus.seen.verify.length;
        const res = await connect('dave');
        assert.equal(res.status, 403, res.text);
        assert.match(res.body.detail, /verify/);
        assert.equal(nexus.seen.verify.length, before, 'the backend was not asked');
        const list = await api(bk.issuer, 'GET', '/api/v1/connections', { token: people.dave.accessToken });
        assert.equal(list.body.connections.length, 0);
    });

    test('a user the backend refuses gets 403 and no connection', { timeout: TEST_TIMEOUT_MS }, async () => {
        const res = await connect('carol');
        assert.equal(res.status, 403, res.text);
        assert.match(res.body.detail, /user_not_found/);
        assert.ok(!res.text.includes('no user'), 'the backend’s own message is not passed on');
        const list = await api(bk.issuer, 'GET', '/api/v1/connections', { token: people.carol.accessToken });
        assert.equal(list.body.connections.length, 0);
    });

    test('verified users connect: the backend got the admin token and the verified email; the scoped token is sealed', { timeout: TEST_TIMEOUT_MS }, async () => {
        for (const who of ['alice', 'bob']) {
            const res = await connect(who);
            assert.equal(res.status, 201, res.text);
            assert.equal(res.body.connection.status, 'active');
            assert.equal(res.body.connection.providerId, 'nexus');
            people[who].connectionId = res.body.connection.id;
            const asked = nexus.seen.verify.at(-1);
            assert.equal(asked.auth, `Bearer ${ADMIN_TOKEN}`);
            assert.deepEqual(JSON.parse(asked.body), { email: people[who].email });
        }
        const view = await api(bk.issuer, 'GET', `/api/v1/connections/${people.alice.connectionId}`, { token: people.alice.accessToken });
        assert.equal(view.status, 200);
        assert.ok(view.body.expiresAt > Date.now() / 1000 + 3000, 'the backend’s expires_in is kept');
        for (const token of nexus.issued.keys()) {
            assert.ok(!view.text.includes(token), 'the scoped token is never shown');
            assert.ok(!bk.logTail().includes(token), 'nor logged');
        }
        assert.ok(!bk.logTail().includes(ADMIN_TOKEN), 'the admin token is never logged');
    });

    test('nexus_search_leads reaches the backend with each tenant’s own scoped token', { timeout: TEST_TIMEOUT_MS }, async () => {
        const alice = await mcp(people.alice.accessToken);
        const { tools } = await alice.listTools();
        const tool = tools.find(t => t.name === 'nexus_search_leads');
        assert.ok(tool, tools.map(t => t.name).join(', '));
        assert.equal(tool.annotations.readOnlyHint, true);
        const result = await alice.callTool({ name: 'nexus_search_leads', arguments: { query: 'acme' } });
        assert.equal(result.isError ?? false, false, JSON.stringify(result));
        assert.deepEqual(result.structuredContent, { leads: [{ name: 'Acme Corp', owner: 'alice' }] });
        const aliceAuth = nexus.seen.leads.at(-1).auth;
        assert.equal(nexus.issued.get(aliceAuth.replace('Bearer ', '')).id, 'u_alice', 'alice’s scoped token');
        assert.ok(!aliceAuth.includes(people.alice.accessToken), 'never the client’s own token');
        await alice.close();

        const bob = await mcp(people.bob.accessToken);
        const bobs = await bob.callTool({ name: 'nexus_search_leads', arguments: { query: 'acme' } });
        assert.deepEqual(bobs.structuredContent, { leads: [{ name: 'Acme Industries', owner: 'bob' }] });
        assert.equal(nexus.issued.get(nexus.seen.leads.at(-1).auth.replace('Bearer ', '')).id, 'u_bob');
        await bob.close();

        // Carol (no connection) does not see the tool at all.
        const carol = await mcp(people.carol.accessToken);
        assert.ok(!(await carol.listTools()).tools.some(t => t.name.startsWith('nexus_')));
        await carol.close();
    });
});

describe('bridge mode (reference 002): every sign-in carries the backend’s scoped token', () => {
    let nexus;
    let bk;
    const erin = `erin-${rand()}@example.com`;

    before(async () => {
        nexus = await startNexus({ [erin]: { id: 'u_erin', leads: [{ name: 'Acme Corp', owner: 'erin' }, { name: 'Globex', owner: 'erin' }] } });
        const p = 'BRIDGEKEEPER_CONNECTIONS__PROVIDERS__NEXUS__';
        bk = await startBridgekeeper({
            [`${p}NAME`]: 'Nexus CRM',
            [`${p}AUTH`]: 'token_exchange',
            [`${p}TOKEN_EXCHANGE__VERIFY_URL`]: `${nexus.base}/auth/verify`,
            [`${p}TOKEN_EXCHANGE__ADMIN_TOKEN_ENV`]: 'E2E_NEXUS_ADMIN_TOKEN',
            [`${p}TOKEN_EXCHANGE__BRIDGE`]: 'true',
            E2E_NEXUS_ADMIN_TOKEN: ADMIN_TOKEN,
            [`${p}TOOLS__KIND`]: 'http',
            [`${p}TOOLS__DEFINITIONS`]: `[{ name = "search_leads", description = "Search the leads of the signed-in user", url = "${nexus.base}/leads", render = "json", input_schema = { type = "object", properties = { query = { type = "string" } }, required = ["query"] } }]`,
            [`${p}READ_TOOLS`]: '["search_leads"]',
            BRIDGEKEEPER_CONNECTIONS__ALLOW_PRIVATE_ADDRESSES: 'true',
            BRIDGEKEEPER_CONNECTIONS__ALLOW_HTTP_LOOPBACK: 'true'
        });
    });

    after(async () => {
        await bk?.stop();
        await nexus?.stop();
    });

    /** Signs up and in through the pages, then follows the verification link from the outbox. */
    async function signUpVerified(agent, email) {
        const at = p => new URL(p, bk.issuer).href;
        const password = `pw-${rand()}-correct horse`;
        const csrf = html => html.match(/name="csrf_token" value="([^"]+)"/)[1];
        const signup = await agent.get(at('/signup'));
        let res = await agent.post(at('/signup'), { csrf_token: csrf(signup.text), next: '/', email, password });
        assert.equal(res.status, 303, res.text);
        const login = await agent.get(new URL(res.location, bk.issuer).href);
        res = await agent.post(at('/login'), { csrf_token: csrf(login.text), next: '/', email, password });
        assert.equal(res.status, 303, res.text);
        const message = await mailTo(bk.dataDir, email, 'Verify your email address');
        const link = message.match(/https?:\/\/\S+\/verify-email\?token=\S+/)[0];
        assert.equal((await fetch(link)).status, 200);
    }

    test('a verified sign-in is checked at consent and the SDK’s tool call carries that session’s token', { timeout: TEST_TIMEOUT_MS }, async () => {
        const agent = new UserAgent();
        await signUpVerified(agent, erin);
        const asked = nexus.seen.verify.length;
        const app = await authorizeApp(agent, bk.issuer, { redirectUri: APP_REDIRECT, scope: 'connections universal-mcp-read-write' });
        assert.equal(nexus.seen.verify.length, asked + 1, 'the backend was asked once, at consent');
        assert.equal(nexus.seen.verify.at(-1).auth, `Bearer ${ADMIN_TOKEN}`);
        assert.deepEqual(JSON.parse(nexus.seen.verify.at(-1).body), { email: erin });
        const scoped = [...nexus.issued.keys()].at(-1);
        const claims = Buffer.from(app.accessToken.split('.')[1], 'base64url').toString();
        assert.ok(!claims.includes(scoped), 'the scoped token is not in the JWT');

        const c = new Client({ name: 'bridge-e2e', version: '1.0.0' });
        await c.connect(new StreamableHTTPClientTransport(new URL('/mcp', bk.issuer), { requestInit: { headers: { Authorization: `Bearer ${app.accessToken}` } } }));
        const { tools } = await c.listTools();
        const tool = tools.find(t => t.name === 'nexus_search_leads');
        assert.ok(tool, tools.map(t => t.name).join(', '));
        assert.deepEqual(Object.keys(tool.inputSchema.properties), ['query'], 'no token among the arguments');
        const result = await c.callTool({ name: 'nexus_search_leads', arguments: { query: 'acme' } });
        assert.equal(result.isError ?? false, false, JSON.stringify(result));
        assert.deepEqual(result.structuredContent, { leads: [{ name: 'Acme Corp', owner: 'erin' }] });
        assert.equal(nexus.seen.leads.at(-1).auth, `Bearer ${scoped}`, 'the session’s scoped token');
        assert.ok(!JSON.stringify(result).includes(scoped));
        await c.close();
        const connections = await api(bk.issuer, 'GET', '/api/v1/connections', { token: app.accessToken });
        assert.equal(connections.status, 200, connections.text);
        assert.equal(connections.body.connections.length, 0, 'no connection: the token is the session’s');
        assert.ok(!bk.logTail().includes(scoped) && !bk.logTail().includes(ADMIN_TOKEN), 'nothing logged');
    });
});
