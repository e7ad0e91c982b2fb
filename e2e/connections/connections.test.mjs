// End-to-end: Bridgekeeper's connections broker against a real third-party
// OAuth 2.0 / OpenID Connect server as the upstream — npm `oidc-provider`, run
// by the test over HTTPS (a throwaway CA the binary is told to trust) with
// 5-second access tokens, refresh tokens rotated on every use, PKCE required,
// revocation, introspection and userinfo. The test configures it in the binary
// as an operator-added `oauth2` provider (`acme`, through the environment),
// and plays the person: signs up at Bridgekeeper, authorizes an app for scope
// `connections`, and goes through the upstream's own login and consent pages.
// Every claim about the upstream is checked at the upstream: its event emitter,
// its introspection, token, userinfo and revocation endpoints.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

import { extractForm } from '../ts/lib/browser.mjs';
import { UserAgent, rawRequest } from './lib/agent.mjs';
import { api, providerEnv, signUpAndAuthorizeApp, startBridgekeeper } from './lib/bridgekeeper.mjs';
import { throughInteraction } from './lib/interaction.mjs';
import { startUpstream } from './lib/upstream.mjs';

const PROVIDER = 'acme';
const ACCESS_TOKEN_TTL = 5;
const SCOPES = ['openid', 'email', 'profile', 'offline_access'];
// The app's registered redirect URI, where Bridgekeeper returns the person after
// connecting (nothing listens there: the test reads the Location header).
const APP_REDIRECT = 'http://127.0.0.1:53690/connected';
const TEST_TIMEOUT_MS = 60_000;
const rand = () => randomBytes(6).toString('hex');
const nowSecs = () => Math.floor(Date.now() / 1000);

