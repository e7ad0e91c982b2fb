// End-to-end: reference 002 ("a secure bridge in front of a B2B API") with real parts on every
// side. The person signs in through oidc-provider (its real login and consent pages; standing for
// Google); the MCP client is the official TypeScript SDK (401 → discovery → DCR → PKCE → token);
// the company backend ("Nexus") is a small HTTP server in the reference's shape: `POST
// /auth/verify` takes the admin token and an email and answers a token scoped to that user, `GET
// /leads/search` answers that user's leads for it. Bridgekeeper runs as the binary, with the
// provider as `acme` and Nexus bridged.
//
// What it proves: a person new to Bridgekeeper, signed in through the provider, gets an MCP token
// whose `nexus_search_leads` reaches the backend with the token the backend scoped to that person
// (asked once, at consent, about the address the provider vouched for); the scoped token is never
// in what the SDK holds or is answered.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

import { UserAgent } from '../connections/lib/agent.mjs';
import { throughInteraction } from '../connections/lib/interaction.mjs';
import { extractForm } from '../ts/lib/browser.mjs';
import { TestOAuthProvider } from '../ts/lib/provider.mjs';
import { idpEnv, rsaKey, startIdp } from './lib/idp.mjs';
import { REDIRECT_URI, startServer } from './lib/bridgekeeper.mjs';

const ADMIN_TOKEN = 'nexus-admin-token-e2e';
const SCOPE = 'universal-mcp-read-write';

/** The company backend of reference 002. */
async function startNexus() {
    const nexus = { users: new Map(), valid: new Map(), verifyCalls: [], leadCalls: [], issued: [] };
    const server = createServer(async (req, res) => {
        const url = new URL(req.url, 'http://nexus');
        const auth = req.headers.authorization ?? '';
        const json = (status, body) => {
            res.writeHead(status, { 'Content-Type': 'application/json' });
            res.end(JSON.stringify(body));
        };
        if (req.method === 'POST' && url.pathname === '/auth/verify') {
            let body = '';
            for await (const chunk of req) body += chunk;
            const email = JSON.parse(body || '{}').email;
            nexus.verifyCalls.push({ auth, email });
            if (auth !== `Bearer ${ADMIN_TOKEN}`) return json(401, { error: 'invalid_admin_token' });
            const user = nexus.users.get(email);
            if (!user) return json(403, { error: 'access_denied' });
            const token = `nexus_scoped_${user}_${nexus.issued.length + 1}`;
            nexus.issued.push(token);
            nexus.valid.set(token, user);
            return json(200, { access_token: token, user_id: user, expires_in: 86400 });
        }
        if (req.method === 'GET' && url.pathname === '/leads/search') {
            nexus.leadCalls.push({ auth, q: url.searchParams.get('q') });
            const user = nexus.valid.get(auth.replace(/^Bearer /, ''));
            if (!user) return json(401, { error: 'invalid_token' });
            return json(200, [{ id: `lead-of-${user}`, owner: user, company: 'Initech' }]);
        }
        json(404, { error: 'not_found' });
    });
    await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
    nexus.base = `http://127.0.0.1:${server.address().port}`;
    nexus.close = () => new Promise(resolve => server.close(resolve));
    return nexus;
}

