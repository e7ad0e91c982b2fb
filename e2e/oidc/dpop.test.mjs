// End-to-end: DPoP (RFC 9449) against the Bridgekeeper binary, with two third-party
// implementations. openid-client 6.9.0 (on oauth4webapi) plays a confidential white-label client
// with a DPoP key: it signs a proof for every token request and every resource request itself,
// and handles `use_dpop_nonce` (RFC 9449 §8, §9) itself. jose 6.2.18 makes proofs by hand (ES256,
// `typ: dpop+jwt`, the public JWK in the header) for what a well-behaved client never sends:
// replayed proofs, proofs for another URL or method, without `ath`, by another key, and a stolen
// DPoP-bound token used without the key. This test plays the person at the browser and checks
// what went over the wire, and that no token or proof reached the server's log.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';

import * as client from 'openid-client';
import * as jose from 'jose';

import { Browser, extractForm } from '../ts/lib/browser.mjs';
import {
    REDIRECT_URI,
    createOperatorToken,
    createWhitelabelClient,
    signUp,
    startServer,
    withServerLog
} from './lib/bridgekeeper.mjs';

const SCOPE = 'openid email universal-mcp-read-write';
const TEST_TIMEOUT_MS = 60_000;
const TOKEN_PATH = '/api/v1/auth/token';
const rand = () => randomBytes(6).toString('hex');

/** The MCP request every /mcp call here sends: tools/list, one JSON answer. */
const TOOLS_LIST = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} });
const mcpHeaders = () =>
    new Headers({
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'x-response-format': 'json',
        'mcp-protocol-version': '2025-11-25'
    });

/** RFC 9449 §4.2 `ath`: base64url(SHA-256(access token)). */
const ath = token => createHash('sha256').update(token, 'ascii').digest('base64url');

/** Header and claims of a JWT (not verified). */
function jwt(token) {
    return { header: jose.decodeProtectedHeader(token), claims: jose.decodeJwt(token) };
}