describe('connections: oidc-provider as an operator-added oauth2 provider', () => {
    const user = {
        accountId: `acme-user-${rand()}`,
        username: 'tee',
        password: `pw-${rand()}`,
        email: 'tee@acme.example',
        name: 'Tee Acme'
    };
    const email = `conn-${rand()}@example.com`;
    const password = `pw-${rand()}-correct horse`;
    let upstream;
    let bk;
    let agent;
    let app;
    /** Every Bridgekeeper API answer body, checked at the end for credentials. */
    const answers = [];

    const call = async (method, path, json) => {
        const res = await api(bk.issuer, method, path, { token: app.accessToken, json });
        answers.push(`${method} ${path} -> ${res.status} ${res.text}`);
        return res;
    };
    const events = (name, where = () => true) => upstream.events.filter(e => e.event === name && where(e));
    const callbackUrl = () => `${bk.issuer}/api/v1/connections/callback`;
    /** The binary's requests to the upstream from index `since` on: method, path, status and parameter names. */
    const fromBridgekeeper = since =>
        upstream.requests
            .slice(since)
            .filter(r => r.userAgent?.startsWith('Bridgekeeper/'))
            .map(r => `${r.method} ${r.path} -> ${r.status} [${r.params.join(' ')}]${r.authorization ? ` ${r.authorization}` : ''}`);

    /** A request to the upstream as its registered client (client_secret_post), like a broker would. */
    const asClient = (url, params) =>
        rawRequest(url, {
            method: 'POST',
            headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
            body: new URLSearchParams({ ...params, client_id: upstream.clientId, client_secret: upstream.clientSecret }).toString(),
            ca: upstream.ca
        });
    const introspect = async token => {
        const res = await asClient(upstream.endpoints.introspect, { token, token_type_hint: 'refresh_token' });
        assert.equal(res.status, 200, `introspection: ${res.text}`);
        return res.json();
    };
    const userinfo = token =>
        rawRequest(upstream.endpoints.userinfo, { headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' }, ca: upstream.ca });

    /**
     * The person at the upstream, from Bridgekeeper's authorization URL to the
     * upstream's redirect back to Bridgekeeper's callback: the login page (a wrong
     * password first, when asked) and the consent page. Returns the callback URL
     * and the pages seen.
     */
    async function atUpstream(authorizationUrl, { decision = 'approve', wrongPasswordFirst = false } = {}) {
        return throughInteraction(agent, authorizationUrl, {
            issuer: upstream.issuer,
            callbackUrl: callbackUrl(),
            async login({ res, action, target, seen }) {
                extractForm(res.text, action);
                if (wrongPasswordFirst) {
                    wrongPasswordFirst = false;
                    const wrong = await agent.post(target, { username: user.username, password: `${user.password}-wrong` });
                    assert.equal(wrong.status, 401, 'a wrong password is refused at the upstream');
                    assert.match(wrong.text, /Wrong username or password/);
                    seen.push('login refused');
                }
                return agent.post(target, { username: user.username, password: user.password });
            },
            async consent({ res, target }) {
                assert.match(res.text, /Bridgekeeper \(e2e\)/, 'the consent page names the client');
                for (const s of SCOPES) assert.ok(res.text.includes(s), `the consent page shows ${s}`);
                return agent.post(target, { decision });
            }
        });
    }

    /** initiate → the upstream's pages → the callback → the app's redirect URI. */
    async function connect(opts = {}) {
        const init = await call('POST', '/api/v1/connections/initiate', {
            providerId: PROVIDER,
            redirectUrl: APP_REDIRECT,
            providerParams: {}
        });
        assert.equal(init.status, 200, `initiate: ${init.text}`);
        assert.equal(init.body.providerMetadata.id, PROVIDER);
        const authorizationUrl = new URL(init.body.authorizationUrl);
        assert.equal(authorizationUrl.origin + authorizationUrl.pathname, upstream.endpoints.authorize);
        const q = authorizationUrl.searchParams;
        assert.equal(q.get('client_id'), upstream.clientId);
        assert.equal(q.get('redirect_uri'), callbackUrl());
        assert.equal(q.get('response_type'), 'code');
        assert.equal(q.get('scope'), SCOPES.join(' '));
        assert.equal(q.get('code_challenge_method'), 'S256');
        assert.match(q.get('code_challenge'), /^[A-Za-z0-9_-]{43}$/);
        assert.ok(q.get('state')?.length >= 43, 'a 256-bit state');
        assert.equal(q.get('prompt'), 'consent');

        const { callback, seen } = await atUpstream(authorizationUrl.href, opts);
        const cb = new URL(callback).searchParams;
        assert.equal(cb.get('state'), q.get('state'), 'the upstream returns the state');
        assert.equal(cb.get('iss'), upstream.issuer, 'the upstream identifies itself (RFC 9207)');
        // The browser, still signed in at Bridgekeeper, lands on the callback.
        const back = await agent.get(callback);
        assert.equal(back.status, 303, `callback: ${back.status} ${back.text}\n${bk.logTail()}`);
        const to = new URL(back.location);
        assert.equal(to.origin + to.pathname, APP_REDIRECT, `back to the app: ${back.location}`);
        return { to, seen, state: q.get('state') };
    }

    before(async () => {
        upstream = await startUpstream({ accessTokenTtl: ACCESS_TOKEN_TTL, user });
        bk = await startBridgekeeper(providerEnv(PROVIDER, upstream, { scopes: SCOPES, authorizeParams: { prompt: 'consent' } }));
        upstream.configure({ redirectUri: callbackUrl() });
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

    /** On failure, appends the binary's log tail and the upstream's events. */
    const withLogs = fn => async t => {
        try {
            await fn(t);
        } catch (err) {
            err.message +=
                `\n--- upstream events ---\n${upstream?.events.map(e => JSON.stringify(e)).join('\n')}` +
                `\n--- server log (tail) ---\n${bk?.logTail()}`;
            throw err;
        }
    };

    /** Shared across the tests, in order. */
    const first = {};

    test(
        'the provider is configured from the environment',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const res = await call('GET', `/api/v1/providers/${PROVIDER}`);
            assert.equal(res.status, 200, res.text);
            assert.equal(res.body.authKind, 'oauth2');
            assert.equal(res.body.configured, true);
            assert.deepEqual(res.body.scopes, SCOPES);
        })
    );

    test(
        'denied at the upstream: back to the app with access_denied, nothing stored',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const { to, seen } = await connect({ decision: 'deny', wrongPasswordFirst: true });
            assert.deepEqual(seen, ['login', 'login refused', 'consent']);
            assert.equal(to.searchParams.get('error'), 'access_denied');
            assert.equal(to.searchParams.get('error_description'), 'The user denied the request.');
            assert.equal(to.searchParams.get('connectionId'), null);
            assert.equal(events('grant.success').length, 0, 'no token was issued upstream');
            const list = await call('GET', '/api/v1/connections');
            assert.equal(list.status, 200);
            assert.equal(list.body.total, 0);
        })
    );

    test(
        'connect through the upstream login and consent: active, its user info, no credential shown',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const before = nowSecs();
            const mark = upstream.requests.length;
            const { to, seen } = await connect();
            // What the binary sent: the code exchange (form-encoded, the client's secret in the body as
            // configured, the PKCE verifier), then userinfo with the new access token as a bearer.
            assert.deepEqual(fromBridgekeeper(mark), [
                'POST /token -> 200 [client_id client_secret code code_verifier grant_type redirect_uri]',
                'GET /me -> 200 [] Bearer'
            ]);
            // The upstream remembers its session: consent only (prompt=consent asks every time).
            assert.deepEqual(seen, ['consent']);
            assert.equal(to.searchParams.get('status'), 'active');
            const id = to.searchParams.get('connectionId');
            assert.ok(id, `a connection id: ${to}`);
            first.id = id;

            // At the upstream: one code exchange by the client, authenticated as configured, PKCE checked
            // (oidc-provider requires it of this client), with a refresh token.
            const issued = events('grant.success', e => e.grantType === 'authorization_code');
            assert.equal(issued.length, 1);
            assert.equal(issued[0].clientId, upstream.clientId);
            assert.equal(issued[0].clientAuth, 'client_secret_post');
            assert.ok(issued[0].refreshToken, 'a refresh token was issued (offline_access)');
            assert.deepEqual(issued[0].scope.split(' ').sort(), [...SCOPES].sort());
            Object.assign(first, { grantId: issued[0].grantId, at1: issued[0].accessToken, rt1: issued[0].refreshToken });

            const c = await call('GET', `/api/v1/connections/${id}`);
            assert.equal(c.status, 200, c.text);
            assert.equal(c.body.id, id);
            assert.equal(c.body.providerId, PROVIDER);
            assert.equal(c.body.status, 'active');
            assert.equal(c.body.providerUserId, user.accountId, 'providerUserId is the upstream account id (sub)');
            assert.deepEqual(c.body.metadata, { sub: user.accountId, email: user.email, email_verified: true, name: user.name });
            assert.deepEqual([...c.body.scopes].sort(), [...SCOPES].sort());
            assert.equal(c.body.canRefresh, true);
            assert.ok(
                c.body.expiresAt >= before + ACCESS_TOKEN_TTL - 1 && c.body.expiresAt <= nowSecs() + ACCESS_TOKEN_TTL + 1,
                `expiresAt follows the upstream's expires_in (${ACCESS_TOKEN_TTL} s): ${c.body.expiresAt}`
            );
            assert.equal(c.body.lastError ?? null, null);

            const list = await call('GET', `/api/v1/connections?providerId=${PROVIDER}&status=active`);
            assert.equal(list.status, 200);
            assert.deepEqual(
                list.body.connections.map(x => x.id),
                [id]
            );
            // The upstream's user info was read with the issued access token.
            const info = await userinfo(first.at1);
            assert.equal(info.status, 200, `userinfo with the first access token: ${info.text}`);
            assert.equal(info.json().sub, user.accountId);
        })
    );

    test(
        'the access token expires; PUT /refresh gets a new one and the upstream rotates the refresh token',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            assert.ok(first.id, 'connected');
            const before = await call('GET', `/api/v1/connections/${first.id}`);
            await sleep(Math.max(0, before.body.expiresAt + 1 - Date.now() / 1000) * 1000);
            // Expired at the upstream: its userinfo refuses the old access token.
            const stale = await userinfo(first.at1);
            assert.equal(stale.status, 401, `userinfo with an expired access token: ${stale.status} ${stale.text}`);
            const expired = await call('GET', `/api/v1/connections/${first.id}`);
            assert.ok(expired.body.expiresAt <= nowSecs(), 'the connection shows its token expired');
            assert.equal(expired.body.status, 'active', 'expired access tokens are refreshed, not a status');

            const mark = upstream.requests.length;
            const refreshed = await call('PUT', `/api/v1/connections/${first.id}/refresh`);
            assert.equal(refreshed.status, 200, refreshed.text);
            assert.deepEqual(fromBridgekeeper(mark), ['POST /token -> 200 [client_id client_secret grant_type refresh_token]']);
            assert.equal(refreshed.body.status, 'active');
            assert.ok(refreshed.body.expiresAt > nowSecs(), `a fresh expiry: ${refreshed.body.expiresAt}`);
            assert.ok(refreshed.body.updatedAt > before.body.updatedAt, `updatedAt moves: ${before.body.updatedAt} -> ${refreshed.body.updatedAt}`);

            // At the upstream: one refresh grant, presenting the first refresh token, which is now consumed.
            const r1 = events('grant.success', e => e.grantType === 'refresh_token');
            assert.equal(r1.length, 1, 'exactly one refresh at the upstream');
            assert.equal(r1[0].rotatedFrom, first.rt1, 'Bridgekeeper presented the refresh token it was issued');
            assert.ok(r1[0].refreshToken && r1[0].refreshToken !== first.rt1, 'the upstream rotated it');
            assert.equal(r1[0].grantId, first.grantId);
            assert.deepEqual(
                events('refresh_token.consumed').map(e => e.token),
                [first.rt1]
            );
            assert.equal((await introspect(first.rt1)).active, false, 'the old refresh token is dead upstream');
            assert.equal((await introspect(r1[0].refreshToken)).active, true, 'the new one is live');
            const fresh = await userinfo(r1[0].accessToken);
            assert.equal(fresh.status, 200, `userinfo with the refreshed access token: ${fresh.text}`);

            // Again: Bridgekeeper stored the rotated token and presents it (a consumed one would make
            // oidc-provider revoke the whole grant).
            const again = await call('PUT', `/api/v1/connections/${first.id}/refresh`);
            assert.equal(again.status, 200, again.text);
            assert.equal(again.body.status, 'active');
            const r2 = events('grant.success', e => e.grantType === 'refresh_token');
            assert.equal(r2.length, 2);
            assert.equal(r2[1].rotatedFrom, r1[0].refreshToken, 'the rotated refresh token was the one used next');
            assert.notEqual(r2[1].refreshToken, r1[0].refreshToken);
            assert.equal(events('grant.error').length, 0, `no refused grant: ${JSON.stringify(events('grant.error'))}`);
            assert.equal(events('grant.revoked').length, 0);
            first.current = r2[1].refreshToken;
        })
    );

    test(
        'twenty concurrent refreshes: one refresh at the upstream, no refresh token presented twice',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            assert.ok(first.current, 'refreshed');
            const before = events('grant.success', e => e.grantType === 'refresh_token').length;
            // The provider takes a second to answer, so that all twenty callers are waiting while the
            // first one's refresh is under way (oidc-provider alone answers within milliseconds, and a
            // caller arriving after a refresh finished asks for — and gets — a new one).
            upstream.slowTokenEndpoint(1000);
            let all;
            try {
                all = await Promise.all(Array.from({ length: 20 }, () => call('PUT', `/api/v1/connections/${first.id}/refresh`)));
            } finally {
                upstream.slowTokenEndpoint(0);
            }
            for (const res of all) {
                assert.equal(res.status, 200, res.text);
                assert.equal(res.body.status, 'active');
            }
            const refreshes = events('grant.success', e => e.grantType === 'refresh_token').slice(before);
            assert.equal(refreshes.length, 1, `one refresh at the upstream, not ${refreshes.length}`);
            assert.equal(refreshes[0].rotatedFrom, first.current);
            // oidc-provider revokes the whole grant when a rotated refresh token comes back: it never did.
            assert.equal(events('grant.error').length, 0, JSON.stringify(events('grant.error')));
            assert.equal(events('grant.revoked').length, 0);
            assert.equal((await introspect(refreshes[0].refreshToken)).active, true);
            first.current = refreshes[0].refreshToken;
        })
    );

    test(
        'revoked upstream out of band: the next refresh marks the connection expired (invalid_grant)',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            assert.ok(first.current, 'refreshed');
            // The person (or an admin) revokes the grant at the provider (RFC 7009, as the client).
            const revoked = await asClient(upstream.endpoints.revoke, { token: first.current, token_type_hint: 'refresh_token' });
            assert.equal(revoked.status, 200, revoked.text);
            assert.deepEqual(
                events('grant.revoked').map(e => [e.route, e.grantId]),
                [['revocation', first.grantId]]
            );
            assert.equal((await introspect(first.current)).active, false);

            const res = await call('PUT', `/api/v1/connections/${first.id}/refresh`);
            assert.equal(res.status, 200, res.text);
            assert.equal(res.body.status, 'expired');
            assert.match(res.body.lastError, /invalid_grant/);
            const refused = events('grant.error');
            assert.equal(refused.length, 1, `one refused refresh upstream: ${JSON.stringify(refused)}`);
            assert.equal(refused[0].presented, first.current, 'Bridgekeeper presented its current refresh token');
            assert.equal(refused[0].error, 'invalid_grant');

            const c = await call('GET', `/api/v1/connections/${first.id}`);
            assert.equal(c.body.status, 'expired');
            assert.match(c.body.lastError, /invalid_grant/);
            const list = await call('GET', '/api/v1/connections?status=expired');
            assert.deepEqual(
                list.body.connections.map(x => x.id),
                [first.id]
            );
            // An expired connection is reconnected, not refreshed: the upstream is not asked again.
            const again = await call('PUT', `/api/v1/connections/${first.id}/refresh`);
            assert.equal(again.status, 409, again.text);
            assert.equal(events('grant.error').length, 1);
        })
    );

    test(
        'a replayed (already rotated) refresh token makes the upstream revoke the grant; Bridgekeeper notices',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const { to } = await connect();
            const id = to.searchParams.get('connectionId');
            first.replayed = id;
            assert.equal(to.searchParams.get('status'), 'active');
            const code = events('grant.success', e => e.grantType === 'authorization_code').at(-1);
            const res = await call('PUT', `/api/v1/connections/${id}/refresh`);
            assert.equal(res.body.status, 'active', res.text);
            const rotated = events('grant.success', e => e.grantType === 'refresh_token').at(-1);
            assert.equal(rotated.rotatedFrom, code.refreshToken);

            // Someone replays the consumed refresh token at the token endpoint itself.
            const replay = await asClient(upstream.endpoints.token, { grant_type: 'refresh_token', refresh_token: code.refreshToken });
            assert.equal(replay.status, 400, replay.text);
            assert.equal(replay.json().error, 'invalid_grant');
            assert.ok(
                events('grant.revoked').some(e => e.grantId === code.grantId && e.route === 'token'),
                'oidc-provider revoked the whole grant on reuse'
            );
            assert.equal((await introspect(rotated.refreshToken)).active, false, "Bridgekeeper's current refresh token died with it");

            const after = await call('PUT', `/api/v1/connections/${id}/refresh`);
            assert.equal(after.status, 200, after.text);
            assert.equal(after.body.status, 'expired');
            assert.match(after.body.lastError, /invalid_grant/);
            const del = await call('DELETE', `/api/v1/connections/${id}`);
            assert.equal(del.status, 204, del.text);
        })
    );

    test(
        'connect again, then DELETE: revoked at the upstream, gone here',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const { to } = await connect();
            const id = to.searchParams.get('connectionId');
            first.deleted = id;
            assert.equal(to.searchParams.get('status'), 'active');
            assert.notEqual(id, first.id);
            const code = events('grant.success', e => e.grantType === 'authorization_code').at(-1);
            assert.notEqual(code.grantId, first.grantId, 'a new grant upstream');
            assert.equal((await introspect(code.refreshToken)).active, true);
            const revokedBefore = events('grant.revoked').length;

            const mark = upstream.requests.length;
            const del = await call('DELETE', `/api/v1/connections/${id}`);
            assert.equal(del.status, 204, del.text);
            assert.deepEqual(fromBridgekeeper(mark), ['POST /token/revocation -> 200 [client_id client_secret token token_type_hint]']);
            // The upstream saw the revocation: this connection's refresh token, by this client, and the grant with it.
            assert.ok(
                events('refresh_token.destroyed').some(e => e.token === code.refreshToken),
                'the refresh token was revoked at the upstream'
            );
            const revoked = events('grant.revoked').slice(revokedBefore);
            assert.deepEqual(
                revoked.map(e => [e.route, e.clientId, e.grantId]),
                [['revocation', upstream.clientId, code.grantId]]
            );
            assert.equal((await introspect(code.refreshToken)).active, false);

            const get = await call('GET', `/api/v1/connections/${id}`);
            assert.equal(get.status, 404, get.text);
            const again = await call('DELETE', `/api/v1/connections/${id}`);
            assert.equal(again.status, 404);
            const list = await call('GET', '/api/v1/connections');
            assert.deepEqual(
                list.body.connections.map(x => x.id),
                [first.id]
            );
        })
    );

    test(
        "the account's audit log has each status change, refresh and deletion",
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            assert.ok(first.id && first.replayed && first.deleted, 'the earlier tests ran');
            const rows = async kind => {
                const res = await call('GET', `/api/v1/audit?kind=${kind}`);
                assert.equal(res.status, 200, res.text);
                return res.body.events;
            };
            // Audit rows are written in the background: give them a moment.
            let changed = [];
            for (let i = 0; i < 20 && changed.length < 2; i++) {
                changed = await rows('connection.status_changed');
                if (changed.length < 2) await sleep(100);
            }
            assert.deepEqual(
                changed.map(e => [e.target, e.details.from, e.details.to]).sort(),
                [
                    [first.id, 'active', 'expired'],
                    [first.replayed, 'active', 'expired']
                ].sort()
            );
            const refreshed = await rows('connection.refreshed');
            assert.deepEqual(
                refreshed.filter(e => e.target === first.id).map(e => e.outcome),
                ['success', 'success', 'success', 'failure']
            );
            const deleted = await rows('connection.deleted');
            assert.deepEqual(
                deleted.map(e => [e.target, e.details.provider, e.details.upstream]).sort(),
                [
                    [first.replayed, PROVIDER, 'revoked'],
                    [first.deleted, PROVIDER, 'revoked']
                ].sort()
            );
            const created = await rows('connection.created');
            assert.equal(created.length, 3, 'three connections were made (the denied attempt stored nothing)');
        })
    );

    test(
        'no credential in any answer or log line',
        { timeout: TEST_TIMEOUT_MS },
        withLogs(async () => {
            const secrets = [upstream.clientSecret];
            for (const e of events('grant.success')) secrets.push(e.accessToken, e.refreshToken);
            assert.ok(secrets.length >= 9, `tokens were issued: ${secrets.length}`);
            const seen = answers.join('\n');
            const logs = bk.logTail();
            for (const s of secrets.filter(Boolean)) {
                assert.ok(!seen.includes(s), 'an API answer carries an upstream credential');
                assert.ok(!logs.includes(s), 'the server log carries an upstream credential');
            }
        })
    );
});