describe('reference 002 end to end: oidc-provider, the MCP TypeScript SDK, a bridged backend', { timeout: 120_000 }, () => {
    let idp;
    let nexus;
    let bk;
    let callbackUrl;

    before(async () => {
        idp = await startIdp();
        nexus = await startNexus();
        const p = 'BRIDGEKEEPER_CONNECTIONS__PROVIDERS__NEXUS__';
        const tools = `[{ name = "search_leads", description = "Search the leads the signed-in user may see", url = "${nexus.base}/leads/search", render = "table", input_schema = { type = "object", properties = { q = { type = "string" } }, required = ["q"] } }]`;
        const env = {
            ...idpEnv(idp),
            [`${p}NAME`]: 'Nexus CRM',
            [`${p}AUTH`]: 'token_exchange',
            [`${p}TOKEN_EXCHANGE__VERIFY_URL`]: `${nexus.base}/auth/verify`,
            [`${p}TOKEN_EXCHANGE__ADMIN_TOKEN_ENV`]: 'NEXUS_ADMIN_TOKEN',
            [`${p}TOKEN_EXCHANGE__BRIDGE`]: 'true',
            [`${p}TOOLS__KIND`]: 'http',
            [`${p}TOOLS__DEFINITIONS`]: tools,
            [`${p}READ_TOOLS`]: '["search_leads"]',
            NEXUS_ADMIN_TOKEN: ADMIN_TOKEN,
            BRIDGEKEEPER_CONNECTIONS__ALLOW_PRIVATE_ADDRESSES: 'true',
            BRIDGEKEEPER_CONNECTIONS__ALLOW_HTTP_LOOPBACK: 'true'
        };
        Object.assign(process.env, env);
        bk = await startServer();
        for (const k of Object.keys(env)) delete process.env[k];
        callbackUrl = `${bk.issuer}/login/idp/callback`;
        idp.configure({ redirectUri: callbackUrl, signingKeys: [rsaKey('key-1')] });
    });

    after(async () => {
        await bk?.stop();
        await idp?.close();
        await nexus?.close();
    });

    /**
     * The person's browser from the authorization URL the SDK built: Bridgekeeper's login page,
     * "Continue with Acme SSO", the provider's login and consent, back at the pending request,
     * Bridgekeeper's consent approved. Returns the redirect to the client.
     */
    async function signInThroughIdp(agent, authorizationUrl) {
        const res = await agent.get(authorizationUrl.href);
        assert.equal(res.status, 303, res.text);
        const loginAt = new URL(res.location, bk.issuer);
        assert.equal(loginAt.pathname, '/login', 'not signed in yet');
        const next = loginAt.searchParams.get('next');
        const login = await agent.get(loginAt.href);
        const form = extractForm(login.text, '/login/idp');
        const started = await agent.post(`${bk.issuer}/login/idp`, { csrf_token: form.hidden.get('csrf_token'), idp: 'acme', next });
        assert.equal(started.status, 303, started.text);
        const { callback } = await throughInteraction(agent, started.location, {
            issuer: idp.issuer,
            callbackUrl,
            login: ({ target }) => agent.post(target, { username: idp.person.username, password: idp.person.password }),
            consent: ({ target }) => agent.post(target, { decision: 'approve' })
        });
        const back = await agent.get(callback);
        assert.equal(back.status, 303, back.text);
        assert.equal(new URL(back.location, bk.issuer).href, new URL(next, bk.issuer).href, 'back at the pending authorization request');
        let url = new URL(next, bk.issuer).href;
        for (let hop = 0; hop < 6; hop++) {
            const page = await agent.get(url);
            if (page.status === 303) {
                if (page.location.startsWith(REDIRECT_URI)) return new URL(page.location);
                url = new URL(page.location, bk.issuer).href;
                continue;
            }
            assert.equal(page.status, 200, page.text);
            const consent = extractForm(page.text, '/consent');
            const decided = await agent.post(`${bk.issuer}/consent`, [...consent.hidden, ['decision', 'approve']]);
            assert.equal(decided.status, 303, decided.text);
            return new URL(decided.location);
        }
        throw new Error('no redirect to the client');
    }

    test('a person new here signs in through the provider and search_leads carries their scoped token', async () => {
        Object.assign(idp.person, { accountId: 'pat', username: 'pat', email: 'pat@acme.example', email_verified: true });
        nexus.users.set('pat@acme.example', 'u-pat');
        const agent = new UserAgent();
        const mcpUrl = new URL(`${bk.issuer}/mcp`);
        let callback;
        const provider = new TestOAuthProvider({
            redirectUrl: REDIRECT_URI,
            scope: SCOPE,
            onRedirect: async url => {
                callback = await signInThroughIdp(agent, url);
            }
        });
        // 401 → discovery → DCR → the authorization URL → the person's browser.
        const first = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider });
        await assert.rejects(new Client({ name: 'claude-like', version: '0.0.0' }).connect(first), UnauthorizedError);
        assert.equal(callback?.searchParams.get('error'), null, `${callback}`);
        const code = callback.searchParams.get('code');
        assert.ok(code, `${callback}`);
        assert.deepEqual(nexus.verifyCalls, [{ auth: `Bearer ${ADMIN_TOKEN}`, email: 'pat@acme.example' }], 'asked once, at consent');
        await first.finishAuth(code);
        const scoped = nexus.issued[0];
        assert.ok(!JSON.stringify(provider.tokens()).includes(scoped), 'the MCP token is only a session handle');

        const client = new Client({ name: 'claude-like', version: '0.0.0' });
        await client.connect(new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider }));
        const { tools } = await client.listTools();
        const tool = tools.find(t => t.name === 'nexus_search_leads');
        assert.ok(tool, tools.map(t => t.name).join(', '));
        assert.deepEqual(Object.keys(tool.inputSchema.properties), ['q']);
        const answer = await client.callTool({ name: 'nexus_search_leads', arguments: { q: 'initech' } });
        const text = answer.content.map(c => c.text).join('');
        assert.ok(text.includes('lead-of-u-pat'), text);
        assert.ok(!JSON.stringify(answer).includes('nexus_scoped_'), 'the scoped token is in no answer');
        assert.deepEqual(nexus.leadCalls, [{ auth: `Bearer ${scoped}`, q: 'initech' }], 'the person’s own scoped token');
        await client.close();
    });
});
