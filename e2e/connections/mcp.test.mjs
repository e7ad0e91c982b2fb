// End-to-end: Bridgekeeper's `mcp` connection kind against a real protected MCP server — the
// official TypeScript SDK as resource server (requireBearerAuth, its RFC 9728 metadata router,
// Streamable HTTP), whose authorization server is a real `oidc-provider` with open dynamic client
// registration, PKCE required, resource indicators, rotating refresh tokens, revocation,
// introspection and RFC 9207 `iss` — both over HTTPS from a throwaway CA the binary is told to
// trust (./lib/mcp-upstream.mjs). The binary is given only the MCP URL (provider `docs`, no client
// id): it must discover the authorization server from the 401 challenge and register itself.
//
// The test plays the person: signs up at Bridgekeeper, authorizes an app for scope `connections`,
// and goes through oidc-provider's own login and consent pages. Every claim about the upstream is
// checked at the upstream: oidc-provider's events, requests and introspection, and what the MCP
// server saw.
//
// Refresh tokens come the way OpenID providers give them: offline_access granted, which
// Bridgekeeper asks for with prompt=consent (OpenID Connect Core §11).
//
//   BK_BIN=/abs/path/to/bridgekeeper e2e/connections/run.sh     (runs every *.test.mjs here)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';

import { UserAgent, rawRequest } from './lib/agent.mjs';
import { api, signUpAndAuthorizeApp, startBridgekeeper } from './lib/bridgekeeper.mjs';
import { throughInteraction } from './lib/interaction.mjs';
import { extractForm } from '../ts/lib/browser.mjs';
import { REQUIRED_SCOPE, startMcpUpstream } from './lib/mcp-upstream.mjs';

const PROVIDER = 'docs';
const APP_REDIRECT = 'http://127.0.0.1:53691/connected';
const TEST_TIMEOUT_MS = 60_000;
const rand = () => randomBytes(6).toString('hex');

/** The configuration that adds the MCP server as provider `id`: its URL and nothing else about it. */
function mcpProviderEnv(id, upstream) {
    const p = `BRIDGEKEEPER_CONNECTIONS__PROVIDERS__${id.toUpperCase()}__`;
    return {
        [`${p}NAME`]: 'Docs (MCP, e2e)',
        [`${p}DESCRIPTION`]: 'A protected MCP server run by the test (TypeScript SDK + oidc-provider)',
        [`${p}AUTH`]: 'mcp',
        [`${p}MCP__URL`]: upstream.mcpUrl,
        BRIDGEKEEPER_CONNECTIONS__ALLOW_PRIVATE_ADDRESSES: 'true',
        BRIDGEKEEPER_CONNECTIONS__EXTRA_CA_FILE: upstream.caFile
    };
}

/** The JSON-RPC messages of an answer, JSON or server-sent events. */
function rpcMessages(res) {
    if (!String(res.headers['content-type'] ?? '').startsWith('text/event-stream')) return [res.json()];
    return res.text
        .split('\n\n')
        .map(ev =>
            ev
                .split('\n')
                .filter(l => l.startsWith('data:'))
                .map(l => l.slice(5).trimStart())
                .join('\n')
        )
        .filter(Boolean)
        .map(d => JSON.parse(d));
}

