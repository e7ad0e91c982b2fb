// End-to-end: the official MCP TypeScript SDK, as a real client, against the
// real Bridgekeeper binary. The SDK does discovery (RFC 9728 + RFC 8414),
// dynamic client registration (RFC 7591), PKCE and the token/refresh grants
// itself; this test only plays the person at the browser (sign-up, login and
// consent pages over HTTP with a cookie jar) and checks what comes back.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

import { startServer } from './lib/server.mjs';
import { Browser, extractForm, pathAndQuery } from './lib/browser.mjs';
import { TestOAuthProvider } from './lib/provider.mjs';

const SCOPE = 'universal-mcp-read-write';
// A loopback redirect URI (RFC 8252 §7.3). Nothing listens there: the test
// reads the code from the Location header of the consent page's 303.
const REDIRECT_URL = 'http://127.0.0.1:53682/callback';
const TEST_TIMEOUT_MS = 60_000;

const rand = () => randomBytes(6).toString('hex');

/**
 * Wraps `fetch` so each test can see the HTTP exchanges the SDK made
 * (method, URL, status, WWW-Authenticate, and form bodies of token requests).
 */
function recordingFetch(log) {
    return async (url, init = {}) => {
        const response = await fetch(url, init);
        let form;
        if (typeof init.body === 'string' || init.body instanceof URLSearchParams) {
            const text = String(init.body);
            if (!text.startsWith('{') && !text.startsWith('[')) form = Object.fromEntries(new URLSearchParams(text));
        }
        log.push({
            method: (init.method ?? 'GET').toUpperCase(),
            url: String(url),
            status: response.status,
            wwwAuthenticate: response.headers.get('www-authenticate') ?? undefined,
            form
        });
        return response;
    };
}

function describeLog(log) {
    return log.map(e => `${e.method} ${e.url} -> ${e.status}${e.form?.grant_type ? ` (grant_type=${e.form.grant_type})` : ''}`).join('\n');
}

