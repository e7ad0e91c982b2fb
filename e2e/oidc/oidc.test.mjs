// End-to-end: Bridgekeeper as an OpenID Provider, with openid-client (v6, the
// certified relying-party library for Node) as a confidential white-label
// client. openid-client does discovery, builds the authorization URL (PKCE
// S256, nonce, state), checks the callback (state, RFC 9207 iss), redeems the
// code with client_secret_basic, validates the id_token (RS256 via JWKS, iss,
// aud, nonce, at_hash, exp/iat), calls userinfo and refreshes. This test only
// plays the person at the browser (sign-up, login, consent over HTTP).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';

import * as client from 'openid-client';

import { Browser, extractForm, pathAndQuery } from '../ts/lib/browser.mjs';
import {
    REDIRECT_URI,
    createOperatorToken,
    createWhitelabelClient,
    signUp,
    startServer,
    withServerLog
} from './lib/bridgekeeper.mjs';

const SCOPE = 'openid profile email account universal-mcp-read-write';
const TEST_TIMEOUT_MS = 60_000;
const rand = () => randomBytes(6).toString('hex');

function sorted(searchParams) {
    return [...searchParams].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** OIDC Core §3.1.3.6 at_hash for RS256: base64url(left half of SHA-256(access_token)). */
function atHash(accessToken) {
    const digest = createHash('sha256').update(accessToken, 'ascii').digest();
    return digest.subarray(0, digest.length / 2).toString('base64url');
}

/**
 * openid-client discovery for the white-label client: client_secret_basic, plain
 * http allowed (loopback issuer), id_token signatures checked against the JWKS
 * (openid-client skips that by default for id_tokens from the token endpoint,
 * trusting TLS instead: enableNonRepudiationChecks turns it on), and auth_time
 * required in every id_token.
 */
async function discover(app, fetchImpl, secret = app.clientSecret) {
    const config = await client.discovery(
        new URL(app.issuer),
        app.clientId,
        { client_secret: secret, require_auth_time: true },
        client.ClientSecretBasic(secret),
        {
            execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks],
            ...(fetchImpl ? { [client.customFetch]: fetchImpl } : {})
        }
    );
    if (fetchImpl) config[client.customFetch] = fetchImpl;
    return config;
}

function decodeJwtPart(jwt, i) {
    return JSON.parse(Buffer.from(jwt.split('.')[i], 'base64url').toString('utf8'));
}

/**
 * A fetch for openid-client that records every exchange (method, URL, status,
 * Authorization scheme and form body), so the test can see what the library sent.
 */
function recordingFetch(log) {
    return async (url, init = {}) => {
        const response = await fetch(url, init);
        const headers = new Headers(init.headers);
        const body = init.body === undefined || init.body === null ? undefined : String(init.body);
        log.push({
            method: (init.method ?? 'GET').toUpperCase(),
            url: String(url),
            status: response.status,
            authorization: headers.get('authorization') ?? undefined,
            form: body && !body.startsWith('{') ? Object.fromEntries(new URLSearchParams(body)) : undefined
        });
        return response;
    };
}

/**
 * Plays the user agent from `authorizationUrl` to the 303 back to the
 * redirect URI: authorize → /login → authorize → /consent → approve.
 * Returns the callback URL.
 */
