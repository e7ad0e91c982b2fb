// Bridgekeeper's side: the binary started (../../ts/lib/server.mjs) with the
// upstream as an operator-added `oauth2` provider, a person signed up through
// its pages, and an app (a public client registered by DCR) holding a token
// with scope `connections` obtained through authorize + PKCE + consent.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';

import { startServer } from '../../ts/lib/server.mjs';
import { extractForm } from '../../ts/lib/browser.mjs';
import { rawRequest } from './agent.mjs';

/** Starts the binary with `env` added to this process's environment (server.mjs passes it on). */
export async function startBridgekeeper(env, options = {}) {
    const saved = Object.fromEntries(Object.keys(env).map(k => [k, process.env[k]]));
    Object.assign(process.env, env);
    try {
        return await startServer(options);
    } finally {
        for (const [k, v] of Object.entries(saved)) {
            if (v === undefined) delete process.env[k];
            else process.env[k] = v;
        }
    }
}

/** The configuration that adds the upstream as provider `id` (environment form of connections.providers.<id>). */
export function providerEnv(id, upstream, { scopes, authorizeParams }) {
    const p = `BRIDGEKEEPER_CONNECTIONS__PROVIDERS__${id.toUpperCase()}__`;
    const toml = v => JSON.stringify(v);
    return {
        [`${p}NAME`]: 'Acme (oidc-provider)',
        [`${p}DESCRIPTION`]: 'A real OpenID Connect provider run by the test',
        [`${p}AUTH`]: 'oauth2',
        [`${p}OAUTH2__AUTHORIZE_URL`]: upstream.endpoints.authorize,
        [`${p}OAUTH2__TOKEN_URL`]: upstream.endpoints.token,
        [`${p}OAUTH2__REVOKE_URL`]: upstream.endpoints.revoke,
        [`${p}OAUTH2__USERINFO_URL`]: upstream.endpoints.userinfo,
        [`${p}OAUTH2__SCOPES`]: `[${scopes.map(toml).join(', ')}]`,
        [`${p}OAUTH2__AUTHORIZE_PARAMS`]: `{${Object.entries(authorizeParams)
            .map(([k, v]) => `${k}=${toml(v)}`)
            .join(', ')}}`,
        [`${p}OAUTH2__PKCE`]: 'true',
        [`${p}OAUTH2__CLIENT_ID`]: upstream.clientId,
        [`${p}OAUTH2__CLIENT_SECRET`]: upstream.clientSecret,
        BRIDGEKEEPER_CONNECTIONS__ALLOW_PRIVATE_ADDRESSES: 'true',
        BRIDGEKEEPER_CONNECTIONS__EXTRA_CA_FILE: upstream.caFile
    };
}

/** A JSON API call: {status, headers, body (parsed JSON or undefined), text}. */
export async function api(issuer, method, path, { token, json } = {}) {
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    let body;
    if (json !== undefined) {
        headers['Content-Type'] = 'application/json';
        body = JSON.stringify(json);
    }
    const res = await rawRequest(new URL(path, issuer), { method, headers, body });
    let parsed;
    try {
        parsed = res.text ? JSON.parse(res.text) : undefined;
    } catch {
        parsed = undefined;
    }
    return { status: res.status, headers: res.headers, body: parsed, text: res.text };
}

const s256 = v => createHash('sha256').update(v).digest('base64url');

/**
 * Signs the person up in `agent` (Bridgekeeper's pages), registers an app by
 * DCR with `redirectUri`, and runs authorize → consent → token for `scope`.
 * Returns {clientId, accessToken, scope}.
 */
