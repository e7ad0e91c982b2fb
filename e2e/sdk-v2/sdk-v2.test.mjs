// End-to-end: the official MCP TypeScript SDK v2 client (@modelcontextprotocol/client)
// against the real Bridgekeeper binary, under protocol revision 2026-07-28
// (stateless: no initialize, no session, `_meta` on every request, server/discover).
// The SDK identifies itself with a Client ID Metadata Document (its client_id is
// an HTTPS URL serving its metadata) instead of dynamic registration, and runs
// discovery, PKCE and the token exchange itself; this test plays the person at
// the sign-up, login and consent pages and checks what comes back.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';

import { Client, MissingRequiredClientCapabilityError, StreamableHTTPClientTransport, UnauthorizedError } from '@modelcontextprotocol/client';

import { startServer } from '../ts/lib/server.mjs';
import { Browser, extractForm } from '../ts/lib/browser.mjs';
import { TestOAuthProvider } from '../ts/lib/provider.mjs';
import { startDocumentServer } from './lib/cimd.mjs';

const V = '2026-07-28';
const SCOPE = 'universal-mcp-read-write';
const CLIENT_NAME = 'Bridgekeeper e2e (MCP TypeScript SDK v2)';
const SUBSCRIPTION_ID = 'io.modelcontextprotocol/subscriptionId';
const TEST_TIMEOUT_MS = 60_000;
const rand = () => randomBytes(6).toString('hex');

/** TestOAuthProvider plus a Client ID Metadata Document URL (the SDK's `clientMetadataUrl`). */
class DocumentClientProvider extends TestOAuthProvider {
    constructor({ clientMetadataUrl, ...rest }) {
        super(rest);
        this.clientMetadataUrl = clientMetadataUrl;
    }
}

/**
 * A `fetch` for the SDK that records each exchange: method, URL, status, the
 * request headers that matter here, the response's Mcp-Session-Id, the JSON-RPC
 * method of a JSON body, and the body of JSON responses (SSE streams are left
 * unread: subscriptions/listen stays open).
 */
function recordingFetch(log) {
    return async (url, init = {}) => {
        const headers = new Headers(init.headers);
        let rpc;
        let form;
        if (typeof init.body === 'string' || init.body instanceof URLSearchParams) {
            const text = String(init.body);
            if (text.startsWith('{') || text.startsWith('[')) {
                try {
                    rpc = JSON.parse(text);
                } catch {}
            } else {
                form = Object.fromEntries(new URLSearchParams(text));
            }
        }
        const response = await fetch(url, init);
        const entry = {
            method: (init.method ?? 'GET').toUpperCase(),
            url: String(url),
            status: response.status,
            protocolVersion: headers.get('mcp-protocol-version') ?? undefined,
            mcpMethod: headers.get('mcp-method') ?? undefined,
            mcpName: headers.get('mcp-name') ?? undefined,
            sessionIdSent: headers.get('mcp-session-id') ?? undefined,
            sessionIdReceived: response.headers.get('mcp-session-id') ?? undefined,
            contentType: response.headers.get('content-type') ?? undefined,
            wwwAuthenticate: response.headers.get('www-authenticate') ?? undefined,
            rpc,
            form
        };
        log.push(entry);
        if ((entry.contentType ?? '').startsWith('application/json')) {
            entry.body = await response
                .clone()
                .json()
                .catch(() => undefined);
        } else if ((entry.contentType ?? '').startsWith('text/event-stream') && rpc?.method !== 'subscriptions/listen') {
            // Read a copy of the stream as the SDK reads the original; `settled` awaits it.
            entry.settled = response
                .clone()
                .text()
                .then(text => {
                    entry.messages = text
                        .split('\n')
                        .filter(l => l.startsWith('data:'))
                        .map(l => JSON.parse(l.slice(5)));
                    entry.body = entry.messages.at(-1);
                })
                .catch(() => undefined);
        }
        return response;
    };
}

/** The recorded exchanges, once the copies of their SSE bodies are read. */
async function settled(entries) {
    await Promise.all(entries.map(e => e.settled));
    return entries;
}

