// Gets an access token from a running Bridgekeeper the way a real public client
// does: sign-up page, discovery, dynamic client registration
// (token_endpoint_auth_method "none"), authorization request with PKCE S256,
// login + consent pages driven over HTTP with a cookie jar, and the code
// exchange at the token endpoint.
//
//   node get-token.mjs <issuer> [scope]
//
// Prints one JSON object on stdout: {access_token, scope, email, client_id}.
// Progress and errors go to stderr; any unexpected response exits non-zero.
import { createHash, randomBytes } from 'node:crypto';

const REDIRECT_URI = 'http://127.0.0.1:53682/callback'; // loopback; nothing listens there

const [issuer, scope = 'universal-mcp-read-write'] = process.argv.slice(2);
if (!issuer) {
    console.error('usage: node get-token.mjs <issuer> [scope]');
    process.exit(2);
}
const mcpUrl = new URL('/mcp', issuer).href;
const rand = () => randomBytes(6).toString('hex');
const b64url = buf => Buffer.from(buf).toString('base64url');

function fail(message) {
    throw new Error(message);
}

function expect(cond, message) {
    if (!cond) fail(message);
}

function htmlUnescape(s) {
    return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|amp|quot|apos|lt|gt);/g, (_, ref) => {
        const named = { amp: '&', quot: '"', apos: "'", lt: '<', gt: '>' }[ref];
        if (named) return named;
        return String.fromCodePoint(ref[1] === 'x' || ref[1] === 'X' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10));
    });
}