async function authorizeInBrowser(issuer, authorizationUrl, { email, password }) {
    const browser = new Browser(issuer);

    const first = await browser.get(authorizationUrl);
    assert.equal(first.status, 303, `GET authorize (signed out) should be a 303; got ${first.status}: ${first.text}`);
    const toLogin = new URL(first.location);
    assert.equal(toLogin.origin + toLogin.pathname, `${issuer}/login`, `signed-out authorize goes to /login (got ${first.location})`);
    const next = toLogin.searchParams.get('next');
    assert.equal(next, pathAndQuery(authorizationUrl), 'login next= is the path and query of the authorize request');

    const loginPage = await browser.get(first.location);
    assert.equal(loginPage.status, 200, `GET /login: ${loginPage.text}`);
    const login = extractForm(loginPage.text, '/login');
    assert.equal(login.hidden.get('next'), next, 'login form carries next unchanged');
    const loggedIn = await browser.post('/login', {
        csrf_token: login.hidden.get('csrf_token'),
        next: login.hidden.get('next'),
        email,
        password
    });
    assert.equal(loggedIn.status, 303, `POST /login should be a 303; got ${loggedIn.status}: ${loggedIn.text}`);
    assert.equal(loggedIn.location, new URL(next, issuer).href, 'login redirects to next');

    const second = await browser.get(loggedIn.location);
    assert.equal(second.status, 303, `GET authorize (signed in) should be a 303 to /consent; got ${second.status}: ${second.text}`);
    const toConsent = new URL(second.location);
    assert.equal(toConsent.origin + toConsent.pathname, `${issuer}/consent`, `signed-in authorize goes to /consent (got ${second.location})`);
    assert.deepEqual(sorted(toConsent.searchParams), sorted(authorizationUrl.searchParams), '/consent gets the same parameters');

    const consentPage = await browser.get(second.location);
    assert.equal(consentPage.status, 200, `GET /consent: ${consentPage.text}`);
    const consent = extractForm(consentPage.text, '/consent');
    for (const [name, value] of authorizationUrl.searchParams) {
        assert.equal(consent.hidden.get(name), value, `consent form carries authorization parameter ${name}`);
    }
    const fields = new Map(consent.hidden);
    fields.set('decision', 'approve');
    const decided = await browser.post('/consent', fields);
    assert.equal(decided.status, 303, `POST /consent should be a 303; got ${decided.status}: ${decided.text}`);
    const callback = new URL(decided.location);
    assert.equal(callback.origin + callback.pathname, REDIRECT_URI, `consent redirects to the redirect URI (got ${decided.location})`);
    return callback;
}