export async function signUpAndAuthorizeApp(agent, issuer, { email, password, redirectUri, scope }) {
    const at = p => new URL(p, issuer).href;

    // The person signs up, then signs in.
    const signupPage = await agent.get(at('/signup'));
    assert.equal(signupPage.status, 200, `GET /signup: ${signupPage.text}`);
    const signup = extractForm(signupPage.text, '/signup');
    const signedUp = await agent.post(at('/signup'), {
        csrf_token: signup.hidden.get('csrf_token'),
        next: signup.hidden.get('next') ?? '/',
        email,
        password
    });
    assert.equal(signedUp.status, 303, `POST /signup: ${signedUp.status} ${signedUp.text}`);
    const loginPage = await agent.get(signedUp.location);
    if (loginPage.status === 200 && loginPage.text.includes('action="/login"')) {
        const login = extractForm(loginPage.text, '/login');
        const loggedIn = await agent.post(at('/login'), {
            csrf_token: login.hidden.get('csrf_token'),
            next: login.hidden.get('next') ?? '/',
            email,
            password
        });
        assert.equal(loggedIn.status, 303, `POST /login: ${loggedIn.status} ${loggedIn.text}`);
    }
    return authorizeApp(agent, issuer, { redirectUri, scope });
}

/**
 * For a person signed in in `agent`: registers an app by DCR with `redirectUri` and runs authorize
 * → consent → token for `scope`, with `extra` authorize parameters (`provider_permissions`, …).
 * Returns {clientId, accessToken, scope}.
 */
export async function authorizeApp(agent, issuer, { redirectUri, scope, extra = {} }) {
    const at = p => new URL(p, issuer).href;

    // The app registers itself (RFC 7591) ...
    const reg = await api(issuer, 'POST', '/api/v1/auth/register', {
        json: {
            client_name: 'Acme connector app (e2e)',
            redirect_uris: [redirectUri],
            grant_types: ['authorization_code', 'refresh_token'],
            response_types: ['code'],
            token_endpoint_auth_method: 'none',
            scope
        }
    });
    assert.equal(reg.status, 201, `DCR: ${reg.status} ${reg.text}`);
    const clientId = reg.body.client_id;

    // ... and sends the person to authorize it (PKCE S256).
    const verifier = randomBytes(32).toString('base64url');
    const state = randomBytes(16).toString('base64url');
    const authorize = new URL('/api/v1/auth/authorize', issuer);
    for (const [k, v] of Object.entries({
        response_type: 'code',
        client_id: clientId,
        redirect_uri: redirectUri,
        scope,
        state,
        code_challenge: s256(verifier),
        code_challenge_method: 'S256',
        ...extra
    }))
        authorize.searchParams.set(k, v);
    let res = await agent.get(authorize.href);
    assert.equal(res.status, 303, `authorize (signed in): ${res.status} ${res.text}`);
    assert.equal(new URL(res.location).pathname, '/consent', `authorize goes to the consent page: ${res.location}`);
    const consentPage = await agent.get(res.location);
    assert.equal(consentPage.status, 200, `GET /consent: ${consentPage.text}`);
    const consent = extractForm(consentPage.text, '/consent');
    const fields = new Map(consent.hidden);
    fields.set('decision', 'approve');
    res = await agent.post(at('/consent'), fields);
    assert.equal(res.status, 303, `POST /consent: ${res.status} ${res.text}`);
    const back = new URL(res.location);
    assert.equal(back.origin + back.pathname, redirectUri, 'consent returns to the app');
    assert.equal(back.searchParams.get('state'), state);
    const code = back.searchParams.get('code');
    assert.ok(code, `a code: ${back}`);

    const tokenRes = await rawRequest(new URL('/api/v1/auth/token', issuer), {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
        body: new URLSearchParams({
            grant_type: 'authorization_code',
            code,
            redirect_uri: redirectUri,
            client_id: clientId,
            code_verifier: verifier
        }).toString()
    });
    assert.equal(tokenRes.status, 200, `token: ${tokenRes.text}`);
    const tokens = tokenRes.json();
    for (const s of scope.split(' ')) assert.ok(tokens.scope.split(' ').includes(s), `the token carries ${s}: ${tokens.scope}`);
    return { clientId, accessToken: tokens.access_token, scope: tokens.scope };
}