/** Parses `DPoP error="…", error_description="…", algs="…"` (the first challenge of its scheme). */
function challenge(www, scheme = 'DPoP') {
    if (!www) return undefined;
    const at = www.search(new RegExp(`(^|,\\s*)${scheme}\\s`, 'i'));
    if (at < 0) return undefined;
    const params = {};
    const re = /([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g;
    const rest = www.slice(at).replace(new RegExp(`^,?\\s*${scheme}\\s+`, 'i'), '');
    let m;
    while ((m = re.exec(rest)) !== null) {
        if (params[m[1]] !== undefined) break; // the next challenge's parameters
        params[m[1]] = m[2];
    }
    return params;
}

/**
 * A fetch for openid-client that records each exchange: method, URL, status, the Authorization
 * scheme, the DPoP proof it sent (decoded), and the answer's WWW-Authenticate, DPoP-Nonce and
 * error body. Raw tokens and proofs stay in `secrets` (for the log check), not in the record.
 */
function wire(log, secrets) {
    return async (url, init = {}) => {
        const response = await fetch(url, init);
        const headers = new Headers(init.headers);
        const proof = headers.get('dpop') ?? undefined;
        const authorization = headers.get('authorization') ?? undefined;
        if (proof) secrets.add(proof);
        const body = init.body === undefined || init.body === null ? undefined : String(init.body);
        const form = body && !body.startsWith('{') ? Object.fromEntries(new URLSearchParams(body)) : undefined;
        let error;
        if (response.status >= 400) {
            const text = await response.clone().text();
            try {
                error = JSON.parse(text);
            } catch {
                error = text;
            }
        }
        log.push({
            method: (init.method ?? 'GET').toUpperCase(),
            path: new URL(String(url)).pathname,
            url: String(url),
            status: response.status,
            scheme: authorization?.split(' ')[0],
            grantType: form?.grant_type,
            proof: proof ? jwt(proof) : undefined,
            accessTokenHash: authorization && /^dpop /i.test(authorization) ? ath(authorization.slice(5)) : undefined,
            www: response.headers.get('www-authenticate') ?? undefined,
            dpopNonce: response.headers.get('dpop-nonce') ?? undefined,
            error
        });
        return response;
    };
}

const describeWire = log =>
    JSON.stringify(
        log.map(({ proof, ...e }) => ({ ...e, proof: proof && { header: { ...proof.header, jwk: '…' }, claims: proof.claims } })),
        null,
        2
    );

/** openid-client discovery for the confidential white-label client (client_secret_basic, plain http). */
async function discover(app, fetchImpl) {
    const config = await client.discovery(
        new URL(app.issuer),
        app.clientId,
        { client_secret: app.clientSecret },
        client.ClientSecretBasic(app.clientSecret),
        { execute: [client.allowInsecureRequests], [client.customFetch]: fetchImpl }
    );
    config[client.customFetch] = fetchImpl;
    return config;
}

/**
 * Plays the person's browser from the authorization URL to the redirect back: login, then the
 * consent page (approved). Returns the callback URL.
 */
async function authorizeInBrowser(issuer, authorizationUrl, { email, password }) {
    const browser = new Browser(issuer);
    const first = await browser.get(authorizationUrl);
    assert.equal(first.status, 303, `GET authorize (signed out): ${first.status} ${first.text}`);
    const loginPage = await browser.get(first.location);
    assert.equal(loginPage.status, 200, `GET /login: ${loginPage.text}`);
    const login = extractForm(loginPage.text, '/login');
    const loggedIn = await browser.post('/login', {
        csrf_token: login.hidden.get('csrf_token'),
        next: login.hidden.get('next'),
        email,
        password
    });
    assert.equal(loggedIn.status, 303, `POST /login: ${loggedIn.status} ${loggedIn.text}`);
    let next = await browser.get(loggedIn.location);
    assert.equal(next.status, 303, `GET authorize (signed in): ${next.status} ${next.text}`);
    if (new URL(next.location, issuer).pathname === '/consent') {
        const consentPage = await browser.get(next.location);
        assert.equal(consentPage.status, 200, `GET /consent: ${consentPage.text}`);
        const fields = new Map(extractForm(consentPage.text, '/consent').hidden);
        fields.set('decision', 'approve');
        next = await browser.post('/consent', fields);
        assert.equal(next.status, 303, `POST /consent: ${next.status} ${next.text}`);
    }
    const callback = new URL(next.location);
    assert.equal(callback.origin + callback.pathname, REDIRECT_URI, `back at the redirect URI: ${next.location}`);
    return callback;
}

/** The authorization-code flow (PKCE, state) run by openid-client, the code redeemed with `dpop`. */
async function codeFlow(ctx, config, dpop) {
    const codeVerifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const authorizationUrl = client.buildAuthorizationUrl(config, {
        redirect_uri: REDIRECT_URI,
        scope: SCOPE,
        code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
        code_challenge_method: 'S256',
        state
    });
    const callback = await authorizeInBrowser(ctx.server.issuer, authorizationUrl, ctx.person);
    const tokens = await client.authorizationCodeGrant(
        config,
        callback,
        { pkceCodeVerifier: codeVerifier, expectedState: state },
        undefined,
        dpop ? { DPoP: dpop } : undefined
    );
    for (const t of [tokens.access_token, tokens.refresh_token, tokens.id_token]) if (t) ctx.secrets.add(t);
    return tokens;
}

/** A client's DPoP key: openid-client's own generator (ES256, WebCrypto), public JWK and thumbprint. */
async function dpopKey() {
    const keyPair = await client.randomDPoPKeyPair('ES256');
    const jwk = await jose.exportJWK(keyPair.publicKey);
    return { keyPair, jwk, jkt: await jose.calculateJwkThumbprint(jwk, 'sha256') };
}

/**
 * A DPoP proof made by hand with jose: ES256, `typ: dpop+jwt`, the public JWK in the header;
 * claims jti, htm, htu, iat, and `ath` when an access token is given.
 */
async function handProof(key, { htm, htu, accessToken, nonce, jti = jose.base64url.encode(randomBytes(16)), iat } = {}) {
    const claims = { jti, htm, htu, ...(accessToken ? { ath: ath(accessToken) } : {}), ...(nonce ? { nonce } : {}) };
    return new jose.SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: key.jwk })
        .setIssuedAt(iat)
        .sign(key.keyPair.privateKey);
}

/** POST /mcp tools/list with `authorization` and, when given, one DPoP proof (raw fetch). */
async function mcpCall(issuer, authorization, proof) {
    const headers = mcpHeaders();
    if (authorization) headers.set('authorization', authorization);
    if (proof) headers.set('dpop', proof);
    const res = await fetch(new URL('/mcp', issuer), { method: 'POST', headers, body: TOOLS_LIST });
    const text = await res.text();
    return { status: res.status, www: res.headers.get('www-authenticate') ?? '', nonce: res.headers.get('dpop-nonce'), text };
}