function describeLog(log) {
    return log
        .map(e => `${e.method} ${e.url} [${e.mcpMethod ?? e.rpc?.method ?? e.form?.grant_type ?? ''}] -> ${e.status} ${e.contentType ?? ''}`)
        .join('\n');
}

/**
 * Plays the person from the authorization URL the SDK built to the 303 back to
 * the client: authorize (signed out) → login page → "create an account" →
 * sign-up → login → authorize → consent (checked: the document's host is
 * shown) → approve. Returns the callback URL and the consent page's HTML.
 */
async function signUpAndConsent(browser, authorizationUrl, { issuer, email, password, redirectUrl }) {
    const first = await browser.get(authorizationUrl);
    assert.equal(first.status, 303, `GET authorize (signed out): ${first.status} ${first.text}`);
    const toLogin = new URL(first.location);
    assert.equal(toLogin.origin + toLogin.pathname, `${issuer}/login`, 'signed out: off to /login');
    const next = toLogin.searchParams.get('next');

    // No account yet: the sign-up page, keeping `next`.
    const signupPage = await browser.get(`/signup?${new URLSearchParams({ next })}`);
    assert.equal(signupPage.status, 200, `GET /signup: ${signupPage.text}`);
    const signupForm = extractForm(signupPage.text, '/signup');
    assert.equal(signupForm.hidden.get('next'), next, 'sign-up form carries next');
    const signedUp = await browser.post('/signup', {
        csrf_token: signupForm.hidden.get('csrf_token'),
        next: signupForm.hidden.get('next'),
        email,
        password
    });
    assert.equal(signedUp.status, 303, `POST /signup: ${signedUp.status} ${signedUp.text}`);

    // Wherever sign-up leads (the login page), sign in.
    let page = await browser.get(signedUp.location);
    if (page.status === 200) {
        const loginForm = extractForm(page.text, '/login');
        page = await browser.post('/login', {
            csrf_token: loginForm.hidden.get('csrf_token'),
            next: loginForm.hidden.get('next') ?? next,
            email,
            password
        });
        assert.equal(page.status, 303, `POST /login: ${page.status} ${page.text}`);
        page = await browser.get(page.location);
    }
    // Signed in, authorize sends the person to the consent page.
    assert.equal(page.status, 303, `authorize (signed in): ${page.status} ${page.text}`);
    const toConsent = new URL(page.location);
    assert.equal(toConsent.origin + toConsent.pathname, `${issuer}/consent`, 'signed in: off to /consent');
    const consentPage = await browser.get(page.location);
    assert.equal(consentPage.status, 200, `GET /consent: ${consentPage.text}`);
    const consent = extractForm(consentPage.text, '/consent');
    const fields = new Map(consent.hidden);
    fields.set('decision', 'approve');
    const decided = await browser.post('/consent', fields);
    assert.equal(decided.status, 303, `POST /consent: ${decided.status} ${decided.text}`);
    const callback = new URL(decided.location);
    assert.equal(callback.origin + callback.pathname, redirectUrl, 'consent redirects to the document redirect URI');
    return { callback, consentHtml: consentPage.text };
}