describe('Bridgekeeper as an OpenID Provider, with openid-client', () => {
    let server;
    let operator;
    let app;
    const email = `oidc-${rand()}@example.com`;
    const password = `pw-${rand()}-correct horse`;

    before(async () => {
        server = await startServer();
        await withServerLog(server, async () => {
            operator = await createOperatorToken(server.dataDir);
            app = await createWhitelabelClient(server.issuer, operator.token, { type: 'confidential' });
            app.issuer = server.issuer;
            await signUp(server.issuer, email, password);
        });
    });

    after(async () => {
        await server?.stop();
    });

    test(
        'authorization code flow (PKCE, nonce, state, iss) → id_token → userinfo → refresh rotation',
        { timeout: TEST_TIMEOUT_MS },
        () =>
            withServerLog(server, async () => {
                const { issuer } = server;
                const log = [];

                // Discovery: /.well-known/openid-configuration, issuer checked against ours.
                const config = await discover(app, recordingFetch(log));
                const meta = config.serverMetadata();
                assert.equal(new URL(meta.issuer).href, new URL(issuer).href, 'discovered issuer');
                assert.ok(
                    log.some(e => e.method === 'GET' && new URL(e.url).pathname === '/.well-known/openid-configuration' && e.status === 200),
                    `discovery used /.well-known/openid-configuration:\n${JSON.stringify(log, null, 2)}`
                );
                assert.ok(meta.userinfo_endpoint, 'userinfo_endpoint advertised');
                assert.ok(meta.jwks_uri, 'jwks_uri advertised');
                assert.deepEqual(meta.id_token_signing_alg_values_supported, ['RS256']);
                assert.equal(meta.authorization_response_iss_parameter_supported, true);
                assert.ok(meta.code_challenge_methods_supported?.includes('S256'), 'S256 supported');
                assert.ok(meta.token_endpoint_auth_methods_supported?.includes('client_secret_basic'), 'client_secret_basic supported');
                assert.ok(meta.scopes_supported?.includes('openid'), 'openid scope advertised');
                assert.ok(meta.response_types_supported?.includes('code'), 'response_type code supported');

                // The authorization request, built by openid-client.
                const codeVerifier = client.randomPKCECodeVerifier();
                const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
                const nonce = client.randomNonce();
                const state = client.randomState();
                const authorizationUrl = client.buildAuthorizationUrl(config, {
                    redirect_uri: REDIRECT_URI,
                    scope: SCOPE,
                    code_challenge: codeChallenge,
                    code_challenge_method: 'S256',
                    nonce,
                    state
                });
                assert.equal(authorizationUrl.origin + authorizationUrl.pathname, meta.authorization_endpoint);

                const callback = await authorizeInBrowser(issuer, authorizationUrl, { email, password });
                assert.ok(callback.searchParams.get('code'), `callback carries a code: ${callback}`);
                assert.equal(callback.searchParams.get('state'), state, 'callback carries our state');
                assert.equal(callback.searchParams.get('iss'), meta.issuer, 'callback carries iss (RFC 9207)');
                assert.equal(callback.searchParams.get('error'), null, `no error in callback: ${callback}`);

                // Code → tokens. openid-client checks state and iss on the callback, sends
                // the PKCE verifier, and validates the id_token (signature via JWKS, iss,
                // aud, nonce, at_hash, exp, iat, auth_time when max_age/require_auth_time).
                const tokens = await client.authorizationCodeGrant(config, callback, {
                    pkceCodeVerifier: codeVerifier,
                    expectedNonce: nonce,
                    expectedState: state,
                    idTokenExpected: true
                });
                const tokenCall = log.find(e => e.url === meta.token_endpoint && e.form?.grant_type === 'authorization_code');
                assert.ok(tokenCall, `a token request with grant_type=authorization_code:\n${JSON.stringify(log, null, 2)}`);
                assert.equal(tokenCall.status, 200);
                assert.match(tokenCall.authorization ?? '', /^Basic /, 'client_secret_basic: Authorization: Basic');
                assert.equal(tokenCall.form.client_secret, undefined, 'no client_secret in the body with client_secret_basic');
                assert.equal(tokenCall.form.code_verifier, codeVerifier, 'PKCE verifier sent');
                assert.ok(
                    log.some(e => e.url === meta.jwks_uri && e.status === 200),
                    `JWKS fetched to verify the id_token signature:\n${JSON.stringify(log, null, 2)}`
                );

                assert.equal(tokens.token_type.toLowerCase(), 'bearer');
                assert.ok(tokens.access_token, 'access_token');
                assert.ok(tokens.refresh_token, 'refresh_token');
                assert.ok(tokens.id_token, 'id_token');
                assert.ok(tokens.expiresIn() > 0, 'expires_in');
                assert.deepEqual(
                    (tokens.scope ?? '').split(' ').sort(),
                    SCOPE.split(' ').sort(),
                    `granted scope: ${tokens.scope}`
                );

                const header = decodeJwtPart(tokens.id_token, 0);
                assert.equal(header.alg, 'RS256', `id_token alg: ${JSON.stringify(header)}`);
                assert.ok(header.kid, 'id_token header carries kid');
                const jwks = await (await fetch(meta.jwks_uri)).json();
                assert.ok(jwks.keys.some(k => k.kid === header.kid && k.kty === 'RSA'), 'id_token kid is in the JWKS');

                const claims = tokens.claims();
                assert.ok(claims, 'openid-client returned validated id_token claims');
                assert.match(claims.sub, /^acc_/, `sub is the account id: ${claims.sub}`);
                assert.equal(claims.iss, meta.issuer);
                assert.equal([].concat(claims.aud).includes(app.clientId), true, `aud contains the client id: ${claims.aud}`);
                assert.equal(claims.nonce, nonce);
                assert.equal(claims.email, email);
                assert.equal(claims.email_verified, false, 'email_verified is false (emails are not verified)');
                // openid-client (oauth4webapi) does not check at_hash in the code flow: check it here
                // (OIDC Core 3.1.3.8: left half of SHA-256 of the access token, base64url).
                assert.equal(claims.at_hash, atHash(tokens.access_token), 'at_hash matches the access token');
                assert.equal(typeof claims.auth_time, 'number', 'auth_time present');
                const now = Math.floor(Date.now() / 1000);
                assert.ok(claims.auth_time <= now + 5 && claims.auth_time > now - 300, `auth_time is recent: ${claims.auth_time}`);
                assert.ok(claims.exp > now && claims.iat <= now + 5, `exp/iat sane: ${claims.iat}..${claims.exp}`);

                // userinfo with the access token: same subject, email present.
                const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
                assert.equal(userinfo.sub, claims.sub);
                assert.equal(userinfo.email, email);

                // A state mismatch on the callback is caught by the client (the server's
                // state round-trips verbatim, so only a tampered one fails).
                await assert.rejects(
                    client.authorizationCodeGrant(config, callback, {
                        pkceCodeVerifier: codeVerifier,
                        expectedState: client.randomState()
                    }),
                    err => /state/i.test(`${err?.message} ${err?.cause?.message ?? ''}`),
                    'openid-client rejects a callback whose state is not ours (before calling the token endpoint)'
                );

                // RFC 9207: the server advertises iss in authorization responses, so openid-client
                // requires it and refuses a callback whose iss is another issuer's (mix-up attack).
                const mixedUp = new URL(callback);
                mixedUp.searchParams.set('iss', 'https://attacker.example');
                await assert.rejects(
                    client.authorizationCodeGrant(config, mixedUp, { pkceCodeVerifier: codeVerifier, expectedState: state }),
                    err => /iss/i.test(`${err?.message} ${err?.cause?.message ?? ''} ${JSON.stringify(err?.cause ?? '')}`),
                    'openid-client rejects a callback whose iss is not the issuer'
                );
                const noIss = new URL(callback);
                noIss.searchParams.delete('iss');
                await assert.rejects(
                    client.authorizationCodeGrant(config, noIss, { pkceCodeVerifier: codeVerifier, expectedState: state }),
                    err => /iss/i.test(`${err?.message} ${err?.cause?.message ?? ''} ${JSON.stringify(err?.cause ?? '')}`),
                    'openid-client requires iss on the callback (the server advertises it)'
                );

                // Refresh (confidential client, client_secret_basic): a new access token and a rotated refresh token.
                const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
                const refreshCall = log.findLast(e => e.url === meta.token_endpoint && e.form?.grant_type === 'refresh_token');
                assert.ok(refreshCall, 'a token request with grant_type=refresh_token');
                assert.equal(refreshCall.status, 200);
                assert.match(refreshCall.authorization ?? '', /^Basic /, 'refresh uses client_secret_basic');
                assert.ok(refreshed.access_token, 'refreshed access_token');
                assert.notEqual(refreshed.access_token, tokens.access_token, 'a new access token');
                assert.ok(refreshed.refresh_token, 'refresh response carries a new refresh token');
                assert.notEqual(refreshed.refresh_token, tokens.refresh_token, 'the refresh token rotated');
                if (refreshed.id_token) {
                    // If an id_token comes back on refresh, openid-client has validated it; same subject.
                    assert.equal(refreshed.claims()?.sub, claims.sub, 'refreshed id_token has the same sub');
                }

                const userinfo2 = await client.fetchUserInfo(config, refreshed.access_token, claims.sub);
                assert.equal(userinfo2.sub, claims.sub, 'userinfo with the refreshed access token');

                // The new refresh token works again (and rotates again).
                const refreshed2 = await client.refreshTokenGrant(config, refreshed.refresh_token);
                assert.ok(refreshed2.refresh_token && refreshed2.refresh_token !== refreshed.refresh_token, 'second rotation');

                // The rotated-away refresh token is refused.
                await assert.rejects(
                    client.refreshTokenGrant(config, tokens.refresh_token),
                    err => err?.error === 'invalid_grant' || /invalid_grant/.test(String(err)),
                    'the old refresh token is refused after rotation (invalid_grant)'
                );

                // The code is single use: a second redemption is refused, and (RFC 6749 §4.1.2)
                // revokes what the first one issued.
                await assert.rejects(
                    client.authorizationCodeGrant(config, callback, {
                        pkceCodeVerifier: codeVerifier,
                        expectedNonce: nonce,
                        expectedState: state
                    }),
                    err => err?.error === 'invalid_grant' || /invalid_grant/.test(String(err)),
                    'a redeemed code is refused (invalid_grant)'
                );
                await assert.rejects(
                    client.fetchUserInfo(config, refreshed2.access_token, claims.sub),
                    err => err?.status === 401 || /invalid_token/.test(JSON.stringify(err?.cause ?? '')),
                    'after a code replay, the access tokens of that grant no longer work at userinfo'
                );
                await assert.rejects(
                    client.refreshTokenGrant(config, refreshed2.refresh_token),
                    err => err?.error === 'invalid_grant' || /invalid_grant/.test(String(err)),
                    'after a code replay, the refresh token of that grant is refused'
                );
            })
    );

    test('a forged id_token signature is rejected by openid-client (signature really checked via JWKS)', { timeout: TEST_TIMEOUT_MS }, () =>
        withServerLog(server, async () => {
            // Corrupts the signature of the id_token in the token response, as a man in the middle would.
            let tampered = false;
            const tamperingFetch = async (url, init) => {
                const response = await fetch(url, init);
                const body = init?.body === undefined ? '' : String(init.body);
                if (!body.includes('grant_type=authorization_code') || response.status !== 200) return response;
                const json = await response.json();
                const [h, p, sig] = json.id_token.split('.');
                const bytes = Buffer.from(sig, 'base64url');
                bytes[bytes.length - 1] ^= 0x01;
                json.id_token = `${h}.${p}.${bytes.toString('base64url')}`;
                tampered = true;
                return new Response(JSON.stringify(json), { status: 200, headers: response.headers });
            };
            const config = await discover(app, tamperingFetch);
            const codeVerifier = client.randomPKCECodeVerifier();
            const nonce = client.randomNonce();
            const state = client.randomState();
            const authorizationUrl = client.buildAuthorizationUrl(config, {
                redirect_uri: REDIRECT_URI,
                scope: 'openid email',
                code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
                code_challenge_method: 'S256',
                nonce,
                state
            });
            const callback = await authorizeInBrowser(server.issuer, authorizationUrl, { email, password });
            await assert.rejects(
                client.authorizationCodeGrant(config, callback, {
                    pkceCodeVerifier: codeVerifier,
                    expectedNonce: nonce,
                    expectedState: state,
                    idTokenExpected: true
                }),
                err => /signature/i.test(`${err?.message} ${err?.cause?.message ?? ''}`),
                'a corrupted id_token signature fails verification'
            );
            assert.ok(tampered, 'the token response was intercepted and its id_token corrupted');
        })
    );

    test('the client secret is required: a wrong secret is refused at the token endpoint', { timeout: TEST_TIMEOUT_MS }, () =>
        withServerLog(server, async () => {
            const config = await discover(app, undefined, 'bks_wrong');
            await assert.rejects(
                client.refreshTokenGrant(config, 'bkr_not-a-real-token'),
                err => err?.error === 'invalid_client' || err?.status === 401 || /invalid_client/.test(String(err)),
                'a wrong client secret is invalid_client'
            );
        })
    );
});