/** A refresh grant by hand (client_secret_basic, as openid-client authenticates), with an optional proof. */
async function refreshByHand(ctx, refreshToken, proof) {
    const basic = Buffer.from(
        `${encodeURIComponent(ctx.app.clientId)}:${encodeURIComponent(ctx.app.clientSecret)}`
    ).toString('base64');
    const headers = { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${basic}` };
    if (proof) headers.dpop = proof;
    const res = await fetch(new URL(TOKEN_PATH, ctx.server.issuer), {
        method: 'POST',
        headers,
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken })
    });
    const body = await res.json();
    for (const t of [body.access_token, body.refresh_token, body.id_token]) if (t) ctx.secrets.add(t);
    return { status: res.status, body, nonce: res.headers.get('dpop-nonce') };
}

/** A refused DPoP request: 401 and a `DPoP` challenge with `error` (and the algorithms). */
function assertDpopRefusal(res, error, says, what) {
    assert.equal(res.status, 401, `${what}: 401; got ${res.status} ${res.text}`);
    const c = challenge(res.www);
    assert.ok(c, `${what}: a DPoP challenge in WWW-Authenticate; got ${res.www}`);
    assert.equal(c.error, error, `${what}: DPoP error="${error}"; got ${res.www}`);
    assert.match(c.algs ?? '', /\bES256\b/, `${what}: the challenge names the accepted algorithms; got ${res.www}`);
    if (says) assert.match(`${c.error_description} ${res.text}`, says, `${what}: the refusal says why; got ${res.www} ${res.text}`);
}

/** The whole log so far (the "listening" line still in the tail) holds none of `secrets`. */
function assertNothingLogged(server, secrets) {
    const logged = server.logTail();
    assert.match(logged, /"message":"listening"/, 'the log tail still reaches back to start-up (the check covers the whole log)');
    let checked = 0;
    for (const secret of secrets) {
        if (!secret) continue;
        checked += 1;
        assert.ok(!logged.includes(secret), `a token or proof was logged: ${secret.slice(0, 12)}…`);
        // A JWT's signature alone identifies it: not even that part.
        const sig = secret.split('.')[2];
        if (sig && sig.length >= 40) assert.ok(!logged.includes(sig), `a token's or proof's signature was logged: ${sig.slice(0, 12)}…`);
    }
    assert.ok(!/\b(DPoP|Bearer) ey[A-Za-z0-9_-]{20,}/.test(logged), 'no Authorization header value in the log');
    return checked;
}

/** Starts a server with `env` added to its environment (the server takes process.env as it is). */
async function startServerWith(env) {
    const saved = Object.fromEntries(Object.keys(env).map(k => [k, process.env[k]]));
    Object.assign(process.env, env);
    try {
        return await startServer();
    } finally {
        for (const [k, v] of Object.entries(saved)) {
            if (v === undefined) delete process.env[k];
            else process.env[k] = v;
        }
    }
}

/** A server, an operator-made confidential white-label client and a person signed up. */
async function setUp(ctx, env = {}) {
    ctx.server = await startServerWith(env);
    await withServerLog(ctx.server, async () => {
        const operator = await createOperatorToken(ctx.server.dataDir);
        ctx.app = await createWhitelabelClient(ctx.server.issuer, operator.token, { type: 'confidential' });
        ctx.app.issuer = ctx.server.issuer;
        ctx.secrets.add(operator.token);
        ctx.secrets.add(ctx.app.clientSecret);
        await signUp(ctx.server.issuer, ctx.person.email, ctx.person.password);
    });
}

function newContext() {
    return { server: undefined, app: undefined, secrets: new Set(), person: { email: `dpop-${rand()}@example.com`, password: `pw-${rand()}-correct horse` } };
}

describe('DPoP with openid-client and hand-made jose proofs', () => {
    const ctx = newContext();

    before(() => setUp(ctx));
    after(() => ctx.server?.stop());

    test('the metadata advertises DPoP (authorization server and protected resource)', { timeout: TEST_TIMEOUT_MS }, () =>
        withServerLog(ctx.server, async () => {
            const config = await discover(ctx.app, fetch);
            const algs = config.serverMetadata().dpop_signing_alg_values_supported;
            assert.ok(Array.isArray(algs) && algs.includes('ES256'), `dpop_signing_alg_values_supported: ${algs}`);
            assert.ok(!algs.some(a => /^(HS|none)/i.test(a)), `no symmetric or none algorithm: ${algs}`);
            const prm = await (await fetch(new URL('/.well-known/oauth-protected-resource/mcp', ctx.server.issuer))).json();
            assert.ok(prm.dpop_signing_alg_values_supported?.includes('ES256'), `protected-resource metadata: ${JSON.stringify(prm)}`);
        })
    );

    test(
        'openid-client: code flow with a DPoP key → DPoP-bound tokens → /mcp, REST tools, userinfo → refresh',
        { timeout: TEST_TIMEOUT_MS },
        () =>
            withServerLog(ctx.server, async () => {
                const { issuer } = ctx.server;
                const log = [];
                const config = await discover(ctx.app, wire(log, ctx.secrets));
                const key = await dpopKey();
                const dpop = client.getDPoPHandle(config, key.keyPair);
                assert.equal(await dpop.calculateThumbprint(), key.jkt, "openid-client's thumbprint of the key is jose's");

                // The code redeemed with a proof: a DPoP-bound access token.
                const tokens = await codeFlow(ctx, config, dpop);
                assert.equal(tokens.token_type, 'dpop', 'token_type DPoP (openid-client lower-cases it)');
                const access = jwt(tokens.access_token).claims;
                assert.equal(access.cnf?.jkt, key.jkt, "cnf.jkt is the RFC 7638 thumbprint of the client's key");
                assert.equal(access.aud, `${issuer}/mcp`, 'meant for /mcp');
                const codeCall = log.find(e => e.path === TOKEN_PATH && e.grantType === 'authorization_code');
                assert.equal(codeCall?.status, 200, describeWire(log));
                assert.equal(codeCall.scheme, 'Basic', 'client_secret_basic alongside the proof');
                const p = codeCall.proof;
                assert.ok(p, `openid-client sent a DPoP header with the code:\n${describeWire(log)}`);
                assert.equal(p.header.typ, 'dpop+jwt');
                assert.equal(p.header.alg, 'ES256');
                assert.deepEqual(
                    { kty: p.header.jwk.kty, crv: p.header.jwk.crv, x: p.header.jwk.x, y: p.header.jwk.y },
                    { kty: 'EC', crv: 'P-256', x: key.jwk.x, y: key.jwk.y },
                    'the proof carries the public key'
                );
                assert.equal(p.header.jwk.d, undefined, 'and never the private part');
                assert.equal(p.claims.htm, 'POST');
                assert.equal(p.claims.htu, `${issuer}${TOKEN_PATH}`);
                assert.equal(p.claims.ath, undefined, 'no ath at the token endpoint');
                assert.ok(p.claims.jti && Math.abs(p.claims.iat - Date.now() / 1000) < 60, 'jti and a current iat');

                // /mcp: openid-client sends Authorization: DPoP and a proof for POST /mcp with ath.
                const mcp = await client.fetchProtectedResource(config, tokens.access_token, new URL('/mcp', issuer), 'POST', TOOLS_LIST, mcpHeaders(), { DPoP: dpop });
                const mcpText = await mcp.text();
                assert.equal(mcp.status, 200, mcpText);
                const listed = JSON.parse(mcpText).result?.tools ?? [];
                assert.ok(listed.some(t => t.name === 'whoami'), `tools/list lists whoami: ${mcpText.slice(0, 300)}`);
                const mcpCallLog = log.findLast(e => e.path === '/mcp');
                assert.equal(mcpCallLog.scheme, 'DPoP', 'Authorization: DPoP <token>');
                assert.equal(mcpCallLog.proof.claims.htm, 'POST');
                assert.equal(mcpCallLog.proof.claims.htu, `${issuer}/mcp`);
                assert.equal(mcpCallLog.proof.claims.ath, ath(tokens.access_token), 'ath is the hash of the token sent');
                assert.notEqual(mcpCallLog.proof.claims.jti, p.claims.jti, 'a fresh proof per request');

                // The REST tools face and userinfo take the same token with a proof for their URL.
                const rest = await client.fetchProtectedResource(config, tokens.access_token, new URL('/api/v1/providers/bridgekeeper/tools', issuer), 'GET', undefined, undefined, { DPoP: dpop });
                const restText = await rest.text();
                assert.equal(rest.status, 200, `GET /api/v1/providers/bridgekeeper/tools: ${restText}`);
                assert.ok(Array.isArray(JSON.parse(restText).tools), restText);
                assert.equal(log.findLast(e => e.path.startsWith('/api/v1/providers/')).proof.claims.htm, 'GET');
                const userinfo = await client.fetchUserInfo(config, tokens.access_token, access.sub, { DPoP: dpop });
                assert.equal(userinfo.email, ctx.person.email);
                const uiCall = log.findLast(e => e.path === '/api/v1/auth/userinfo');
                assert.equal(uiCall.scheme, 'DPoP');
                assert.equal(uiCall.proof.claims.htu, `${issuer}/api/v1/auth/userinfo`);

                // The same token without the proof (openid-client falls back to Bearer): refused, and
                // openid-client reads our DPoP challenge.
                await assert.rejects(
                    client.fetchProtectedResource(config, tokens.access_token, new URL('/mcp', issuer), 'POST', TOOLS_LIST, mcpHeaders()),
                    err => {
                        assert.equal(err.code, 'OAUTH_WWW_AUTHENTICATE_CHALLENGE', `${err}`);
                        const c = err.cause.find(ch => ch.scheme === 'dpop');
                        assert.equal(c?.parameters.error, 'invalid_token', JSON.stringify(err.cause));
                        return true;
                    },
                    'a DPoP-bound token as a bearer token is refused with a DPoP challenge'
                );
                assert.equal(log.findLast(e => e.path === '/mcp').scheme, 'Bearer');

                // Refresh with the handle: a proof at the token endpoint, a new DPoP-bound token.
                const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token, undefined, { DPoP: dpop });
                for (const t of [refreshed.access_token, refreshed.refresh_token, refreshed.id_token]) if (t) ctx.secrets.add(t);
                const refreshCall = log.findLast(e => e.path === TOKEN_PATH && e.grantType === 'refresh_token');
                assert.equal(refreshCall.status, 200);
                assert.equal(refreshCall.proof?.claims.htu, `${issuer}${TOKEN_PATH}`, 'the refresh carried a proof');
                assert.equal(refreshed.token_type, 'dpop');
                assert.notEqual(refreshed.access_token, tokens.access_token);
                assert.ok(refreshed.refresh_token && refreshed.refresh_token !== tokens.refresh_token, 'rotated');
                assert.equal(jwt(refreshed.access_token).claims.cnf?.jkt, key.jkt, 'still bound to the same key');
                const again = await client.fetchProtectedResource(config, refreshed.access_token, new URL('/mcp', issuer), 'POST', TOOLS_LIST, mcpHeaders(), { DPoP: dpop });
                assert.equal(again.status, 200, await again.text());

                // Nothing in this exchange asked for a nonce (not required by default).
                assert.ok(log.every(e => !e.dpopNonce), `no DPoP-Nonce when nonces are not required:\n${describeWire(log)}`);
            })
    );

    test(
        'a stolen DPoP-bound access token is useless without the key (Bearer, DPoP without a proof, a thief\'s proof)',
        { timeout: TEST_TIMEOUT_MS },
        () =>
            withServerLog(ctx.server, async () => {
                const { issuer } = ctx.server;
                const config = await discover(ctx.app, wire([], ctx.secrets));
                const key = await dpopKey();
                const tokens = await codeFlow(ctx, config, client.getDPoPHandle(config, key.keyPair));
                const stolen = tokens.access_token;
                const mcpUrl = `${issuer}/mcp`;

                let res = await mcpCall(issuer, `Bearer ${stolen}`);
                assertDpopRefusal(res, 'invalid_token', /DPoP-bound/, '/mcp, the bound token as Bearer');

                res = await mcpCall(issuer, `DPoP ${stolen}`);
                assertDpopRefusal(res, 'invalid_dpop_proof', /DPoP header/, '/mcp, Authorization: DPoP without a proof');

                const thief = await dpopKey();
                const thiefProof = await handProof(thief, { htm: 'POST', htu: mcpUrl, accessToken: stolen });
                ctx.secrets.add(thiefProof);
                res = await mcpCall(issuer, `DPoP ${stolen}`, thiefProof);
                // The token is fine; the proof is not by the key it is bound to (RFC 9449 §4.3 check 12).
                assertDpopRefusal(res, 'invalid_dpop_proof', /another key/, "/mcp, a valid proof by the thief's own key");

                // The REST tools face and userinfo refuse it as a bearer token too.
                for (const path of ['/api/v1/providers/bridgekeeper/tools', '/api/v1/auth/userinfo']) {
                    const r = await fetch(new URL(path, issuer), { headers: { authorization: `Bearer ${stolen}` } });
                    const out = { status: r.status, www: r.headers.get('www-authenticate') ?? '', text: await r.text() };
                    assertDpopRefusal(out, 'invalid_token', /DPoP-bound/, `${path}, the bound token as Bearer`);
                }

                // The key holder still gets in with a proof of its own.
                const own = await handProof(key, { htm: 'POST', htu: mcpUrl, accessToken: stolen });
                ctx.secrets.add(own);
                res = await mcpCall(issuer, `DPoP ${stolen}`, own);
                assert.equal(res.status, 200, `the key holder's hand-made proof: ${res.status} ${res.text}`);
            })
    );

    test(
        'hand-made proofs (jose) are refused when replayed, for another URL or method, without ath or for another token',
        { timeout: TEST_TIMEOUT_MS },
        () =>
            withServerLog(ctx.server, async () => {
                const { issuer } = ctx.server;
                const config = await discover(ctx.app, wire([], ctx.secrets));
                const key = await dpopKey();
                const tokens = await codeFlow(ctx, config, client.getDPoPHandle(config, key.keyPair));
                const token = tokens.access_token;
                const auth = `DPoP ${token}`;
                const mcpUrl = `${issuer}/mcp`;
                const proof = async claims => {
                    const p = await handProof(key, { htm: 'POST', htu: mcpUrl, accessToken: token, ...claims });
                    ctx.secrets.add(p);
                    return p;
                };

                // A correct hand-made proof works once; the same proof again is a replay.
                const once = await proof();
                let res = await mcpCall(issuer, auth, once);
                assert.equal(res.status, 200, `a correct hand-made proof: ${res.status} ${res.text}`);
                res = await mcpCall(issuer, auth, once);
                assertDpopRefusal(res, 'invalid_dpop_proof', /already used/, 'the same proof replayed');

                const cases = [
                    ['wrong htu (another path)', { htu: `${issuer}/api/v1/auth/userinfo` }, /another URL/],
                    ['wrong htu (another port)', { htu: `http://127.0.0.1:9/mcp` }, /another URL/],
                    ['wrong htm (GET)', { htm: 'GET' }, /another method/],
                    ['no ath', { accessToken: undefined }, /lacks the claim ath/],
                    ['ath of another token', { accessToken: 'another.access.token' }, /ath is not the hash/],
                    ['iat an hour ago', { iat: Math.floor(Date.now() / 1000) - 3600 }, /too long ago/]
                ];
                for (const [what, claims, says] of cases) {
                    res = await mcpCall(issuer, auth, await proof(claims));
                    assertDpopRefusal(res, 'invalid_dpop_proof', says, what);
                }

                // A proof by another key than the one the token is bound to.
                const other = await dpopKey();
                const foreign = await handProof(other, { htm: 'POST', htu: mcpUrl, accessToken: token });
                ctx.secrets.add(foreign);
                res = await mcpCall(issuer, auth, foreign);
                assertDpopRefusal(res, 'invalid_dpop_proof', /another key/, 'a proof by another key');

                // A proof signed by another key than the JWK in its header (a forged signature).
                const [h, c] = (await proof()).split('.');
                const sig = foreign.split('.')[2];
                res = await mcpCall(issuer, auth, `${h}.${c}.${sig}`);
                assertDpopRefusal(res, 'invalid_dpop_proof', /signature/, 'a proof whose signature is not by its jwk');

                // None of the refusals spent anything: a fresh proof still works.
                res = await mcpCall(issuer, auth, await proof());
                assert.equal(res.status, 200, `after the refusals, a fresh proof: ${res.status} ${res.text}`);
            })
    );

    test(
        'a DPoP-bound refresh token without its key: 400 invalid_dpop_proof, and still good for the key holder',
        { timeout: TEST_TIMEOUT_MS },
        () =>
            withServerLog(ctx.server, async () => {
                const { issuer } = ctx.server;
                const log = [];
                const config = await discover(ctx.app, wire(log, ctx.secrets));
                const key = await dpopKey();
                const dpop = client.getDPoPHandle(config, key.keyPair);
                const tokens = await codeFlow(ctx, config, dpop);
                const stolen = tokens.refresh_token;

                let res = await refreshByHand(ctx, stolen);
                assert.equal(res.status, 400, JSON.stringify(res.body));
                assert.equal(res.body.error, 'invalid_dpop_proof', `without a proof: ${JSON.stringify(res.body)}`);
                assert.equal(res.body.access_token, undefined);

                const thief = await dpopKey();
                const thiefProof = await handProof(thief, { htm: 'POST', htu: `${issuer}${TOKEN_PATH}` });
                ctx.secrets.add(thiefProof);
                res = await refreshByHand(ctx, stolen, thiefProof);
                assert.equal(res.status, 400, JSON.stringify(res.body));
                assert.equal(res.body.error, 'invalid_dpop_proof', `a thief's proof: ${JSON.stringify(res.body)}`);
                assert.match(res.body.error_description ?? '', /another key/);

                const elsewhere = await handProof(key, { htm: 'POST', htu: `${issuer}/api/v1/auth/revoke` });
                ctx.secrets.add(elsewhere);
                res = await refreshByHand(ctx, stolen, elsewhere);
                assert.equal(res.status, 400, JSON.stringify(res.body));
                assert.equal(res.body.error, 'invalid_dpop_proof', `the holder's proof for another endpoint: ${JSON.stringify(res.body)}`);

                // The attempts burned nothing (no replay detection, no revocation): openid-client refreshes.
                const refreshed = await client.refreshTokenGrant(config, stolen, undefined, { DPoP: dpop });
                for (const t of [refreshed.access_token, refreshed.refresh_token, refreshed.id_token]) if (t) ctx.secrets.add(t);
                assert.equal(refreshed.token_type, 'dpop');
                assert.equal(jwt(refreshed.access_token).claims.cnf?.jkt, key.jkt);
                // And the token it replaced is spent.
                res = await refreshByHand(ctx, stolen, await handProof(key, { htm: 'POST', htu: `${issuer}${TOKEN_PATH}` }));
                assert.equal(res.status, 400);
                assert.equal(res.body.error, 'invalid_grant', `the rotated-away token: ${JSON.stringify(res.body)}`);
            })
    );

    // RFC 9449 §5: a refresh token issued to a public client that presented a valid proof MUST be
    // bound to that key: a grant begun without DPoP and refreshed with a proof is bound from then on.
    test(
        'a public client that starts using DPoP at a refresh gets a refresh token bound to its key',
        { timeout: TEST_TIMEOUT_MS },
        () =>
            withServerLog(ctx.server, async () => {
                const { issuer } = ctx.server;
                const operator = await createOperatorToken(ctx.server.dataDir, 'e2e-public');
                ctx.secrets.add(operator.token);
                const app = await createWhitelabelClient(issuer, operator.token, { type: 'public' });
                const config = await client.discovery(new URL(issuer), app.clientId, {}, client.None(), {
                    execute: [client.allowInsecureRequests]
                });
                const bearer = await codeFlow(ctx, config, undefined);
                assert.equal(bearer.token_type, 'bearer', 'the code redeemed without a proof: a bearer grant');
                const key = await dpopKey();
                const upgraded = await client.refreshTokenGrant(config, bearer.refresh_token, undefined, {
                    DPoP: client.getDPoPHandle(config, key.keyPair)
                });
                for (const t of [upgraded.access_token, upgraded.refresh_token, upgraded.id_token]) if (t) ctx.secrets.add(t);
                assert.equal(upgraded.token_type, 'dpop');
                assert.equal(jwt(upgraded.access_token).claims.cnf?.jkt, key.jkt);
                const res = await fetch(new URL(TOKEN_PATH, issuer), {
                    method: 'POST',
                    headers: { 'content-type': 'application/x-www-form-urlencoded' },
                    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: upgraded.refresh_token, client_id: app.clientId })
                });
                const body = await res.json();
                for (const t of [body.access_token, body.refresh_token, body.id_token]) if (t) ctx.secrets.add(t);
                assert.equal(res.status, 400, `the new refresh token without a proof: ${res.status} token_type=${body.token_type} error=${body.error}`);
                assert.equal(body.error, 'invalid_dpop_proof');
            })
    );

    test('no token, secret or proof in the server log', { timeout: TEST_TIMEOUT_MS }, () =>
        withServerLog(ctx.server, async () => {
            const checked = assertNothingLogged(ctx.server, ctx.secrets);
            assert.ok(checked > 20, `the earlier tests collected tokens and proofs to look for (${checked})`);
        })
    );
});