describe('connections: a protected MCP server (TypeScript SDK) whose authorization server is oidc-provider', () => {
    const user = {
        accountId: `docs-user-${rand()}`,
        username: 'dee',
        password: `pw-${rand()}`,
        email: 'dee@docs.example',
        name: 'Dee Docs'
    };
    const email = `mcp-${rand()}@example.com`;
    const password = `pw-${rand()}-correct horse`;
    let upstream;
    let bk;
    let agent;
    let app;
    const answers = [];

    const call = async (method, path, json) => {
        const res = await api(bk.issuer, method, path, { token: app.accessToken, json });
        answers.push(`${method} ${path} -> ${res.status} ${res.text}`);
        return res;
    };
    const events = (name, where = () => true) => upstream.events.filter(e => e.event === name && where(e));
    const callbackUrl = () => `${bk.issuer}/api/v1/connections/callback`;
    const fromBridgekeeper = since =>
        upstream.requests
            .slice(since)
            .filter(r => r.userAgent?.startsWith('Bridgekeeper/'))
            .map(r => `${r.method} ${r.path} -> ${r.status} [${(r.params ?? []).join(' ')}]${r.authorization ? ` ${r.authorization}` : ''}`);
    const mcpSeen = since =>
        upstream.mcpRequests
            .slice(since)
            .map(r => `${r.method} ${r.path}${r.rpc ? ` ${r.rpc}` : ''} -> ${r.status}${r.bearer ? ' Bearer' : ''}${r.session ? ' session' : ''}`);
    const registrationRequests = () => upstream.requests.filter(r => r.method === 'POST' && r.path === '/reg');

    let consentsShown = 0;
    /** The person at oidc-provider, from the authorization URL to its redirect to Bridgekeeper's callback. */
    async function atUpstream(authorizationUrl) {
        return throughInteraction(agent, authorizationUrl, {
            issuer: upstream.issuer,
            callbackUrl: callbackUrl(),
            login: ({ target }) => agent.post(target, { username: user.username, password: user.password }),
            async consent({ res, target }) {
                assert.match(res.text, /<strong class="client">Bridgekeeper<\/strong>/, 'the consent page names the registered client');
                // The first consent shows what is asked of the resource; later ones (prompt=consent,
                // sent with offline_access, asks again) may find it all granted already.
                if (consentsShown++ === 0)
                    assert.ok(res.text.includes(`${upstream.mcpUrl}: ${REQUIRED_SCOPE}`), `the consent page shows the resource and its scope: ${res.text}`);
                return agent.post(target, { decision: 'approve' });
            }
        });
    }

    /** initiate, checked; returns the authorization URL's parameters. */
    async function initiate() {
        const init = await call('POST', '/api/v1/connections/initiate', { providerId: PROVIDER, redirectUrl: APP_REDIRECT });
        assert.equal(init.status, 200, `initiate: ${init.text}`);
        assert.equal(init.body.providerMetadata.id, PROVIDER);
        const url = new URL(init.body.authorizationUrl);
        assert.equal(url.origin + url.pathname, upstream.endpoints.authorize, 'the authorization endpoint oidc-provider advertises');
        const q = url.searchParams;
        assert.equal(q.get('response_type'), 'code');
        assert.equal(q.get('redirect_uri'), callbackUrl());
        assert.equal(q.get('code_challenge_method'), 'S256');
        assert.match(q.get('code_challenge'), /^[A-Za-z0-9_-]{43}$/);
        assert.ok(q.get('state')?.length >= 43, 'a 256-bit state');
        assert.equal(q.get('resource'), upstream.mcpUrl, "resource: the protected-resource metadata's `resource`");
        // The challenge's scope (what the server requires), plus offline_access (oidc-provider lists it).
        assert.equal(q.get('scope'), `${REQUIRED_SCOPE} offline_access`);
        return { url, q };
    }

    /** The person's browser, signed in at Bridgekeeper, lands on the callback. */
    async function land(callback) {
        const back = await agent.get(callback);
        assert.equal(back.status, 303, `callback: ${back.status} ${back.text}\n${bk.logTail()}`);
        const to = new URL(back.location);
        assert.equal(to.origin + to.pathname, APP_REDIRECT, `back to the app: ${back.location}`);
        return to;
    }

    before(async () => {
        upstream = await startMcpUpstream({ user });
        bk = await startBridgekeeper(mcpProviderEnv(PROVIDER, upstream));
        agent = new UserAgent({ ca: upstream.ca });
        app = await signUpAndAuthorizeApp(agent, bk.issuer, {
            email,
            password,
            redirectUri: APP_REDIRECT,
            scope: 'connections providers account'
        });
    });

    after(async () => {
        await bk?.stop();
        await upstream?.stop();
    });

    const withLogs = fn => async t => {
        try {
            await fn(t);
        } catch (err) {
            err.message +=
                `\n--- upstream events ---\n${upstream?.events.map(e => JSON.stringify(e)).join('\n')}` +
                `\n--- MCP server requests ---\n${upstream?.mcpRequests.map(e => JSON.stringify(e)).join('\n')}` +
                `\n--- server log (tail) ---\n${bk?.logTail()}`;
            throw err;
        }
    };

    /** Shared across the tests, in order. */
    const first = {};

    test(
        'connect: discovery from the 401, dynamic registration, login and consent at oidc-provider, an authenticated initialize',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const provider = await call('GET', `/api/v1/providers/${PROVIDER}`);
            assert.equal(provider.status, 200, provider.text);
            assert.equal(provider.body.authKind, 'mcp');
            assert.equal(provider.body.configured, true, 'configured without a client: it registers itself');
            assert.equal(provider.body.mcpUrl, upstream.mcpUrl);

            const mcpMark = upstream.mcpRequests.length;
            const asMark = upstream.requests.length;
            const { url, q } = await initiate();
            first.authorizationQuery = q;

            // Discovery at the MCP server: an unauthenticated initialize (answered 401 with the SDK's
            // challenge), then the protected-resource metadata the challenge names.
            const probe = upstream.mcpRequests.slice(mcpMark);
            assert.deepEqual(mcpSeen(mcpMark), ['POST /mcp initialize -> 401', 'GET /.well-known/oauth-protected-resource/mcp -> 200']);
            assert.match(probe[0].challenge, /resource_metadata="[^"]+\/\.well-known\/oauth-protected-resource\/mcp"/);
            assert.ok(probe.every(r => r.userAgent?.startsWith('Bridgekeeper/')), 'all of it from the binary');

            // At oidc-provider: its metadata, then one registration (RFC 7591) for a public web client
            // whose only redirect URI is the callback.
            assert.deepEqual(fromBridgekeeper(asMark), ['GET /.well-known/oauth-authorization-server -> 200 []', 'POST /reg -> 201 []']);
            assert.equal(upstream.registrations.length, 1, 'one registration');
            const reg = upstream.registrations[0];
            assert.equal(q.get('client_id'), reg.clientId, 'the authorization request names the registered client');
            assert.equal(reg.request.token_endpoint_auth_method, 'none');
            assert.equal(reg.request.application_type, 'web');
            assert.deepEqual(reg.request.redirect_uris, [callbackUrl()]);
            assert.deepEqual([...reg.request.grant_types].sort(), ['authorization_code', 'refresh_token']);
            assert.deepEqual(reg.request.response_types, ['code']);
            assert.equal(reg.request.client_name, 'Bridgekeeper');
            assert.equal(reg.request.client_uri, bk.issuer);
            assert.equal(reg.metadata.token_endpoint_auth_method, 'none');
            first.clientId = reg.clientId;

            // The person logs in and consents at oidc-provider.
            const { callback, seen } = await atUpstream(url.href);
            assert.deepEqual(seen, ['login', 'consent']);
            const cb = new URL(callback).searchParams;
            assert.equal(cb.get('state'), q.get('state'), 'the upstream returns the state');
            assert.equal(cb.get('iss'), upstream.issuer, 'oidc-provider names itself (RFC 9207)');
            assert.ok(cb.get('code'));
            const authorized = events('authorization.success').at(-1);
            assert.equal(authorized.resource, upstream.mcpUrl);

            const asMark2 = upstream.requests.length;
            const mcpMark2 = upstream.mcpRequests.length;
            const to = await land(callback);
            assert.equal(to.searchParams.get('status'), 'active', `${to}`);
            const id = to.searchParams.get('connectionId');
            assert.ok(id, `a connection id: ${to}`);
            first.id = id;
            first.callback = callback;

            // The code exchange: a public client (no secret), PKCE, the resource.
            assert.deepEqual(fromBridgekeeper(asMark2), ['POST /token -> 200 [client_id code code_verifier grant_type redirect_uri resource]']);
            const issued = events('grant.success', e => e.grantType === 'authorization_code');
            assert.equal(issued.length, 1);
            assert.equal(issued[0].clientId, first.clientId);
            assert.equal(issued[0].clientAuth, 'none');
            assert.equal(issued[0].resource, upstream.mcpUrl);
            assert.equal(issued[0].audience, upstream.mcpUrl, 'the access token is for the MCP server');
            assert.ok(issued[0].refreshToken, 'a refresh token was issued (see the offline_access test below)');
            Object.assign(first, { grantId: issued[0].grantId, at1: issued[0].accessToken, rt1: issued[0].refreshToken });
            const at = await upstream.introspect(first.at1, 'access_token');
            assert.equal(at.active, true);
            assert.equal(at.aud, upstream.mcpUrl);
            assert.equal(at.sub, user.accountId);
            assert.equal(at.scope, REQUIRED_SCOPE);

            // The MCP server took the new token: an authenticated initialize (the SDK verified it by
            // introspection, for this resource), the initialized notification, the session closed.
            assert.deepEqual(mcpSeen(mcpMark2), [
                'POST /mcp initialize -> 200 Bearer',
                'POST /mcp notifications/initialized -> 202 Bearer session',
                'DELETE /mcp -> 200 Bearer session'
            ]);
            const init = upstream.mcpRequests[mcpMark2];
            assert.equal(init.clientId, first.clientId);
            assert.equal(init.sub, user.accountId);
            assert.equal(init.resource, upstream.mcpUrl);
            assert.deepEqual(init.scopes, [REQUIRED_SCOPE]);
            assert.equal(upstream.sessions.size, 0, 'the probe session was closed');

            const c = await call('GET', `/api/v1/connections/${id}`);
            assert.equal(c.status, 200, c.text);
            assert.equal(c.body.id, id);
            assert.equal(c.body.providerId, PROVIDER);
            assert.equal(c.body.status, 'active');
            assert.equal(c.body.metadata?.serverInfo?.name, upstream.serverInfo.name, JSON.stringify(c.body.metadata));
            assert.equal(c.body.metadata?.serverInfo?.version, upstream.serverInfo.version);
            assert.equal(c.body.canRefresh, true);
            assert.ok(c.body.scopes.includes(REQUIRED_SCOPE), `scopes: ${c.body.scopes}`);
            assert.equal(c.body.lastError ?? null, null);
            const ttl = c.body.expiresAt - Math.floor(Date.now() / 1000);
            assert.ok(ttl > upstream.accessTokenTtl - 10 && ttl <= upstream.accessTokenTtl, `expiresAt follows expires_in: ${ttl}`);
        })
    );

    test(
        'the token Bridgekeeper got works at the MCP server: initialize, tools/list, tools/call',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            assert.ok(first.at1, 'connected');
            const post = (body, session, token = first.at1) =>
                rawRequest(upstream.mcpUrl, {
                    method: 'POST',
                    headers: {
                        'Content-Type': 'application/json',
                        Accept: 'application/json, text/event-stream',
                        Authorization: `Bearer ${token}`,
                        ...(session ? { 'Mcp-Session-Id': session, 'Mcp-Protocol-Version': '2025-11-25' } : {})
                    },
                    body: JSON.stringify(body),
                    ca: upstream.ca
                });
            const init = await post({
                jsonrpc: '2.0',
                id: 1,
                method: 'initialize',
                params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'e2e', version: '1' } }
            });
            assert.equal(init.status, 200, init.text);
            const session = init.headers['mcp-session-id'];
            assert.ok(session);
            assert.equal((await post({ jsonrpc: '2.0', method: 'notifications/initialized' }, session)).status, 202);
            const list = await post({ jsonrpc: '2.0', id: 2, method: 'tools/list', params: {} }, session);
            assert.deepEqual(
                rpcMessages(list)
                    .find(m => m.id === 2)
                    .result.tools.map(t => t.name)
                    .sort(),
                ['search_docs', 'whoami']
            );
            const who = await post({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'whoami', arguments: {} } }, session);
            const text = rpcMessages(who).find(m => m.id === 3).result.content[0].text;
            assert.deepEqual(JSON.parse(text), { sub: user.accountId, clientId: first.clientId });

            // And a token oidc-provider does not know is refused.
            const bad = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: {} }, undefined, 'not-a-token');
            assert.equal(bad.status, 401);
        })
    );

    test(
        'a tampered state stores nothing and exchanges nothing; a second connect reuses the registration; a replayed callback stores nothing',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            assert.ok(first.id, 'connected');
            const asMark = upstream.requests.length;
            const { url, q } = await initiate();
            // No second registration: the one kept for this issuer is reused.
            assert.equal(registrationRequests().length, 1, 'oidc-provider saw exactly one registration request');
            assert.equal(upstream.registrations.length, 1);
            assert.equal(q.get('client_id'), first.clientId, 'the same client');
            assert.ok(!fromBridgekeeper(asMark).some(r => r.startsWith('POST /reg')), fromBridgekeeper(asMark).join(', '));

            const { callback, seen } = await atUpstream(url.href);
            assert.ok(!seen.includes('login'), `signed in at oidc-provider already: ${seen}`);
            const codesBefore = events('grant.success').length;
            const listBefore = await call('GET', '/api/v1/connections');
            assert.equal(listBefore.body.total, 1);

            // The state altered (last character flipped): refused, nothing exchanged, nothing stored.
            const genuine = new URL(callback);
            const state = genuine.searchParams.get('state');
            const tampered = new URL(genuine);
            tampered.searchParams.set('state', state.slice(0, -1) + (state.endsWith('A') ? 'B' : 'A'));
            const refused = await agent.get(tampered.href);
            assert.equal(refused.status, 400, `tampered state: ${refused.status} ${refused.text}`);
            assert.match(refused.text, /unknown or was already used/);
            assert.equal(events('grant.success').length, codesBefore, 'no code exchanged');
            assert.equal((await call('GET', '/api/v1/connections')).body.total, 1, 'nothing stored');

            // The genuine answer still completes (the flow was not consumed by the forgery).
            const mcpMark = upstream.mcpRequests.length;
            const to = await land(callback);
            assert.equal(to.searchParams.get('status'), 'active');
            const id = to.searchParams.get('connectionId');
            assert.ok(id && id !== first.id, `a second connection: ${to}`);
            first.second = id;
            assert.equal(mcpSeen(mcpMark)[0], 'POST /mcp initialize -> 200 Bearer');
            const code = events('grant.success', e => e.grantType === 'authorization_code').at(-1);
            assert.equal(code.clientId, first.clientId);
            first.secondRt = code.refreshToken;

            // Replayed: the flow is gone, the code is not presented again, nothing stored.
            const grantsBefore = events('grant.success').length;
            const errorsBefore = events('grant.error').length;
            const replay = await agent.get(callback);
            assert.equal(replay.status, 400, `replayed callback: ${replay.status} ${replay.text}`);
            assert.match(replay.text, /unknown or was already used/);
            assert.equal(events('grant.success').length, grantsBefore);
            assert.equal(events('grant.error').length, errorsBefore, 'the code was not presented again');
            // The first connection's callback, replayed too.
            const old = await agent.get(first.callback);
            assert.equal(old.status, 400);
            const list = await call('GET', '/api/v1/connections');
            assert.deepEqual(list.body.connections.map(x => x.id).sort(), [first.id, first.second].sort());
            assert.equal(registrationRequests().length, 1);
        })
    );

    test(
        "an answer naming another issuer, or none (oidc-provider advertises RFC 9207), is refused: nothing exchanged, nothing stored",
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            assert.ok(first.second, 'connected twice');
            for (const [what, alter] of [
                ['another issuer', u => u.searchParams.set('iss', 'https://localhost:1')],
                ['no issuer', u => u.searchParams.delete('iss')]
            ]) {
                const { url } = await initiate();
                const { callback } = await atUpstream(url.href);
                const forged = new URL(callback);
                assert.equal(forged.searchParams.get('iss'), upstream.issuer);
                alter(forged);
                const grants = events('grant.success').length;
                const to = await land(forged.href);
                assert.equal(to.searchParams.get('error'), 'invalid_request', `${what}: ${to}`);
                assert.match(to.searchParams.get('error_description') ?? '', /\(iss\)/, `${what}: ${to}`);
                assert.equal(to.searchParams.get('connectionId'), null, what);
                assert.equal(events('grant.success').length, grants, `${what}: the code was not exchanged`);
                // The flow is spent: the genuine answer, afterwards, is refused too.
                const late = await agent.get(callback);
                assert.equal(late.status, 400, `${what}: the genuine answer after a refused one: ${late.status} ${late.text}`);
                assert.equal(events('grant.success').length, grants);
            }
            const list = await call('GET', '/api/v1/connections');
            assert.equal(list.body.total, 2, 'nothing stored');
        })
    );

    test(
        'PUT /refresh: at the discovered token endpoint, with the resource; oidc-provider rotates the refresh token',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            assert.ok(first.rt1, 'connected');
            const mark = upstream.requests.length;
            const before = await call('GET', `/api/v1/connections/${first.id}`);
            const res = await call('PUT', `/api/v1/connections/${first.id}/refresh`);
            assert.equal(res.status, 200, res.text);
            assert.equal(res.body.status, 'active');
            assert.equal(res.body.canRefresh, true);
            assert.deepEqual(fromBridgekeeper(mark), ['POST /token -> 200 [client_id grant_type refresh_token resource]']);
            const r1 = events('grant.success', e => e.grantType === 'refresh_token');
            assert.equal(r1.length, 1);
            assert.equal(r1[0].clientId, first.clientId);
            assert.equal(r1[0].rotatedFrom, first.rt1, 'Bridgekeeper presented the refresh token it was issued');
            assert.ok(r1[0].refreshToken && r1[0].refreshToken !== first.rt1, 'rotated');
            assert.equal(r1[0].audience, upstream.mcpUrl, 'the new access token is for the MCP server too');
            assert.equal((await upstream.introspect(first.rt1, 'refresh_token')).active, false, 'the old refresh token is dead');
            assert.equal((await upstream.introspect(r1[0].refreshToken, 'refresh_token')).active, true);
            assert.ok(res.body.updatedAt >= before.body.updatedAt);

            // Again: the rotated one is presented (a consumed one would revoke the grant).
            const again = await call('PUT', `/api/v1/connections/${first.id}/refresh`);
            assert.equal(again.status, 200, again.text);
            assert.equal(again.body.status, 'active');
            const r2 = events('grant.success', e => e.grantType === 'refresh_token');
            assert.equal(r2.length, 2);
            assert.equal(r2[1].rotatedFrom, r1[0].refreshToken);
            assert.equal(events('grant.error').length, 0, JSON.stringify(events('grant.error')));
            assert.equal(events('grant.revoked').length, 0);
            first.current = r2[1].refreshToken;
            first.currentAt = r2[1].accessToken;
        })
    );

    test(
        'DELETE: revoked at the discovered revocation endpoint; the refresh and access tokens are dead there',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            assert.ok(first.current, 'refreshed');
            assert.equal((await upstream.introspect(first.current, 'refresh_token')).active, true);
            const mark = upstream.requests.length;
            const del = await call('DELETE', `/api/v1/connections/${first.id}`);
            assert.equal(del.status, 204, del.text);
            // One revocation (RFC 7009) at the endpoint oidc-provider advertises, as the public client.
            assert.deepEqual(fromBridgekeeper(mark), ['POST /token/revocation -> 200 [client_id token token_type_hint]']);
            assert.ok(
                events('refresh_token.destroyed').some(e => e.token === first.current),
                'the refresh token was revoked at oidc-provider'
            );
            assert.deepEqual(
                events('grant.revoked').map(e => [e.route, e.clientId, e.grantId]),
                [['revocation', first.clientId, first.grantId]]
            );
            assert.equal((await upstream.introspect(first.current, 'refresh_token')).active, false, 'the refresh token is dead');
            assert.equal((await upstream.introspect(first.currentAt, 'access_token')).active, false, 'and the access token with it');
            // The MCP server refuses the access token now.
            const refused = await rawRequest(upstream.mcpUrl, {
                method: 'POST',
                headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', Authorization: `Bearer ${first.currentAt}` },
                body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: {} }),
                ca: upstream.ca
            });
            assert.equal(refused.status, 401);

            assert.equal((await call('GET', `/api/v1/connections/${first.id}`)).status, 404);
            first.deleted = true;
            const list = await call('GET', '/api/v1/connections');
            assert.deepEqual(
                list.body.connections.map(x => x.id),
                [first.second]
            );
            // oidc-provider keeps one grant per person and client: the second connection was issued
            // under the same grant, so its refresh token died with it, and Bridgekeeper notices when
            // it next refreshes.
            const second = events('grant.success', e => e.refreshToken === first.secondRt)[0];
            assert.equal(second.grantId, first.grantId, 'one grant upstream for both connections');
            assert.equal((await upstream.introspect(first.secondRt, 'refresh_token')).active, false);
            const expired = await call('PUT', `/api/v1/connections/${first.second}/refresh`);
            assert.equal(expired.status, 200, expired.text);
            assert.equal(expired.body.status, 'expired');
            assert.match(expired.body.lastError, /invalid_grant/);
            assert.equal(events('grant.error').at(-1).presented, first.secondRt);
        })
    );

    test(
        'the MCP server refuses the token its authorization server issued: access_denied, nothing stored, the grant revoked',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            assert.ok(first.deleted, 'deleted');
            const before = (await call('GET', '/api/v1/connections')).body.total;
            const { url } = await initiate();
            // The grant was revoked: oidc-provider asks for consent again.
            const { callback, seen } = await atUpstream(url.href);
            assert.deepEqual(seen, ['consent']);
            upstream.refuseNextTokens(1);
            const asMark = upstream.requests.length;
            const mcpMark = upstream.mcpRequests.length;
            const to = await land(callback);
            assert.equal(to.searchParams.get('error'), 'access_denied', `${to}`);
            assert.match(to.searchParams.get('error_description') ?? '', /did not accept the token/);
            assert.equal(to.searchParams.get('connectionId'), null);
            assert.deepEqual(mcpSeen(mcpMark), ['POST /mcp initialize -> 401 Bearer']);
            // The tokens issued are given back.
            assert.deepEqual(fromBridgekeeper(asMark), [
                'POST /token -> 200 [client_id code code_verifier grant_type redirect_uri resource]',
                'POST /token/revocation -> 200 [client_id token token_type_hint]'
            ]);
            const code = events('grant.success', e => e.grantType === 'authorization_code').at(-1);
            assert.notEqual(code.grantId, first.grantId, 'a new grant upstream');
            assert.equal((await upstream.introspect(code.refreshToken, 'refresh_token')).active, false, 'its refresh token is dead');
            assert.equal((await upstream.introspect(code.accessToken, 'access_token')).active, false, 'and its access token');
            assert.equal((await call('GET', '/api/v1/connections')).body.total, before, 'nothing stored');
        })
    );

    // The authorization request asks for offline_access (oidc-provider lists it) with
    // prompt=consent, which OpenID Connect Core §11 requires with it (without, oidc-provider drops
    // offline_access silently and issues no refresh token). The SDK's own client does the same.
    test(
        'offline_access is asked so that an OpenID provider honours it (prompt=consent)',
        { timeout: TEST_TIMEOUT_MS },
        async () => {
            const q = first.authorizationQuery;
            assert.ok(q, 'connected');
            assert.ok(q.get('scope').split(' ').includes('offline_access'));
            assert.equal(q.get('prompt'), 'consent', 'offline_access comes with prompt=consent');
            assert.equal(upstream.refreshPolicy[0]?.offlineAccess, true, 'oidc-provider granted offline_access');
        }
    );

    test(
        'the connections page connects the MCP server too: a button, the server’s authorization server, back to the page',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const page = await agent.get(`${bk.issuer}/connections`);
            assert.equal(page.status, 200, page.text);
            // The connect form of this provider's card (each provider has one).
            const card = page.text.match(new RegExp(`<li class="card" id="provider-${PROVIDER}">[\\s\\S]*?</li>`));
            assert.ok(card, `a card for ${PROVIDER}: ${page.text}`);
            const form = extractForm(card[0], '/connections/connect');
            assert.equal(form.hidden.get('provider'), PROVIDER);
            const started = await agent.post(`${bk.issuer}/connections/connect`, Object.fromEntries(form.hidden));
            assert.equal(started.status, 303, `${started.status} ${started.text}`);
            const url = new URL(started.location);
            assert.equal(url.origin + url.pathname, upstream.endpoints.authorize, 'discovered from the server');
            assert.equal(url.searchParams.get('resource'), upstream.mcpUrl);
            const { callback } = await atUpstream(url.href);
            const back = await agent.get(callback);
            assert.equal(back.status, 303, `callback: ${back.status} ${back.text}`);
            const to = new URL(back.location);
            assert.equal(to.origin + to.pathname, `${bk.issuer}/connections`, 'back to the page');
            assert.equal(to.searchParams.get('status'), 'active');
            const id = to.searchParams.get('connectionId');
            const c = await call('GET', `/api/v1/connections/${id}`);
            assert.equal(c.status, 200, c.text);
            assert.equal(c.body.providerId, PROVIDER);
            assert.equal(c.body.status, 'active');
        })
    );

    test(
        'no credential in any answer or log line',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const secrets = [];
            for (const e of events('grant.success')) secrets.push(e.accessToken, e.refreshToken);
            assert.ok(secrets.filter(Boolean).length >= 6, `tokens were issued: ${secrets.length}`);
            const seen = answers.join('\n');
            const logs = bk.logTail();
            for (const s of secrets.filter(Boolean)) {
                assert.ok(!seen.includes(s), 'an API answer carries an upstream credential');
                assert.ok(!logs.includes(s), 'the server log carries an upstream credential');
            }
        })
    );
});