function attributes(tag) {
    const attrs = {};
    const body = tag.replace(/^<\s*[a-zA-Z]+/, '').replace(/\/?>$/, '');
    const re = /([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
    let m;
    while ((m = re.exec(body)) !== null) attrs[m[1].toLowerCase()] = htmlUnescape(m[2] ?? m[3] ?? m[4] ?? '');
    return attrs;
}

/** The hidden and visible named inputs of `<form action="<action>">`. */
function extractForm(html, action) {
    for (const formHtml of html.match(/<form\b[^>]*>[\s\S]*?<\/form>/gi) ?? []) {
        const attrs = attributes(formHtml.match(/^<form\b[^>]*>/i)[0]);
        if (attrs.action !== action) continue;
        const inputs = new Map();
        const hidden = new Map();
        for (const tag of formHtml.match(/<input\b[^>]*>/gi) ?? []) {
            const a = attributes(tag);
            if (!a.name) continue;
            inputs.set(a.name, a.value ?? '');
            if ((a.type ?? '').toLowerCase() === 'hidden') hidden.set(a.name, a.value ?? '');
        }
        return { method: (attrs.method ?? 'get').toLowerCase(), inputs, hidden };
    }
    fail(`no <form action="${action}"> in page:\n${html}`);
}

/** fetch with a cookie jar for the issuer's origin and no automatic redirects. */
class Browser {
    constructor(origin) {
        this.origin = new URL(origin).origin;
        this.cookies = new Map();
    }

    async request(url, { method = 'GET', form } = {}) {
        const target = new URL(url, this.origin);
        const headers = { Accept: 'text/html' };
        if (this.cookies.size && target.origin === this.origin) {
            headers.Cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
        }
        let body;
        if (form) {
            headers['Content-Type'] = 'application/x-www-form-urlencoded';
            body = new URLSearchParams(form instanceof Map ? [...form] : form).toString();
        }
        const res = await fetch(target, { method, headers, body, redirect: 'manual' });
        for (const c of res.headers.getSetCookie()) {
            const [pair, ...attrs] = c.split(';');
            const eq = pair.indexOf('=');
            if (eq < 0) continue;
            const name = pair.slice(0, eq).trim();
            if (attrs.some(a => /^\s*max-age\s*=\s*(0|-\d+)\s*$/i.test(a))) this.cookies.delete(name);
            else this.cookies.set(name, pair.slice(eq + 1).trim());
        }
        const loc = res.headers.get('location');
        return { status: res.status, location: loc === null ? undefined : new URL(loc, target).href, text: await res.text() };
    }
}

async function main() {
    const email = `e2e-inspector-${rand()}@example.com`;
    const password = `pw-${rand()}-correct horse`;
    // 1. Sign-up (it does not sign in: the authorization step below signs in).
    const signupBrowser = new Browser(issuer);
    const signupPage = await signupBrowser.request('/signup');
    expect(signupPage.status === 200, `GET /signup: ${signupPage.status} ${signupPage.text}`);
    const signup = extractForm(signupPage.text, '/signup');
    const created = await signupBrowser.request('/signup', {
        method: 'POST',
        form: { csrf_token: signup.hidden.get('csrf_token'), next: signup.hidden.get('next') ?? '', email, password }
    });
    expect(created.status === 303, `POST /signup should be a 303; got ${created.status}: ${created.text}`);

    // 2. Discovery: protected-resource metadata names the authorization server.
    const prmRes = await fetch(new URL('/.well-known/oauth-protected-resource/mcp', issuer));
    expect(prmRes.ok, `protected-resource metadata: ${prmRes.status}`);
    const prm = await prmRes.json();
    const asmRes = await fetch(new URL('/.well-known/oauth-authorization-server', prm.authorization_servers?.[0] ?? issuer));
    expect(asmRes.ok, `authorization-server metadata: ${asmRes.status}`);
    const asm = await asmRes.json();
    expect((asm.code_challenge_methods_supported ?? []).includes('S256'), 'S256 PKCE is supported');

    // 3. Dynamic client registration, public client.
    const regRes = await fetch(asm.registration_endpoint, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify({
            client_name: 'Bridgekeeper e2e (MCP Inspector CLI)',
            redirect_uris: [REDIRECT_URI],
            grant_types: ['authorization_code', 'refresh_token'],
            response_types: ['code'],
            token_endpoint_auth_method: 'none',
            scope
        })
    });
    const regText = await regRes.text();
    expect(regRes.status === 201, `DCR should be 201; got ${regRes.status}: ${regText}`);
    const client = JSON.parse(regText);
    expect(client.client_id, `DCR returned no client_id: ${regText}`);

    // 4. Authorization request with PKCE S256.
    const verifier = b64url(randomBytes(48));
    const challenge = b64url(createHash('sha256').update(verifier).digest());
    const state = b64url(randomBytes(16));
    const authUrl = new URL(asm.authorization_endpoint);
    authUrl.search = new URLSearchParams({
        response_type: 'code',
        client_id: client.client_id,
        redirect_uri: REDIRECT_URI,
        scope,
        state,
        code_challenge: challenge,
        code_challenge_method: 'S256',
        resource: mcpUrl
    }).toString();

    // 5. A fresh, signed-out browser: authorize → /login → authorize → /consent.
    const browser = new Browser(issuer);
    const first = await browser.request(authUrl);
    expect(first.status === 303 && new URL(first.location).pathname === '/login', `authorize (signed out): ${first.status} ${first.location ?? first.text}`);
    const loginPage = await browser.request(first.location);
    expect(loginPage.status === 200, `GET /login: ${loginPage.status}`);
    const login = extractForm(loginPage.text, '/login');
    const loggedIn = await browser.request('/login', {
        method: 'POST',
        form: { csrf_token: login.hidden.get('csrf_token'), next: login.hidden.get('next'), email, password }
    });
    expect(loggedIn.status === 303, `POST /login should be a 303; got ${loggedIn.status}: ${loggedIn.text}`);
    const second = await browser.request(loggedIn.location);
    expect(second.status === 303 && new URL(second.location).pathname === '/consent', `authorize (signed in): ${second.status} ${second.location ?? second.text}`);
    const consentPage = await browser.request(second.location);
    expect(consentPage.status === 200, `GET /consent: ${consentPage.status}`);
    const consent = extractForm(consentPage.text, '/consent');
    const fields = new Map(consent.hidden);
    fields.set('decision', 'approve');
    const decided = await browser.request('/consent', { method: 'POST', form: fields });
    expect(decided.status === 303, `POST /consent should be a 303; got ${decided.status}: ${decided.text}`);
    const callback = new URL(decided.location);
    expect(callback.origin + callback.pathname === REDIRECT_URI, `consent redirected to ${callback}`);
    expect(callback.searchParams.get('state') === state, `state came back: ${callback}`);
    expect(callback.searchParams.get('iss') === asm.issuer, `iss is the issuer: ${callback}`);
    const code = callback.searchParams.get('code');
    expect(code, `no code in the callback: ${callback}`);

    // 6. Code exchange.
    const tokRes = await fetch(asm.token_endpoint, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
        body: new URLSearchParams({
            grant_type: 'authorization_code',
            code,
            redirect_uri: REDIRECT_URI,
            client_id: client.client_id,
            code_verifier: verifier,
            resource: mcpUrl
        })
    });
    const tokText = await tokRes.text();
    expect(tokRes.status === 200, `code exchange should be 200; got ${tokRes.status}: ${tokText}`);
    const tokens = JSON.parse(tokText);
    expect(tokens.access_token && /^bearer$/i.test(tokens.token_type ?? ''), `token response: ${tokText}`);

    console.error(`get-token: ${email} authorized client ${client.client_id} for "${tokens.scope ?? scope}"`);
    process.stdout.write(
        `${JSON.stringify({ access_token: tokens.access_token, scope: tokens.scope ?? scope, email, client_id: client.client_id })}\n`
    );
}

main().catch(err => {
    console.error(`get-token: ${err.message}`);
    process.exit(1);
});