function sortedEntries(searchParams) {
    return [...searchParams].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Creates an account through the sign-up page. */
async function signUp(issuer, email, password) {
    const browser = new Browser(issuer);
    const page = await browser.get('/signup');
    assert.equal(page.status, 200, `GET /signup: ${page.text}`);
    assert.ok(browser.jar.get('bk_session'), 'GET /signup sets the bk_session cookie');
    const form = extractForm(page.text, '/signup');
    assert.equal(form.method, 'post');
    assert.ok(form.hidden.get('csrf_token'), 'sign-up form carries a csrf_token');
    assert.ok(form.hidden.has('next'), 'sign-up form carries next');
    assert.ok(form.inputs.has('email') && form.inputs.has('password'), 'sign-up form has email and password fields');

    const res = await browser.post('/signup', {
        csrf_token: form.hidden.get('csrf_token'),
        next: form.hidden.get('next'),
        email,
        password
    });
    assert.equal(res.status, 303, `POST /signup should redirect (303); got ${res.status}: ${res.text}`);
}

/**
 * Plays the user agent from the authorization URL the SDK built to the 303
 * back to the client's redirect URI: authorize → login → authorize → consent.
 * Returns the callback URL (with code/error, state and iss).
 */
async function authorizeInBrowser(browser, authorizationUrl, { issuer, email, password, decision }) {
    // 1. The authorization endpoint, signed out: off to the login page.
    const first = await browser.get(authorizationUrl);
    assert.equal(first.status, 303, `GET authorize (signed out) should be a 303 to /login; got ${first.status}: ${first.text}`);
    const toLogin = new URL(first.location);
    assert.equal(toLogin.origin + toLogin.pathname, `${issuer}/login`, 'signed-out authorize goes to /login');
    const next = toLogin.searchParams.get('next');
    assert.equal(next, pathAndQuery(authorizationUrl), 'login next= is the path and query of the authorize request');

    // 2. The login page.
    const loginPage = await browser.get(first.location);
    assert.equal(loginPage.status, 200, `GET /login: ${loginPage.text}`);
    let form = extractForm(loginPage.text, '/login');
    assert.equal(form.method, 'post');
    assert.equal(form.hidden.get('next'), next, 'login form carries next unchanged');
    assert.ok(form.hidden.get('csrf_token'), 'login form carries a csrf_token');
    assert.ok(form.inputs.has('email') && form.inputs.has('password'), 'login form has email and password fields');

    // 2a. A wrong password is refused on the page itself.
    const wrong = await browser.post('/login', {
        csrf_token: form.hidden.get('csrf_token'),
        next: form.hidden.get('next'),
        email,
        password: `${password}-wrong`
    });
    assert.ok(wrong.status === 200 || wrong.status === 401, `wrong password: expected 200/401, got ${wrong.status}`);
    assert.match(wrong.text, /Invalid email or password/, 'wrong password shows the generic error');
    // The re-rendered page carries a form to try again.
    form = extractForm(wrong.text, '/login');

    // 2b. The right password.
    const sessionBefore = browser.jar.get('bk_session');
    const loggedIn = await browser.post('/login', {
        csrf_token: form.hidden.get('csrf_token'),
        next: form.hidden.get('next'),
        email,
        password
    });
    assert.equal(loggedIn.status, 303, `POST /login should be a 303; got ${loggedIn.status}: ${loggedIn.text}`);
    assert.equal(loggedIn.location, new URL(next, issuer).href, 'login redirects to next');
    assert.ok(browser.jar.get('bk_session'), 'login sets bk_session');
    assert.notEqual(browser.jar.get('bk_session'), sessionBefore, 'login issues a new session cookie');

    // 3. Authorize again, signed in: off to the consent page with the same parameters.
    const second = await browser.get(loggedIn.location);
    assert.equal(second.status, 303, `GET authorize (signed in) should be a 303 to /consent; got ${second.status}: ${second.text}`);
    const toConsent = new URL(second.location);
    assert.equal(toConsent.origin + toConsent.pathname, `${issuer}/consent`, 'signed-in authorize without consent goes to /consent');
    assert.deepEqual(
        sortedEntries(toConsent.searchParams),
        sortedEntries(authorizationUrl.searchParams),
        '/consent gets the same authorization parameters'
    );

    // 4. The consent page.
    const consentPage = await browser.get(second.location);
    assert.equal(consentPage.status, 200, `GET /consent: ${consentPage.text}`);
    const consent = extractForm(consentPage.text, '/consent');
    assert.equal(consent.method, 'post');
    assert.ok(consent.hidden.get('csrf_token'), 'consent form carries a csrf_token');
    for (const [name, value] of authorizationUrl.searchParams) {
        assert.equal(consent.hidden.get(name), value, `consent form carries authorization parameter ${name}`);
    }
    const decisions = consent.buttons.filter(b => b.name === 'decision').map(b => b.value);
    assert.deepEqual([...decisions].sort(), ['approve', 'deny'], 'consent form has approve and deny buttons');

    // 5. The decision: a 303 back to the client.
    const fields = new Map(consent.hidden);
    fields.set('decision', decision);
    const decided = await browser.post('/consent', fields);
    assert.equal(decided.status, 303, `POST /consent should be a 303; got ${decided.status}: ${decided.text}`);
    const callback = new URL(decided.location);
    assert.equal(callback.origin + callback.pathname, REDIRECT_URL, 'consent redirects to the registered redirect URI');
    return callback;
}

describe('Bridgekeeper with the official MCP TypeScript SDK', () => {
    let server;
    const email = `e2e-${rand()}@example.com`;
    const password = `pw-${rand()}-correct horse`;

    before(async () => {
        server = await startServer();
        await signUp(server.issuer, email, password);
    });

    after(async () => {
        await server?.stop();
    });

    /** Runs a test body; on failure, appends the server's recent log lines. */
    const withServerLog = fn => async t => {
        try {
            await fn(t);
        } catch (err) {
            if (server) err.message += `\n--- server log (tail) ---\n${server.logTail()}`;
            throw err;
        }
    };

    test(
        'SDK OAuth flow: discovery, DCR, PKCE login + consent, tools, refresh rotation',
        { timeout: TEST_TIMEOUT_MS },
        withServerLog(async t => {
            const { issuer } = server;
            const mcpUrl = new URL('/mcp', issuer);
            const log = [];
            const sdkFetch = recordingFetch(log);
            const browser = new Browser(issuer);

            let callback;
            const provider = new TestOAuthProvider({
                redirectUrl: REDIRECT_URL,
                scope: SCOPE,
                onRedirect: async url => {
                    callback = await authorizeInBrowser(browser, url, { issuer, email, password, decision: 'approve' });
                }
            });

            // First connect: 401 → discovery → DCR → redirectToAuthorization → UnauthorizedError.
            const transport1 = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider, fetch: sdkFetch });
            const client1 = new Client({ name: 'bridgekeeper-e2e', version: '0.0.0' });
            await assert.rejects(client1.connect(transport1), UnauthorizedError, 'first connect needs authorization');

            const first = log[0];
            assert.equal(first.method, 'POST');
            assert.equal(first.url, mcpUrl.href);
            assert.equal(first.status, 401, 'unauthenticated MCP request is refused');
            const expectedPrm = `${issuer}/.well-known/oauth-protected-resource/mcp`;
            assert.match(first.wwwAuthenticate ?? '', /^Bearer\s/i, 'WWW-Authenticate is a Bearer challenge');
            assert.ok(
                (first.wwwAuthenticate ?? '').includes(`resource_metadata="${expectedPrm}"`),
                `WWW-Authenticate names the protected-resource metadata: ${first.wwwAuthenticate}`
            );
            const hit = (method, url) => log.some(e => e.method === method && e.url === url && e.status >= 200 && e.status < 300);
            assert.ok(hit('GET', expectedPrm), `SDK fetched the protected-resource metadata:\n${describeLog(log)}`);
            assert.ok(
                hit('GET', `${issuer}/.well-known/oauth-authorization-server`),
                `SDK fetched the authorization-server metadata:\n${describeLog(log)}`
            );
            assert.ok(hit('POST', `${issuer}/api/v1/auth/register`), `SDK registered via DCR:\n${describeLog(log)}`);

            const clientInfo = provider.clientInformation();
            assert.ok(clientInfo?.client_id, 'DCR returned a client_id');
            assert.equal(clientInfo.token_endpoint_auth_method, 'none', 'public client registered with auth method none');
            assert.equal(clientInfo.client_secret, undefined, 'a public client gets no client_secret');
            assert.deepEqual(clientInfo.redirect_uris, [REDIRECT_URL]);

            // The authorization request the SDK built.
            assert.equal(provider.authorizationUrls.length, 1, 'one authorization redirect');
            const authUrl = provider.authorizationUrls[0];
            assert.equal(authUrl.origin + authUrl.pathname, `${issuer}/api/v1/auth/authorize`);
            assert.equal(authUrl.searchParams.get('response_type'), 'code');
            assert.equal(authUrl.searchParams.get('client_id'), clientInfo.client_id);
            assert.equal(authUrl.searchParams.get('code_challenge_method'), 'S256');
            assert.ok(authUrl.searchParams.get('code_challenge'));
            assert.equal(authUrl.searchParams.get('redirect_uri'), REDIRECT_URL);
            assert.equal(authUrl.searchParams.get('resource'), mcpUrl.href);
            assert.ok((authUrl.searchParams.get('scope') ?? '').split(' ').includes(SCOPE), `scope requested: ${authUrl.searchParams.get('scope')}`);

            // The redirect back to the client (RFC 9207 iss included).
            assert.ok(callback, 'the browser reached the redirect URI');
            assert.equal(callback.searchParams.get('error'), null, `no error in callback: ${callback}`);
            const code = callback.searchParams.get('code');
            assert.ok(code, `callback carries a code: ${callback}`);
            assert.equal(callback.searchParams.get('state'), provider.states.at(-1), 'callback carries the state unchanged');
            assert.equal(callback.searchParams.get('iss'), issuer, 'callback iss equals the issuer');

            // Code exchange by the SDK (authorization_code grant with the PKCE verifier).
            await transport1.finishAuth(code);
            const tokens1 = provider.tokens();
            assert.ok(tokens1?.access_token, 'access token issued');
            assert.ok(tokens1.refresh_token, 'refresh token issued');
            assert.equal(tokens1.token_type.toLowerCase(), 'bearer');
            t.diagnostic(`DCR response fields: ${Object.keys(clientInfo).sort().join(', ')}`);
            t.diagnostic(`token response: ${JSON.stringify({ ...tokens1, access_token: '…', refresh_token: '…' })}`);
            const codeGrant = log.find(e => e.url === `${issuer}/api/v1/auth/token` && e.form?.grant_type === 'authorization_code');
            assert.ok(codeGrant, `SDK used the authorization_code grant:\n${describeLog(log)}`);
            assert.equal(codeGrant.status, 200);
            assert.ok(codeGrant.form.code_verifier, 'the code exchange carried the PKCE verifier');

            // Second connect, now with a token.
            const transport2 = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider, fetch: sdkFetch });
            const client = new Client({ name: 'bridgekeeper-e2e', version: '0.0.0' });
            const connectMark = log.length;
            await client.connect(transport2);
            try {
                const connectLog = log.slice(connectMark);
                assert.deepEqual(
                    connectLog.filter(e => e.method === 'POST' && e.url === mcpUrl.href).map(e => e.status),
                    [200, 202],
                    `initialize → 200, notifications/initialized → 202:\n${describeLog(connectLog)}`
                );
                // The SDK's fire-and-forget GET for an SSE stream must get a 405 (no SSE here).
                const sse = await fetch(mcpUrl, {
                    headers: { Accept: 'text/event-stream', Authorization: `Bearer ${provider.tokens().access_token}` }
                });
                await sse.body?.cancel();
                assert.equal(sse.status, 405, 'GET /mcp is 405');
                const { tools } = await client.listTools();
                assert.ok(
                    tools.some(t => t.name === 'whoami'),
                    `tools/list includes whoami: ${tools.map(t => t.name).join(', ')}`
                );

                const whoami = async () => {
                    const result = await client.callTool({ name: 'whoami', arguments: {} });
                    assert.notEqual(result.isError, true, `whoami failed: ${JSON.stringify(result)}`);
                    const text = result.content?.find(c => c.type === 'text')?.text;
                    assert.ok(text, `whoami returns text content: ${JSON.stringify(result)}`);
                    const info = JSON.parse(text);
                    assert.ok(info.account_id, 'whoami names the account');
                    assert.equal(info.email, email, 'whoami email is the signed-in account');
                    assert.equal(info.client_id, clientInfo.client_id, 'whoami client_id is the DCR client');
                    assert.ok(Array.isArray(info.scopes) && info.scopes.includes(SCOPE), `whoami scopes: ${JSON.stringify(info.scopes)}`);
                    if (result.structuredContent) {
                        for (const key of ['account_id', 'email', 'client_id', 'scopes']) {
                            assert.deepEqual(result.structuredContent[key], info[key], `structuredContent.${key} matches the text`);
                        }
                    }
                    return info;
                };
                const who1 = await whoami();
                t.diagnostic(`whoami: ${JSON.stringify(who1)}`);

                // Refresh: spoil the access token; the SDK must get a 401, use the
                // refresh token, and retry — without a new authorization.
                const redirectsBefore = provider.authorizationUrls.length;
                const garbage = `garbage-${rand()}`;
                provider.corruptAccessToken(garbage);
                const logMark = log.length;
                const who2 = await whoami();
                assert.equal(who2.account_id, who1.account_id, 'same account after refresh');

                const sinceMark = log.slice(logMark);
                assert.equal(sinceMark[0]?.status, 401, `the garbage token was refused:\n${describeLog(sinceMark)}`);
                const refreshGrant = sinceMark.find(e => e.url === `${issuer}/api/v1/auth/token` && e.form?.grant_type === 'refresh_token');
                assert.ok(refreshGrant, `SDK used the refresh_token grant:\n${describeLog(sinceMark)}`);
                assert.equal(refreshGrant.status, 200, 'refresh succeeded');
                assert.equal(refreshGrant.form.refresh_token, tokens1.refresh_token);
                assert.equal(provider.authorizationUrls.length, redirectsBefore, 'no new authorization was needed');

                const tokens2 = provider.tokens();
                assert.ok(tokens2.access_token && tokens2.access_token !== garbage, 'a new access token was saved');
                assert.notEqual(tokens2.access_token, tokens1.access_token, 'the access token changed');
                assert.ok(tokens2.refresh_token, 'a refresh token was saved');
                assert.notEqual(tokens2.refresh_token, tokens1.refresh_token, 'the refresh token rotated');

                // The rotated-out refresh token is refused.
                const reuse = await fetch(`${issuer}/api/v1/auth/token`, {
                    method: 'POST',
                    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
                    body: new URLSearchParams({
                        grant_type: 'refresh_token',
                        refresh_token: tokens1.refresh_token,
                        client_id: clientInfo.client_id,
                        resource: mcpUrl.href
                    })
                });
                const reuseBody = await reuse.text();
                assert.equal(reuse.status, 400, `old refresh token refused with 400: ${reuseBody}`);
                assert.equal(JSON.parse(reuseBody).error, 'invalid_grant', `old refresh token: ${reuseBody}`);

                // The authorization code is single-use. (Done last: a replay may
                // revoke everything issued from the code, RFC 6749 §4.1.2.)
                const replay = await fetch(`${issuer}/api/v1/auth/token`, {
                    method: 'POST',
                    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
                    body: new URLSearchParams({
                        grant_type: 'authorization_code',
                        code,
                        code_verifier: codeGrant.form.code_verifier,
                        redirect_uri: REDIRECT_URL,
                        client_id: clientInfo.client_id,
                        resource: mcpUrl.href
                    })
                });
                assert.equal(replay.status, 400, 'a replayed authorization code is refused');
                assert.equal((await replay.json()).error, 'invalid_grant');

                t.diagnostic('HTTP exchanges made by the SDK:');
                for (const line of describeLog(log).split('\n')) t.diagnostic(`  ${line}`);
            } finally {
                await client.close();
            }
        })
    );

    test(
        'consent denial redirects with error=access_denied, state and iss',
        { timeout: TEST_TIMEOUT_MS },
        withServerLog(async () => {
            const { issuer } = server;
            const mcpUrl = new URL('/mcp', issuer);
            const browser = new Browser(issuer);
            let callback;
            const provider = new TestOAuthProvider({
                redirectUrl: REDIRECT_URL,
                scope: SCOPE,
                onRedirect: async url => {
                    callback = await authorizeInBrowser(browser, url, { issuer, email, password, decision: 'deny' });
                }
            });
            const transport = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider });
            const client = new Client({ name: 'bridgekeeper-e2e', version: '0.0.0' });
            await assert.rejects(client.connect(transport), UnauthorizedError);

            assert.ok(callback, 'the browser reached the redirect URI');
            assert.equal(callback.searchParams.get('error'), 'access_denied', `callback: ${callback}`);
            assert.equal(callback.searchParams.get('code'), null, 'no code on denial');
            assert.equal(callback.searchParams.get('state'), provider.states.at(-1), 'state returned on denial');
            assert.equal(callback.searchParams.get('iss'), issuer, 'iss returned on denial');
            assert.equal(provider.tokens(), undefined, 'no tokens after denial');
        })
    );
});