describe('Bridgekeeper with the MCP TypeScript SDK v2 client (2026-07-28, CIMD)', () => {
    let server;
    let docs;
    const email = `e2e-v2-${rand()}@example.com`;
    const password = `pw-${rand()}-correct horse`;
    /** Every HTTP exchange any SDK client made, in order. */
    const log = [];
    const sdkFetch = recordingFetch(log);
    let provider;
    /** Connected clients, closed at the end. */
    const clients = [];
    let toolNames;

    before(async () => {
        docs = await startDocumentServer({ clientName: CLIENT_NAME });
        // ../ts/lib/server.mjs passes the environment on to the binary.
        const env = {
            BRIDGEKEEPER_CLIENT_METADATA_DOCUMENTS__ENABLED: 'true',
            BRIDGEKEEPER_CLIENT_METADATA_DOCUMENTS__ALLOW_PRIVATE_ADDRESSES: 'true',
            BRIDGEKEEPER_CLIENT_METADATA_DOCUMENTS__EXTRA_CA_FILE: docs.caFile
        };
        const saved = Object.fromEntries(Object.keys(env).map(k => [k, process.env[k]]));
        Object.assign(process.env, env);
        try {
            server = await startServer();
        } finally {
            for (const [k, v] of Object.entries(saved)) {
                if (v === undefined) delete process.env[k];
                else process.env[k] = v;
            }
        }
    });

    after(async () => {
        for (const c of clients) await c.close().catch(() => {});
        await server?.stop();
        await docs?.stop();
    });

    const withServerLog = fn => async t => {
        try {
            await fn(t);
        } catch (err) {
            if (server) err.message += `\n--- SDK exchanges ---\n${describeLog(log)}\n--- server log (tail) ---\n${server.logTail()}`;
            throw err;
        }
    };

    const mcpUrl = () => new URL('/mcp', server.issuer);

    /**
     * The exchanges with /mcp in `entries`, after checking them: no Mcp-Session-Id
     * either way, and every JSON-RPC request (a message with an id) POSTed with
     * `MCP-Protocol-Version: 2026-07-28` and `Mcp-Method` equal to its method.
     * Notifications are checked for the version header only: the SDK sends no
     * Mcp-Method on them (2.4.0 derives it for requests only).
     */
    function assertStateless(entries) {
        const mcp = entries.filter(e => e.url === mcpUrl().href);
        for (const e of mcp) {
            const what = `${e.method} ${e.rpc?.method ?? ''} -> ${e.status}`;
            assert.equal(e.sessionIdSent, undefined, `no Mcp-Session-Id sent: ${what}`);
            assert.equal(e.sessionIdReceived, undefined, `no Mcp-Session-Id received: ${what}`);
            assert.equal(e.method, 'POST', `only POSTs to /mcp under 2026-07-28 (no GET stream, no DELETE): ${what}`);
            assert.ok(e.rpc?.method, `a JSON-RPC request or notification: ${what}`);
            assert.notEqual(e.rpc.method, 'initialize', 'no initialize under 2026-07-28');
            assert.equal(e.protocolVersion, V, `MCP-Protocol-Version on ${what}`);
            if (e.rpc.id !== undefined) assert.equal(e.mcpMethod, e.rpc.method, `Mcp-Method on ${what}`);
        }
        return mcp;
    }

    /** A client pinned to 2026-07-28 over Streamable HTTP, with the shared provider and recording fetch. */
    async function connect({ capabilities, elicit, options } = {}) {
        const client = new Client(
            { name: 'bridgekeeper-e2e-v2', version: '0.0.0' },
            { versionNegotiation: { mode: { pin: V } }, ...(capabilities ? { capabilities } : {}), ...options }
        );
        if (elicit) client.setRequestHandler('elicitation/create', elicit);
        const transport = new StreamableHTTPClientTransport(mcpUrl(), { authProvider: provider, fetch: sdkFetch });
        await client.connect(transport);
        clients.push(client);
        return client;
    }

    async function whoami(client) {
        const result = await client.callTool({ name: 'whoami', arguments: {} });
        assert.notEqual(result.isError, true, `whoami failed: ${JSON.stringify(result)}`);
        assert.ok(result.structuredContent, `whoami has structuredContent: ${JSON.stringify(result)}`);
        return result.structuredContent;
    }

    /** Whether the binary offers a tool (from the first tools/list); gates the later parts. */
    async function serverHas(name) {
        if (!toolNames) {
            const client = await connect();
            toolNames = (await client.listTools()).tools.map(t => t.name);
        }
        return toolNames.includes(name);
    }

    test(
        'OAuth from a bare /mcp URL: 401 → resource + AS metadata, CIMD client id (no DCR), PKCE S256, sign-up + consent, token',
        { timeout: TEST_TIMEOUT_MS },
        withServerLog(async () => {
            const { issuer } = server;
            const browser = new Browser(issuer);
            let outcome;
            provider = new DocumentClientProvider({
                clientMetadataUrl: docs.clientId,
                redirectUrl: docs.redirectUrl,
                scope: SCOPE,
                onRedirect: async url => {
                    outcome = await signUpAndConsent(browser, url, { issuer, email, password, redirectUrl: docs.redirectUrl });
                }
            });

            const client1 = new Client({ name: 'bridgekeeper-e2e-v2', version: '0.0.0' }, { versionNegotiation: { mode: { pin: V } } });
            const transport1 = new StreamableHTTPClientTransport(mcpUrl(), { authProvider: provider, fetch: sdkFetch });
            await assert.rejects(client1.connect(transport1), UnauthorizedError, 'the first connect needs authorization');

            // The probe (server/discover) is refused with a Bearer challenge naming the resource metadata.
            const first = log[0];
            assert.equal(first.method, 'POST');
            assert.equal(first.url, mcpUrl().href);
            assert.equal(first.mcpMethod, 'server/discover', 'the pinned client probes with server/discover');
            assert.equal(first.status, 401);
            const prm = `${issuer}/.well-known/oauth-protected-resource/mcp`;
            assert.ok((first.wwwAuthenticate ?? '').includes(`resource_metadata="${prm}"`), `challenge: ${first.wwwAuthenticate}`);
            const hit = (method, url) => log.find(e => e.method === method && e.url === url && e.status === 200);
            assert.ok(hit('GET', prm), 'the SDK fetched the protected-resource metadata');
            const asMeta = hit('GET', `${issuer}/.well-known/oauth-authorization-server`);
            assert.ok(asMeta, 'the SDK fetched the authorization-server metadata');
            assert.equal(asMeta.body?.client_id_metadata_document_supported, true, 'the server advertises CIMD');

            // Client identification by the metadata document: no dynamic registration at all.
            assert.ok(!log.some(e => e.url.startsWith(`${issuer}/api/v1/auth/register`)), 'no DCR request was made');
            assert.equal(provider.clientInformation()?.client_id, docs.clientId, 'the SDK took the document URL as its client_id');
            assert.equal(provider.authorizationUrls.length, 1, 'one authorization redirect');
            const authUrl = provider.authorizationUrls[0];
            assert.equal(authUrl.origin + authUrl.pathname, `${issuer}/api/v1/auth/authorize`);
            assert.equal(authUrl.searchParams.get('client_id'), docs.clientId, 'authorize got the document URL as client_id');
            assert.equal(authUrl.searchParams.get('redirect_uri'), docs.redirectUrl);
            assert.equal(authUrl.searchParams.get('response_type'), 'code');
            assert.equal(authUrl.searchParams.get('code_challenge_method'), 'S256');
            assert.match(authUrl.searchParams.get('code_challenge') ?? '', /^[A-Za-z0-9_-]{43}$/, 'an S256 challenge');
            assert.equal(authUrl.searchParams.get('resource'), mcpUrl().href);
            assert.ok(docs.fetches.some(f => f.path === '/client.json'), 'the server fetched the metadata document');

            // The consent page names the application and the host that published its document.
            assert.ok(outcome, 'the person reached the consent page and approved');
            assert.ok(outcome.consentHtml.includes(CLIENT_NAME), 'consent shows the document client_name');
            assert.ok(
                outcome.consentHtml.includes(`described by a document published at <strong>${docs.host}</strong>`),
                'consent shows the document host'
            );
            const { callback } = outcome;
            assert.equal(callback.searchParams.get('error'), null, `callback: ${callback}`);
            assert.ok(callback.searchParams.get('code'), 'callback carries a code');
            assert.equal(callback.searchParams.get('state'), provider.states.at(-1), 'state comes back unchanged');
            assert.equal(callback.searchParams.get('iss'), issuer, 'RFC 9207 iss');

            // The SDK exchanges the code (PKCE verifier, public client: client_id only).
            await transport1.finishAuth(callback.searchParams);
            const tokens = provider.tokens();
            assert.ok(tokens?.access_token, 'access token issued');
            assert.ok(tokens.refresh_token, 'refresh token issued');
            const grant = log.find(e => e.url === `${issuer}/api/v1/auth/token` && e.form?.grant_type === 'authorization_code');
            assert.ok(grant, 'the SDK used the authorization_code grant');
            assert.equal(grant.status, 200);
            assert.equal(grant.form.client_id, docs.clientId, 'the token request names the document client');
            assert.ok(grant.form.code_verifier, 'the token request carries the PKCE verifier');
            assert.equal(grant.form.client_secret, undefined);
            await client1.close().catch(() => {});
        })
    );

    test(
        '2026-07-28: server/discover, tools/list, tools/call whoami; stateless (no Mcp-Session-Id), headers on every request',
        { timeout: TEST_TIMEOUT_MS },
        withServerLog(async () => {
            assert.ok(provider?.tokens()?.access_token, 'needs the token from the OAuth test');
            const mark = log.length;
            const client = await connect();
            assert.equal(client.getProtocolEra(), 'modern');
            assert.equal(client.getNegotiatedProtocolVersion(), V);
            const probed = client.getDiscoverResult();
            assert.ok(probed?.supportedVersions?.includes(V), `connect-time discover: ${JSON.stringify(probed)}`);

            const discovered = await client.discover();
            assert.ok(discovered.supportedVersions.includes(V), `server/discover supportedVersions: ${JSON.stringify(discovered.supportedVersions)}`);
            assert.ok(discovered.capabilities?.tools, 'the server offers tools');

            const listed = await client.listTools();
            const names = listed.tools.map(t => t.name);
            assert.ok(names.includes('whoami'), `tools/list includes whoami: ${names.join(', ')}`);
            toolNames ??= names;
            const listExchange = log.slice(mark).find(e => e.mcpMethod === 'tools/list');
            assert.ok(listExchange, 'tools/list went over the wire');
            assert.equal(listExchange.body?.result?.resultType, 'complete', `tools/list resultType: ${JSON.stringify(listExchange.body)}`);

            const who = await whoami(client);
            assert.equal(who.email, email, 'whoami is the signed-up person');
            assert.equal(who.client_id, docs.clientId, 'whoami names the document client');
            assert.ok(who.scopes.includes(SCOPE), `scopes: ${who.scopes}`);
            const [callExchange] = await settled(log.slice(mark).filter(e => e.mcpMethod === 'tools/call'));
            assert.equal(callExchange?.mcpName, 'whoami', 'tools/call carried Mcp-Name');
            assert.equal(callExchange.body?.result?.resultType, 'complete', `tools/call resultType: ${JSON.stringify(callExchange.body)}`);

            const mcp = assertStateless(log);
            assert.ok(mcp.length >= 4, describeLog(mcp));
        })
    );

    test(
        'refresh: a spoiled access token is refreshed by the SDK as the document client (rotation), and the call goes through',
        { timeout: TEST_TIMEOUT_MS },
        withServerLog(async () => {
            const client = await connect();
            const before = provider.tokens();
            const mark = log.length;
            provider.corruptAccessToken(`spoiled-${rand()}`);
            const who = await whoami(client);
            assert.equal(who.email, email);
            const grant = log.slice(mark).find(e => e.form?.grant_type === 'refresh_token');
            assert.ok(grant, `the SDK refreshed:\n${describeLog(log.slice(mark))}`);
            assert.equal(grant.status, 200);
            assert.equal(grant.form.client_id, docs.clientId, 'the refresh names the document client');
            const after = provider.tokens();
            assert.notEqual(after.access_token, before.access_token, 'a new access token');
            assert.ok(after.refresh_token && after.refresh_token !== before.refresh_token, 'the refresh token rotated');
            const retried = log.slice(mark).filter(e => e.mcpMethod === 'tools/call').map(e => e.status);
            assert.deepEqual(retried, [401, 200], 'the call was refused, then retried with the new token');
        })
    );

    /** Runs `fn` only when the binary has the restrict-access tool (a later server feature). */
    const needsRestrictAccess = fn =>
        withServerLog(async t => {
            if (!(await serverHas('restrict-access'))) {
                t.skip('this binary has no restrict-access tool yet');
                return;
            }
            await fn(t);
        });

    const confirmations = [];
    const answer = action => async request => {
        confirmations.push(request.params);
        return action === 'accept' ? { action, content: { confirm: true } } : { action };
    };

    test(
        'restrict-access: input_required → the SDK elicitation handler accepts → the grant narrows',
        { timeout: TEST_TIMEOUT_MS },
        needsRestrictAccess(async () => {
            const client = await connect({ capabilities: { elicitation: { form: {} } }, elicit: answer('accept') });
            const mark = log.length;
            const seen = confirmations.length;
            const result = await client.callTool({ name: 'restrict-access', arguments: { provider: 'github', permission: 'read' } });
            assert.notEqual(result.isError, true, JSON.stringify(result));
            assert.equal(confirmations.length, seen + 1, 'the SDK asked the elicitation handler once');
            const asked = confirmations.at(-1);
            assert.equal(asked.mode ?? 'form', 'form');
            assert.deepEqual(asked.requestedSchema?.required, ['confirm'], JSON.stringify(asked));
            const calls = await settled(log.slice(mark).filter(e => e.mcpMethod === 'tools/call'));
            assert.equal(calls.length, 2, `two rounds:\n${describeLog(log.slice(mark))}`);
            assert.equal(calls[0].body?.result?.resultType, 'input_required', JSON.stringify(calls[0].body));
            const state = calls[0].body.result.requestState;
            assert.ok(state, 'the first round carries requestState');
            assert.equal(calls[1].rpc.params.requestState, state, 'the retry echoes requestState');
            assert.deepEqual(calls[1].rpc.params.inputResponses?.confirm, { action: 'accept', content: { confirm: true } });
            assert.notEqual(calls[1].rpc.id, calls[0].rpc.id, 'the retry is a new request');
            assert.equal(result.structuredContent?.changed, true, JSON.stringify(result));
            assert.equal(result.structuredContent?.provider_permissions?.github, 'read', JSON.stringify(result));
            assert.equal((await whoami(client)).provider_permissions?.github, 'read', 'whoami shows the narrowed grant');
        })
    );

    test(
        'restrict-access: a declined confirmation changes nothing',
        { timeout: TEST_TIMEOUT_MS },
        needsRestrictAccess(async () => {
            const client = await connect({ capabilities: { elicitation: { form: {} } }, elicit: answer('decline') });
            const before = await whoami(client);
            const result = await client.callTool({ name: 'restrict-access', arguments: { provider: 'google', permission: 'disabled' } });
            assert.notEqual(result.isError, true, JSON.stringify(result));
            assert.equal(result.structuredContent?.changed, false, `the result says nothing changed: ${JSON.stringify(result)}`);
            const afterwards = await whoami(client);
            assert.deepEqual(afterwards.provider_permissions, before.provider_permissions, 'the grant is as it was');
            assert.notEqual(afterwards.provider_permissions?.google, 'disabled');
        })
    );

    test(
        'restrict-access: a client without the elicitation capability gets -32021 with requiredCapabilities',
        { timeout: TEST_TIMEOUT_MS },
        needsRestrictAccess(async () => {
            const client = await connect();
            const mark = log.length;
            await assert.rejects(
                client.callTool({ name: 'restrict-access', arguments: { provider: 'google', permission: 'read' } }),
                err => {
                    assert.ok(err instanceof MissingRequiredClientCapabilityError, `a MissingRequiredClientCapabilityError: ${err}`);
                    assert.equal(err.code, -32021, `error: ${err}`);
                    assert.ok(err.data?.requiredCapabilities, `data.requiredCapabilities: ${JSON.stringify(err.data)}`);
                    return true;
                }
            );
            const [call] = await settled(log.slice(mark).filter(e => e.mcpMethod === 'tools/call'));
            assert.equal(call?.status, 400, 'HTTP 400');
            assert.equal(call.body?.error?.code, -32021);
        })
    );

    test(
        'subscriptions/listen: acknowledged, then tools/list_changed after the grant changes (listen() and ClientOptions.listChanged)',
        { timeout: TEST_TIMEOUT_MS },
        needsRestrictAccess(async t => {
            const listener = await connect();
            assert.equal(listener.getDiscoverResult()?.capabilities?.tools?.listChanged, true, 'server/discover advertises tools.listChanged');
            let changed;
            const arrived = new Promise(resolve => (changed = resolve));
            listener.setNotificationHandler('notifications/tools/list_changed', n => changed(n));
            // The SDK's own high-level path: ClientOptions.listChanged opens a listen stream at connect
            // (the server advertises tools.listChanged) and re-fetches tools/list on a change.
            let refreshed;
            const refetched = new Promise((resolve, reject) => (refreshed = (err, tools) => (err ? reject(err) : resolve(tools))));
            const auto = await connect({ options: { listChanged: { tools: { debounceMs: 0, onChanged: (err, tools) => refreshed(err, tools) } } } });
            assert.ok(auto.autoOpenedSubscription, 'listChanged opened a subscription at connect');
            assert.equal(auto.autoOpenedSubscription.honoredFilter.toolsListChanged, true);

            const subscription = await listener.listen({ toolsListChanged: true, promptsListChanged: true }, { timeout: 10_000 });
            try {
                assert.deepEqual(subscription.honoredFilter, { toolsListChanged: true }, 'acknowledged: tools list changes (what this server has)');
                const listen = log.filter(e => e.mcpMethod === 'subscriptions/listen').at(-1);
                assert.ok(listen, 'subscriptions/listen went over the wire');
                assert.equal(listen.status, 200);
                assert.match(listen.contentType ?? '', /^text\/event-stream/);

                const actor = await connect({ capabilities: { elicitation: { form: {} } }, elicit: answer('accept') });
                const t0 = Date.now();
                const result = await actor.callTool({ name: 'restrict-access', arguments: { provider: 'slack', permission: 'disabled' } });
                assert.equal(result.structuredContent?.changed, true, JSON.stringify(result));
                const within = (promise, ms, what) => {
                    let timer;
                    return Promise.race([
                        promise,
                        new Promise((_, reject) => {
                            timer = setTimeout(() => reject(new Error(`${what} not within ${ms} ms`)), ms);
                        })
                    ]).finally(() => clearTimeout(timer));
                };
                const notification = await within(arrived, 5000, 'notifications/tools/list_changed');
                t.diagnostic(`tools/list_changed ${Date.now() - t0} ms after restrict-access was called`);
                assert.equal(notification.method, 'notifications/tools/list_changed');
                assert.equal(notification.params?._meta?.[SUBSCRIPTION_ID], listen.rpc.id, 'tagged with the listen request id');
                const tools = await within(refetched, 5000, 'the listChanged onChanged callback');
                assert.ok(tools.some(tool => tool.name === 'whoami'), 'onChanged got the re-fetched tools/list');
            } finally {
                await subscription.close();
                await auto.autoOpenedSubscription?.close();
            }
            assert.equal(await subscription.closed, 'local');
        })
    );

    test(
        'every request the SDK sent to /mcp (all tests above) carried MCP-Protocol-Version: 2026-07-28 and Mcp-Method, and no session',
        withServerLog(async t => {
            const mcp = assertStateless(log);
            const requests = mcp.filter(e => e.rpc.id !== undefined);
            t.diagnostic(`${requests.length} requests: ${[...new Set(requests.map(e => e.rpc.method))].join(', ')}`);
            const notifications = mcp.filter(e => e.rpc.id === undefined);
            if (notifications.length) {
                t.diagnostic(`notifications: ${notifications.map(e => `${e.rpc.method} (Mcp-Method ${e.mcpMethod ?? 'absent'}) -> ${e.status}`).join(', ')}`);
            }
        })
    );
});
