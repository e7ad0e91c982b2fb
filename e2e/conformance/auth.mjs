// Obtains an MCP access token from a fresh Bridgekeeper the way a real user and client would:
// sign-up and sign-in pages, dynamic client registration (public client), authorization code + PKCE with the
// consent page, token endpoint. The server has no shortcut for this, on purpose.
import { createHash, randomBytes } from 'node:crypto';

import { Browser, extractForm } from '../ts/lib/browser.mjs';

export const SCOPE = 'universal-mcp-read-write';
// Nothing listens here: the code is read from the Location of the consent page's 303.
const REDIRECT_URI = 'http://127.0.0.1:9/cb';

const b64url = buf => buf.toString('base64url');
const rand = () => randomBytes(6).toString('hex');

function expectStatus(step, res, status) {
    if (res.status !== status) {
        throw new Error(`${step}: expected HTTP ${status}, got ${res.status}${res.location ? ` (Location: ${res.location})` : ''}:\n${res.text.slice(0, 2000)}`);
    }
}

async function postForm(url, form) {
    const res = await fetch(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
        body: new URLSearchParams(form).toString()
    });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`POST ${url} (${form.grant_type}): HTTP ${res.status}: ${text}`);
    return JSON.parse(text);
}

/**
 * Signs up a new account, registers a public client and runs the authorization-code flow.
 *
 * @returns {Promise<{accessToken: string, refreshToken?: string, expiresIn?: number, clientId: string, obtainedAt: number}>}
 */
export async function obtainToken(issuer) {
    const browser = new Browser(issuer);
    const email = `conformance-${rand()}@example.com`;
    const password = `pw-${rand()}-conformance`;

    // 1. Sign up, then sign in (sign-up does not sign in: its answer must not tell whether the email
    // was registered already).
    const page = await browser.get('/signup');
    expectStatus('GET /signup', page, 200);
    const signupForm = extractForm(page.text, '/signup');
    const signedUp = await browser.post('/signup', {
        csrf_token: signupForm.hidden.get('csrf_token') ?? '',
        next: signupForm.hidden.get('next') ?? '',
        email,
        password
    });
    expectStatus('POST /signup', signedUp, 303);
    const loginPage = await browser.get(signedUp.location);
    expectStatus('GET /login', loginPage, 200);
    const loginForm = extractForm(loginPage.text, '/login');
    const signedIn = await browser.post('/login', {
        csrf_token: loginForm.hidden.get('csrf_token') ?? '',
        next: loginForm.hidden.get('next') ?? '/',
        email,
        password
    });
    expectStatus('POST /login', signedIn, 303);

    // 2. Register a public client (RFC 7591).
    const reg = await fetch(`${issuer}/api/v1/auth/register`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify({
            client_name: 'conformance',
            redirect_uris: [REDIRECT_URI],
            token_endpoint_auth_method: 'none',
            grant_types: ['authorization_code', 'refresh_token'],
            scope: SCOPE
        })
    });
    const regText = await reg.text();
    if (reg.status !== 201 && reg.status !== 200) throw new Error(`POST /api/v1/auth/register: HTTP ${reg.status}: ${regText}`);
    const clientId = JSON.parse(regText).client_id;
    if (!clientId) throw new Error(`registration response has no client_id: ${regText}`);

    // 3. Authorization request with PKCE (S256).
    const verifier = b64url(randomBytes(32));
    const challenge = b64url(createHash('sha256').update(verifier).digest());
    const state = rand();
    const authorize = new URL('/api/v1/auth/authorize', issuer);
    for (const [k, v] of Object.entries({
        response_type: 'code',
        client_id: clientId,
        redirect_uri: REDIRECT_URI,
        scope: SCOPE,
        state,
        code_challenge: challenge,
        code_challenge_method: 'S256'
    })) {
        authorize.searchParams.set(k, v);
    }
    const toConsent = await browser.get(authorize.href);
    expectStatus('GET authorize (signed in)', toConsent, 303);
    if (new URL(toConsent.location).pathname !== '/consent') {
        throw new Error(`GET authorize: expected a redirect to /consent, got ${toConsent.location}`);
    }

    // 4. Consent: approve.
    const consentPage = await browser.get(toConsent.location);
    expectStatus('GET /consent', consentPage, 200);
    const consent = extractForm(consentPage.text, '/consent');
    const fields = new Map(consent.hidden);
    fields.set('decision', 'approve');
    const decided = await browser.post('/consent', fields);
    expectStatus('POST /consent', decided, 303);
    const callback = new URL(decided.location);
    if (callback.origin + callback.pathname !== REDIRECT_URI) throw new Error(`consent redirected to ${decided.location}, not ${REDIRECT_URI}`);
    if (callback.searchParams.get('state') !== state) throw new Error(`callback state mismatch: ${decided.location}`);
    const code = callback.searchParams.get('code');
    if (!code) throw new Error(`callback has no code: ${decided.location}`);

    // 5. Token request.
    const tokens = await postForm(`${issuer}/api/v1/auth/token`, {
        grant_type: 'authorization_code',
        code,
        redirect_uri: REDIRECT_URI,
        client_id: clientId,
        code_verifier: verifier
    });
    if (!tokens.access_token) throw new Error(`token response has no access_token: ${JSON.stringify(tokens)}`);
    return {
        accessToken: tokens.access_token,
        refreshToken: tokens.refresh_token,
        expiresIn: tokens.expires_in,
        clientId,
        obtainedAt: Date.now()
    };
}

/** The refresh_token grant (the refresh token rotates). Returns the same shape as obtainToken. */
export async function refreshToken(issuer, previous) {
    if (!previous.refreshToken) throw new Error('no refresh token to refresh with');
    const tokens = await postForm(`${issuer}/api/v1/auth/token`, {
        grant_type: 'refresh_token',
        refresh_token: previous.refreshToken,
        client_id: previous.clientId
    });
    return {
        accessToken: tokens.access_token,
        refreshToken: tokens.refresh_token ?? previous.refreshToken,
        expiresIn: tokens.expires_in,
        clientId: previous.clientId,
        obtainedAt: Date.now()
    };
}