describe('DPoP server nonces (BRIDGEKEEPER_DPOP__REQUIRE_NONCE=true): openid-client retries by itself', () => {
    const ctx = newContext();

    before(() => setUp(ctx, { BRIDGEKEEPER_DPOP__REQUIRE_NONCE: 'true' }));
    after(() => ctx.server?.stop());

    test(
        'use_dpop_nonce at the token endpoint, /mcp, userinfo and refresh: one retry each, with the nonce given',
        { timeout: TEST_TIMEOUT_MS },
        () =>
            withServerLog(ctx.server, async () => {
                const { issuer } = ctx.server;
                const log = [];
                const config = await discover(ctx.app, wire(log, ctx.secrets));
                const key = await dpopKey();

                // The code: the first token request lacks a nonce (400 use_dpop_nonce + DPoP-Nonce),
                // openid-client repeats it with that nonce (the code was not spent by the refusal).
                const tokens = await codeFlow(ctx, config, client.getDPoPHandle(config, key.keyPair));
                assert.equal(tokens.token_type, 'dpop');
                assert.equal(jwt(tokens.access_token).claims.cnf?.jkt, key.jkt);
                const codeCalls = log.filter(e => e.path === TOKEN_PATH && e.grantType === 'authorization_code');
                assert.equal(codeCalls.length, 2, `one refusal, one retry:\n${describeWire(log)}`);
                const [refused, retried] = codeCalls;
                assert.equal(refused.status, 400);
                assert.equal(refused.error?.error, 'use_dpop_nonce', describeWire(log));
                assert.ok(refused.dpopNonce, 'the refusal hands out a DPoP-Nonce');
                assert.equal(refused.proof.claims.nonce, undefined, 'the first proof had no nonce');
                assert.equal(retried.status, 200);
                assert.equal(retried.proof.claims.nonce, refused.dpopNonce, 'the retry carries the nonce given');
                assert.notEqual(retried.proof.claims.jti, refused.proof.claims.jti, 'in a new proof');
                assert.ok(retried.dpopNonce, 'the token answer hands out the current nonce too');

                // A new handle with the same key knows no nonce: /mcp answers 401 with a DPoP
                // challenge use_dpop_nonce and a DPoP-Nonce; openid-client retries with it.
                const fresh = () => client.getDPoPHandle(config, key.keyPair);
                const retries = async (path, call) => {
                    const from = log.length;
                    const out = await call();
                    const calls = log.slice(from).filter(e => e.path === path);
                    assert.equal(calls.length, 2, `${path}: one refusal, one retry:\n${describeWire(log.slice(from))}`);
                    const [first, second] = calls;
                    assert.ok(first.dpopNonce, `${path}: the refusal carries DPoP-Nonce`);
                    assert.equal(first.proof.claims.nonce, undefined);
                    assert.equal(second.proof.claims.nonce, first.dpopNonce, `${path}: the retry carries the nonce`);
                    return { out, first, second };
                };

                const mcp = await retries('/mcp', () =>
                    client.fetchProtectedResource(config, tokens.access_token, new URL('/mcp', issuer), 'POST', TOOLS_LIST, mcpHeaders(), { DPoP: fresh() })
                );
                assert.equal(mcp.first.status, 401);
                assert.equal(challenge(mcp.first.www)?.error, 'use_dpop_nonce', `the /mcp challenge: ${mcp.first.www}`);
                assert.equal(mcp.second.status, 200);
                assert.equal(mcp.out.status, 200);
                assert.ok(JSON.parse(await mcp.out.text()).result?.tools?.length > 0);

                const ui = await retries('/api/v1/auth/userinfo', () =>
                    client.fetchUserInfo(config, tokens.access_token, client.skipSubjectCheck, { DPoP: fresh() })
                );
                assert.equal(ui.first.status, 401);
                assert.equal(challenge(ui.first.www)?.error, 'use_dpop_nonce', `the userinfo challenge: ${ui.first.www}`);
                assert.equal(ui.out.email, ctx.person.email);

                const rt = await retries(TOKEN_PATH, () => client.refreshTokenGrant(config, tokens.refresh_token, undefined, { DPoP: fresh() }));
                assert.equal(rt.first.status, 400);
                assert.equal(rt.first.error?.error, 'use_dpop_nonce');
                assert.equal(rt.second.status, 200);
                for (const t of [rt.out.access_token, rt.out.refresh_token, rt.out.id_token]) if (t) ctx.secrets.add(t);
                assert.equal(rt.out.token_type, 'dpop');

                // A handle that already holds the nonce (from the token answer) gets in at once.
                const warm = fresh();
                await client.refreshTokenGrant(config, rt.out.refresh_token, undefined, { DPoP: warm }).then(t => {
                    for (const x of [t.access_token, t.refresh_token, t.id_token]) if (x) ctx.secrets.add(x);
                    return t;
                });
                const from = log.length;
                const direct = await client.fetchProtectedResource(config, rt.out.access_token, new URL('/mcp', issuer), 'POST', TOOLS_LIST, mcpHeaders(), { DPoP: warm });
                assert.equal(direct.status, 200);
                assert.equal(log.slice(from).filter(e => e.path === '/mcp').length, 1, 'no retry with a cached nonce');

                // By hand: no nonce, or a made-up one, is use_dpop_nonce; the server's nonce works.
                const token = rt.out.access_token;
                const by = async nonce => {
                    const p = await handProof(key, { htm: 'POST', htu: `${issuer}/mcp`, accessToken: token, nonce });
                    ctx.secrets.add(p);
                    return mcpCall(issuer, `DPoP ${token}`, p);
                };
                let res = await by(undefined);
                assertDpopRefusal(res, 'use_dpop_nonce', /nonce/, 'a hand-made proof without a nonce');
                assert.ok(res.nonce, 'with a DPoP-Nonce to use');
                const nonce = res.nonce;
                res = await by('made-up-nonce');
                assertDpopRefusal(res, 'use_dpop_nonce', /nonce/, 'a hand-made proof with a made-up nonce');
                res = await by(nonce);
                assert.equal(res.status, 200, `with the server's nonce: ${res.status} ${res.text}`);
            })
    );

    test('no token, secret or proof in the server log', { timeout: TEST_TIMEOUT_MS }, () =>
        withServerLog(ctx.server, async () => {
            const checked = assertNothingLogged(ctx.server, ctx.secrets);
            assert.ok(checked > 10, `the earlier test collected tokens and proofs to look for (${checked})`);
        })
    );
});
