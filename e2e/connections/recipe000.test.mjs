// Reference 000 ("Multi-Tenant Setup") end to end, step by step, with the recipe's own bodies and
// paths, through the real binary and real third-party parts:
//
// 1. The operator (a token from `bridgekeeper admin token create`) creates the white-label client
//    with the recipe's body (`POST /api/v1/auth-clients`; the logo a real PNG as a data URI).
// 2–3. Two customers each sign up and authorize through the white-label pages (`/oauth/authorize`,
//    PKCE S256, the recipe's scope string and a state), the pages showing the client's branding;
//    the app exchanges the code at `/api/v1/auth/token` with client_secret_basic, built exactly as
//    the recipe builds it.
// 4. Each customer connects a different provider with `POST /api/v1/connections/initiate
//    {providerId, redirectUrl}` → `authorizationUrl` → the provider's own login and consent pages:
//    customer A connects `acme` (an `oauth2` provider: npm oidc-provider, whose tools come from
//    server-everything behind a recording proxy), customer B connects `docs` (an `mcp` provider: a
//    protected MCP server on the official TypeScript SDK, its authorization server another
//    oidc-provider).
// 5. The app calls `POST /mcp tools/call use-agent {prompt}` with `X-Response-Format: json` and each
//    customer's token; the model is the scripted OpenAI-compatible server (e2e/lib/scripted-llm.mjs),
//    whose script makes it call a tool it was offered.
//
// Then the recipe's promise — "each customer's token only accesses THEIR data" — is checked where
// it can fail: at the model (what each run offered and put in the prompt), at server-everything's
// proxy (whose credential arrived), and at the docs MCP server (who called it).
//
// The recipe's scope string ("universal-mcp-read-write connections account openid") is enough for
// everything the recipe does: `connections` for step 4, `universal-mcp-read-write` for `use-agent`.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { UserAgent, rawRequest } from './lib/agent.mjs';
import { api, providerEnv, startBridgekeeper } from './lib/bridgekeeper.mjs';
import { startEverything } from './lib/everything.mjs';
import { throughInteraction } from './lib/interaction.mjs';
import { startMcpUpstream } from './lib/mcp-upstream.mjs';
import { startUpstream } from './lib/upstream.mjs';
import { extractForm } from '../ts/lib/browser.mjs';
import { createOperatorToken, solidPngDataUri } from '../oidc/lib/bridgekeeper.mjs';
import { startScriptedLlm } from '../lib/scripted-llm.mjs';

const TEST_TIMEOUT_MS = 90_000;
const rand = () => randomBytes(6).toString('hex');

// The recipe's values.
const AUTH_CALLBACK = 'https://yourapp.com/auth/callback';
const CONNECTIONS_SUCCESS = 'https://yourapp.com/connections/success';
const RECIPE_SCOPE = 'universal-mcp-read-write connections account openid';
const DESCRIPTION = 'YourApp — AI-powered workspace';
const BRAND_COLOR = '#4F46E5';
const LOGO = solidPngDataUri(32, 32, [0x4f, 0x46, 0xe5]);
const PROMPT_A = "What's on my calendar today?";
const PROMPT_B = 'Show my Jira backlog';

// What each customer's tools return, to follow it into (or out of) the prompts.
const MARK_A = `calendar-orchid-${rand()}`;
const MARK_B = `backlog-heron-${rand()}`;

const LLM_KEY = `sk-recipe000-${rand()}`;
const UPSTREAM_MODEL = 'scripted-agent-1';

/** HTML attribute text back to the characters (MiniJinja escapes `/` and friends). */
const unescapeHtml = s =>
    s
        .replace(/&#x([0-9a-f]+);/gi, (_, h) => String.fromCodePoint(parseInt(h, 16)))
        .replace(/&#(\d+);/g, (_, d) => String.fromCodePoint(Number(d)))
        .replace(/&quot;/g, '"')
        .replace(/&lt;/g, '<')
        .replace(/&gt;/g, '>')
        .replace(/&amp;/g, '&');

describe('reference 000: multi-tenant setup, step by step', () => {
    let llm;
    let everything;
    let acme;
    let docs;
    let bk;
    let caDir;
    let operator;
    /** Step 1's answer. */
    let client;
    /** customer name → {agent, email, password, accessToken, refreshToken, connectionId} */
    const customers = {};
    /** The recipe's backend, `queryCustomerServices`, per run: {res, body, llmRequests, everythingRequests, docsRequests}. */
    const runs = {};

    const acmeUser = { accountId: `acme-${rand()}`, username: 'alice', password: `pw-${rand()}`, email: 'alice@acme.example', name: 'Alice Acme' };
    const docsUser = { accountId: `docs-${rand()}`, username: 'bob', password: `pw-${rand()}`, email: 'bob@docs.example', name: 'Bob Docs' };

    const callbackUrl = () => `${bk.issuer}/api/v1/connections/callback`;

    before(async () => {
        llm = await startScriptedLlm({ replies: [{ content: 'ok' }] });
        everything = await startEverything();
        acme = await startUpstream({ accessTokenTtl: 600, user: acmeUser });
        docs = await startMcpUpstream({ user: docsUser });
        // Both upstreams' throwaway CAs, in the one PEM bundle the binary trusts.
        caDir = await mkdtemp(path.join(tmpdir(), 'bk-e2e-recipe000-'));
        const caFile = path.join(caDir, 'cas.pem');
        await writeFile(caFile, Buffer.concat([acme.ca, Buffer.from('\n'), docs.ca]));

        const acmeEnv = providerEnv('acme', acme, { scopes: ['openid', 'email', 'profile'], authorizeParams: { prompt: 'consent' } });
        const d = 'BRIDGEKEEPER_CONNECTIONS__PROVIDERS__DOCS__';
        bk = await startBridgekeeper({
            ...acmeEnv,
            // Acme's tools: server-everything (behind the recording proxy), called with the tenant's Acme token.
            BRIDGEKEEPER_CONNECTIONS__PROVIDERS__ACME__TOOLS__KIND: 'mcp',
            BRIDGEKEEPER_CONNECTIONS__PROVIDERS__ACME__TOOLS__URL: everything.url,
            BRIDGEKEEPER_CONNECTIONS__ALLOW_HTTP_LOOPBACK: 'true',
            [`${d}NAME`]: 'Docs (MCP, e2e)',
            [`${d}DESCRIPTION`]: 'A protected MCP server run by the test',
            [`${d}AUTH`]: 'mcp',
            [`${d}MCP__URL`]: docs.mcpUrl,
            BRIDGEKEEPER_CONNECTIONS__EXTRA_CA_FILE: caFile,
            RECIPE000_LLM_KEY: LLM_KEY,
            BRIDGEKEEPER_LLM__MODELS: `[{id="recipe-model", base_url="${llm.baseUrl}", upstream_model="${UPSTREAM_MODEL}", ` +
                'api_key_env="RECIPE000_LLM_KEY", prompt_credits_per_million=1000000, completion_credits_per_million=1000000}]',
            BRIDGEKEEPER_CREDITS__SIGNUP_GRANT: '1000000'
        });
        acme.configure({ redirectUri: callbackUrl() });
        operator = await createOperatorToken(bk.dataDir, 'recipe000');
    });

    after(async () => {
        await bk?.stop();
        await llm?.close();
        await everything?.stop();
        await acme?.stop();
        await docs?.stop();
        if (caDir) await rm(caDir, { recursive: true, force: true });
    });

    const withLogs = fn => async t => {
        try {
            await fn(t);
        } catch (err) {
            err.message +=
                `\n--- everything proxy ---\n${everything?.requests.map(r => JSON.stringify(r)).join('\n')}` +
                `\n--- docs MCP server ---\n${docs?.mcpRequests.map(r => JSON.stringify(r)).join('\n')}` +
                `\n--- server log (tail) ---\n${bk?.logTail()}`;
            throw err;
        }
    };

    /** Asserts the white-label header of a page: logo (the data URI), name, description, brand stylesheet. */
    function assertBranded(html, where) {
        const ctx = `${where}: ${html.slice(0, 3000)}`;
        assert.ok(html.includes('<div class="brand branded">'), `the branded header: ${ctx}`);
        const src = html.match(/<img class="brand-logo" src="([^"]*)" alt="([^"]*)">/);
        assert.ok(src, `the logo: ${ctx}`);
        assert.equal(unescapeHtml(src[1]), LOGO, `the logo is the client's data URI: ${ctx}`);
        assert.equal(unescapeHtml(src[2]), 'YourApp logo');
        assert.ok(html.includes('<span class="brand-name">YourApp</span>'), `the client's name: ${ctx}`);
        assert.ok(html.includes(`<p class="muted brand-description">${DESCRIPTION}</p>`), `the description: ${ctx}`);
        assert.ok(html.includes(`<link rel="stylesheet" href="/static/brand/${client.clientId}.css">`), `the brand stylesheet: ${ctx}`);
        assert.ok(!html.includes('<div class="brand">Bridgekeeper</div>'), `not the server's own brand: ${ctx}`);
        assert.ok(!html.includes('Bridgekeeper'), `no "Bridgekeeper" anywhere on the page (title included): ${ctx}`);
    }

    test(
        'step 1: the operator creates the white-label client with the recipe body',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            // The recipe's body as it stands, the logo a real PNG.
            const res = await api(bk.issuer, 'POST', '/api/v1/auth-clients', {
                token: operator.token,
                json: {
                    name: 'YourApp',
                    type: 'confidential',
                    roles: ['whitelabel-customer'],
                    domains: ['yourapp.com'],
                    redirectUris: ['https://yourapp.com/auth/callback', 'https://yourapp.com/connections/callback'],
                    allowedScopes: ['universal-mcp-read-write', 'agents-all', 'llm-all', 'connections', 'account', 'openid', 'profile', 'email'],
                    branding: { logo: LOGO, description: DESCRIPTION, brandColor: BRAND_COLOR }
                }
            });
            assert.equal(res.status, 201, `POST /api/v1/auth-clients: ${res.text}`);
            assert.match(res.body.clientId, /^cli_/);
            assert.ok(typeof res.body.clientSecret === 'string' && res.body.clientSecret.length >= 32, 'a client secret');
            client = { clientId: res.body.clientId, clientSecret: res.body.clientSecret };
            const css = await rawRequest(new URL(`/static/brand/${client.clientId}.css`, bk.issuer));
            assert.equal(css.status, 200);
            assert.match(css.text, new RegExp(`--brand:\\s*${BRAND_COLOR}`, 'i'));
        })
    );

    /**
     * Steps 2 and 3 for one customer: the app sends them to /oauth/authorize; not signed in, they
     * land on the branded sign-in page, create an account, sign in, approve on the branded consent
     * page and return to the app's callback, which exchanges the code (client_secret_basic).
     */
    async function customerSignsUpAndAuthorizes(name) {
        const at = p => new URL(p, bk.issuer).href;
        const agent = new UserAgent({ ca: [acme.ca, docs.ca] });
        const email = `${name}-${rand()}@customers.example`;
        const password = `pw-${rand()}-correct horse`;

        // Step 2, as the recipe writes it.
        const codeVerifier = randomBytes(64).toString('base64url');
        const codeChallenge = createHash('sha256').update(codeVerifier).digest('base64url');
        const session = { codeVerifier, state: randomUUID() };
        const url = new URL('/oauth/authorize', bk.issuer);
        url.searchParams.set('response_type', 'code');
        url.searchParams.set('client_id', client.clientId);
        url.searchParams.set('redirect_uri', AUTH_CALLBACK);
        url.searchParams.set('scope', RECIPE_SCOPE);
        url.searchParams.set('state', session.state);
        url.searchParams.set('code_challenge', codeChallenge);
        url.searchParams.set('code_challenge_method', 'S256');

        // Not signed in: the branded sign-in page, which offers to create an account.
        let res = await agent.get(url.href);
        assert.equal(res.status, 303, `authorize (signed out): ${res.status} ${res.text}`);
        assert.equal(new URL(res.location).pathname, '/login');
        const loginPage = await agent.get(res.location);
        assert.equal(loginPage.status, 200);
        assertBranded(loginPage.text, `${name}: sign-in page`);
        const signupHref = unescapeHtml(loginPage.text.match(/<a href="(\/signup\?next=[^"]*)">Create one<\/a>/)?.[1] ?? '');
        assert.ok(signupHref, `the sign-in page links to sign-up: ${loginPage.text}`);
        const signupPage = await agent.get(at(signupHref));
        assert.equal(signupPage.status, 200);
        // "Your customers sign up on your platform": the sign-up page is the client's too.
        assertBranded(signupPage.text, `${name}: sign-up page`);
        const signup = extractForm(signupPage.text, '/signup');
        assert.equal(new URL(signup.hidden.get('next'), bk.issuer).pathname, '/api/v1/auth/authorize', 'sign-up continues the request');
        // A refused sign-up (password too short) shows the page again, still branded.
        const refused = await agent.post(at('/signup'), { csrf_token: signup.hidden.get('csrf_token'), next: signup.hidden.get('next'), email, password: 'short' });
        assert.equal(refused.status, 400, `POST /signup (too short): ${refused.status} ${refused.text}`);
        assertBranded(refused.text, `${name}: refused sign-up page`);
        res = await agent.post(at('/signup'), { csrf_token: signup.hidden.get('csrf_token'), next: signup.hidden.get('next'), email, password });
        assert.equal(res.status, 303, `POST /signup: ${res.status} ${res.text}`);
        const signedUp = await agent.get(res.location);
        assert.equal(signedUp.status, 200);
        assertBranded(signedUp.text, `${name}: sign-in page after sign-up`);
        const login = extractForm(signedUp.text, '/login');
        res = await agent.post(at('/login'), { csrf_token: login.hidden.get('csrf_token'), next: login.hidden.get('next'), email, password });
        assert.equal(res.status, 303, `POST /login: ${res.status} ${res.text}`);
        // Back to the authorization request, then the branded consent page.
        res = await agent.get(res.location);
        assert.equal(res.status, 303, `authorize (signed in): ${res.status} ${res.text}`);
        assert.equal(new URL(res.location).pathname, '/consent');
        const consentPage = await agent.get(res.location);
        assert.equal(consentPage.status, 200, consentPage.text);
        assertBranded(consentPage.text, `${name}: consent page`);
        for (const s of RECIPE_SCOPE.split(' ')) assert.ok(consentPage.text.includes(s), `the consent page lists ${s}`);
        const consent = extractForm(consentPage.text, '/consent');
        const fields = new Map(consent.hidden);
        fields.set('decision', 'approve');
        res = await agent.post(at('/consent'), fields);
        assert.equal(res.status, 303, `POST /consent: ${res.status} ${res.text}`);

        // Step 3: the app's callback.
        const back = new URL(res.location);
        assert.equal(back.origin + back.pathname, AUTH_CALLBACK);
        const code = back.searchParams.get('code');
        const state = back.searchParams.get('state');
        if (state !== session.state) throw new Error('CSRF mismatch');
        assert.ok(code, `a code: ${back}`);
        const tokenRes = await rawRequest(new URL('/api/v1/auth/token', bk.issuer), {
            method: 'POST',
            headers: {
                'Content-Type': 'application/x-www-form-urlencoded',
                Authorization: `Basic ${btoa(`${client.clientId}:${client.clientSecret}`)}`
            },
            body: new URLSearchParams({
                grant_type: 'authorization_code',
                code,
                redirect_uri: AUTH_CALLBACK,
                code_verifier: session.codeVerifier
            }).toString()
        });
        assert.equal(tokenRes.status, 200, `token: ${tokenRes.text}`);
        const { access_token, refresh_token, scope } = tokenRes.json();
        assert.ok(access_token, 'an access token');
        assert.ok(refresh_token, 'a refresh token (the recipe stores it)');
        assert.deepEqual(scope.split(' ').sort(), RECIPE_SCOPE.split(' ').sort(), 'exactly the scopes asked for');
        customers[name] = { agent, email, password, accessToken: access_token, refreshToken: refresh_token };
    }

    test(
        'steps 2–3: two customers sign up and authorize through the branded pages; the code is exchanged with client_secret_basic',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            await customerSignsUpAndAuthorizes('a');
            await customerSignsUpAndAuthorizes('b');
            assert.notEqual(customers.a.accessToken, customers.b.accessToken);
            // Each token is its own customer's account.
            const a = await api(bk.issuer, 'GET', '/api/v1/account', { token: customers.a.accessToken });
            const b = await api(bk.issuer, 'GET', '/api/v1/account', { token: customers.b.accessToken });
            assert.equal(a.status, 200, a.text);
            assert.equal(b.status, 200, b.text);
            assert.equal(a.body.email, customers.a.email);
            assert.equal(b.body.email, customers.b.email);
        })
    );

    /** Step 4 for one customer: initiate, the provider's pages, the callback, back to the app. */
    async function connect(name, providerId, upstream, user) {
        const c = customers[name];
        const res = await api(bk.issuer, 'POST', '/api/v1/connections/initiate', {
            token: c.accessToken,
            json: { providerId, redirectUrl: CONNECTIONS_SUCCESS }
        });
        assert.equal(res.status, 200, `initiate ${providerId}: ${res.text}`);
        const { authorizationUrl } = res.body;
        assert.ok(authorizationUrl.startsWith(`${upstream.issuer}/`), `to ${providerId}'s authorization server: ${authorizationUrl}`);
        const { callback, seen } = await throughInteraction(c.agent, authorizationUrl, {
            issuer: upstream.issuer,
            callbackUrl: callbackUrl(),
            login: ({ target }) => c.agent.post(target, { username: user.username, password: user.password }),
            consent: ({ target }) => c.agent.post(target, { decision: 'approve' })
        });
        assert.ok(seen.includes('login'), `signed in at ${providerId}: ${seen}`);
        const landed = await c.agent.get(callback);
        assert.equal(landed.status, 303, `callback: ${landed.status} ${landed.text}`);
        const to = new URL(landed.location);
        assert.equal(to.origin + to.pathname, CONNECTIONS_SUCCESS, `back to the app: ${landed.location}`);
        assert.equal(to.searchParams.get('status'), 'active', landed.location);
        c.connectionId = to.searchParams.get('connectionId');
        assert.ok(c.connectionId, landed.location);
        c.providerId = providerId;
    }

    test(
        'step 4: customer A connects acme (oauth2), customer B connects docs (mcp), each through authorizationUrl',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            await connect('a', 'acme', acme, acmeUser);
            await connect('b', 'docs', docs, docsUser);
            // Each account lists its own connection only.
            for (const [name, other] of [['a', 'b'], ['b', 'a']]) {
                const list = await api(bk.issuer, 'GET', '/api/v1/connections', { token: customers[name].accessToken });
                assert.equal(list.status, 200, list.text);
                assert.deepEqual(list.body.connections.map(x => x.id), [customers[name].connectionId]);
                const theirs = await api(bk.issuer, 'GET', `/api/v1/connections/${customers[other].connectionId}`, { token: customers[name].accessToken });
                assert.equal(theirs.status, 404, `another customer's connection is not found: ${theirs.text}`);
            }
            // The one Acme access token Bridgekeeper holds: customer A's (oidc-provider's opaque tokens are their ids).
            const grants = acme.events.filter(e => e.event === 'grant.success' && e.grantType === 'authorization_code');
            assert.equal(grants.length, 1, JSON.stringify(acme.events));
            customers.a.acmeAccessToken = grants[0].accessToken;
            assert.ok(customers.a.acmeAccessToken);
        })
    );

    /** The recipe's `queryCustomerServices`, recording what each upstream saw during the call. */
    async function queryCustomerServices(name, prompt, script) {
        llm.setScript(script);
        const marks = { llm: llm.requests.length, everything: everything.requests.length, docs: docs.mcpRequests.length };
        const res = await rawRequest(new URL('/mcp', bk.issuer), {
            method: 'POST',
            headers: {
                Authorization: `Bearer ${customers[name].accessToken}`,
                'Content-Type': 'application/json',
                'X-Response-Format': 'json'
            },
            body: JSON.stringify({ jsonrpc: '2.0', method: 'tools/call', params: { name: 'use-agent', arguments: { prompt } }, id: '1' })
        });
        return {
            res,
            body: res.json(),
            llmRequests: llm.requests.slice(marks.llm),
            everythingRequests: everything.requests.slice(marks.everything),
            docsRequests: docs.mcpRequests.slice(marks.docs)
        };
    }

    const offered = req => (req.body.tools ?? []).map(t => t.function.name);
    const toolMessages = req => req.body.messages.filter(m => m.role === 'tool');

    test(
        'step 5: use-agent with X-Response-Format: json and each customer’s token; the model calls the tools it was offered',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            runs.a = await queryCustomerServices('a', PROMPT_A, {
                replies: [
                    { tool_calls: [
                        { id: 'call_a1', name: 'acme_echo', arguments: { message: MARK_A } },
                        { id: 'call_a2', name: 'list-connections', arguments: {} }
                    ] },
                    { content: `Your calendar: ${MARK_A}` }
                ]
            });
            runs.b = await queryCustomerServices('b', PROMPT_B, {
                replies: [
                    { tool_calls: [{ id: 'call_b1', name: 'docs_search_docs', arguments: { query: MARK_B } }] },
                    { content: `Your backlog: ${MARK_B}` }
                ]
            });
            for (const [name, run, calls, answer] of [
                ['a', runs.a, ['acme_echo', 'list-connections'], `Your calendar: ${MARK_A}`],
                ['b', runs.b, ['docs_search_docs'], `Your backlog: ${MARK_B}`]
            ]) {
                const ctx = `${name}: ${run.res.status} ${run.res.text}`;
                assert.equal(run.res.status, 200, ctx);
                assert.match(String(run.res.headers['content-type']), /^application\/json/, `plain JSON, as asked: ${ctx}`);
                assert.equal(run.body.id, '1');
                const result = run.body.result;
                assert.ok(result && result.isError !== true, ctx);
                assert.equal(result.content[0].text, answer, ctx);
                assert.equal(result.structuredContent.answer, answer);
                assert.equal(result.structuredContent.stopReason, 'answered');
                assert.equal(result.structuredContent.steps, 2);
                assert.deepEqual(result.structuredContent.toolCalls.map(c => [c.name, c.ok]), calls.map(c => [c, true]), ctx);
                // Two model turns, with the operator's key and model, never the customer's token.
                assert.equal(run.llmRequests.length, 2, ctx);
                for (const req of run.llmRequests) {
                    assert.equal(req.headers.authorization, `Bearer ${LLM_KEY}`);
                    assert.equal(req.body.model, UPSTREAM_MODEL);
                    assert.ok(!JSON.stringify(req).includes(customers[name].accessToken), 'the customer token never reaches the model');
                }
                assert.equal(run.llmRequests[0].body.messages.at(-1).content, name === 'a' ? PROMPT_A : PROMPT_B, 'the prompt reached the model');
            }
            // What the tools answered came back to the model, in the second turn.
            const [echo, list] = toolMessages(runs.a.llmRequests[1]);
            assert.ok(echo.content.includes(`Echo: ${MARK_A}`), echo.content);
            assert.ok(list.content.includes(customers.a.connectionId), list.content);
            const [search] = toolMessages(runs.b.llmRequests[1]);
            assert.ok(search.content.includes(`3 pages match "${MARK_B}"`), search.content);
        })
    );

    test(
        'security_each_customers_agent_reached_only_that_customers_connections',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            // The model was offered only the caller's provider's tools (plus the agent's built-ins).
            for (const req of runs.a.llmRequests) {
                const names = offered(req);
                assert.ok(names.includes('acme_echo') && names.includes('whoami'), `A's offer: ${names}`);
                assert.ok(!names.some(n => n.startsWith('docs_')), `no docs tool offered to A: ${names}`);
                assert.ok(!names.includes('use-agent'), 'never use-agent itself');
            }
            for (const req of runs.b.llmRequests) {
                const names = offered(req);
                assert.ok(names.includes('docs_search_docs') && names.includes('docs_whoami'), `B's offer: ${names}`);
                assert.ok(!names.some(n => n.startsWith('acme_')), `no acme tool offered to B: ${names}`);
            }
            // server-everything (acme's tools) was called during A's run only, always with A's Acme token.
            assert.ok(runs.a.everythingRequests.some(r => r.rpc === 'tools/call'), JSON.stringify(runs.a.everythingRequests));
            for (const r of runs.a.everythingRequests)
                assert.equal(r.authorization, `Bearer ${customers.a.acmeAccessToken}`, `A's Acme credential: ${JSON.stringify(r)}`);
            assert.deepEqual(runs.b.everythingRequests, [], 'nothing reached acme’s tools during B’s run');
            for (const r of everything.requests) assert.equal(r.authorization, `Bearer ${customers.a.acmeAccessToken}`, 'only ever A’s credential');
            // The docs MCP server was called during B's run only, for B's docs account, by Bridgekeeper's registered client.
            assert.deepEqual(runs.a.docsRequests, [], 'nothing reached the docs server during A’s run');
            const bCalls = runs.b.docsRequests.filter(r => r.rpc === 'tools/call');
            assert.equal(bCalls.length, 1, JSON.stringify(runs.b.docsRequests));
            for (const r of runs.b.docsRequests.filter(r => r.status === 200)) {
                assert.equal(r.sub, docsUser.accountId, `B's docs account: ${JSON.stringify(r)}`);
                assert.equal(r.clientId, docs.registrations[0].clientId);
            }
            // B's data never appears in A's prompts, nor A's in B's.
            const aText = JSON.stringify(runs.a.llmRequests);
            const bText = JSON.stringify(runs.b.llmRequests);
            for (const leak of [MARK_B, PROMPT_B, customers.b.email, customers.b.connectionId, 'docs_'])
                assert.ok(!aText.includes(leak), `B's ${leak} is not in A's prompts`);
            for (const leak of [MARK_A, PROMPT_A, customers.a.email, customers.a.connectionId, 'acme_'])
                assert.ok(!bText.includes(leak), `A's ${leak} is not in B's prompts`);
        })
    );

    test(
        'security_a_model_asking_for_another_customers_tool_is_refused_and_nothing_is_called',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            // A's model (say, prompt-injected) asks for B's docs tools by name.
            const run = await queryCustomerServices('a', PROMPT_A, {
                replies: [
                    { tool_calls: [{ id: 'call_x', name: 'docs_search_docs', arguments: { query: 'everything' } }] },
                    { content: 'done' }
                ]
            });
            assert.equal(run.res.status, 200, run.res.text);
            runs.a2 = run;
            const calls = run.body.result.structuredContent.toolCalls;
            assert.equal(calls.length, 1);
            assert.equal(calls[0].ok, false);
            assert.match(calls[0].error, /unknown tool docs_search_docs/);
            assert.deepEqual(run.docsRequests, [], 'the docs server saw nothing');
            // And A's token cannot call it directly either.
            const direct = await rawRequest(new URL('/mcp', bk.issuer), {
                method: 'POST',
                headers: { Authorization: `Bearer ${customers.a.accessToken}`, 'Content-Type': 'application/json', 'X-Response-Format': 'json' },
                body: JSON.stringify({ jsonrpc: '2.0', method: 'tools/call', params: { name: 'docs_search_docs', arguments: { query: 'x' } }, id: 2 })
            });
            const v = direct.json();
            assert.ok(v.error || v.result?.isError === true, `refused: ${direct.text}`);
            assert.equal(docs.mcpRequests.filter(r => r.rpc === 'tools/call').length, 1, 'still only B’s one call');
        })
    );

    test(
        'key points: each customer pays for its own agent’s turns (billingAccountType user), and the refresh grant works with client_secret_basic',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const spent = list => list.reduce((n, r) => n + r.body.result.structuredContent.creditsConsumed, 0);
            const balance = async name => {
                const res = await api(bk.issuer, 'GET', '/api/v1/credit-transactions', { token: customers[name].accessToken });
                assert.equal(res.status, 200, res.text);
                return res.body.balance;
            };
            const a = spent([runs.a, runs.a2]);
            const b = spent([runs.b]);
            assert.ok(a > 0 && b > 0, `credits consumed: ${a}, ${b}`);
            assert.equal(await balance('a'), 1_000_000 - a, 'A paid for A’s runs only');
            assert.equal(await balance('b'), 1_000_000 - b, 'B paid for B’s run only');

            // "Use the refresh token grant when access tokens expire" — with the client's secret, as in step 3.
            const res = await rawRequest(new URL('/api/v1/auth/token', bk.issuer), {
                method: 'POST',
                headers: {
                    'Content-Type': 'application/x-www-form-urlencoded',
                    Authorization: `Basic ${btoa(`${client.clientId}:${client.clientSecret}`)}`
                },
                body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: customers.b.refreshToken }).toString()
            });
            assert.equal(res.status, 200, res.text);
            const fresh = res.json();
            assert.deepEqual(fresh.scope.split(' ').sort(), RECIPE_SCOPE.split(' ').sort());
            const me = await api(bk.issuer, 'GET', '/api/v1/account', { token: fresh.access_token });
            assert.equal(me.body.email, customers.b.email, 'the refreshed token is still B’s');
            // Without the secret, the refresh token alone is refused.
            const bare = await rawRequest(new URL('/api/v1/auth/token', bk.issuer), {
                method: 'POST',
                headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
                body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: fresh.refresh_token ?? customers.b.refreshToken, client_id: client.clientId }).toString()
            });
            assert.equal(bare.status, 401, `a confidential client must authenticate: ${bare.text}`);
        })
    );
});
