// The login and consent pages of the tests' `oidc-provider` upstreams (./upstream.mjs,
// ./mcp-upstream.mjs), the account of the one person who signs in there, and that person's way
// through the pages (the tests' `atUpstream`).
//
// oidc-provider leaves these pages to the application (`interactions.url`); its
// `devInteractions` are a development placeholder that signs in anyone by typing any name, with
// no password. So the upstreams turn devInteractions off and serve the pages a real deployment
// serves, built on the package's interaction API (interactionDetails / interactionFinished,
// Grant): a login form that checks a password, and a consent page (approve or deny).
import assert from 'node:assert/strict';

export const esc = s =>
    String(s).replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

/** Answers `status` with a small HTML page. */
export function page(res, status, title, body) {
    const html = `<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)}</title></head><body><h1>${esc(title)}</h1>${body}</body></html>`;
    res.writeHead(status, {
        'Content-Type': 'text/html; charset=utf-8',
        'Cache-Control': 'no-store',
        'Content-Length': Buffer.byteLength(html)
    });
    res.end(html);
}

async function readForm(req) {
    const chunks = [];
    let size = 0;
    for await (const c of req) {
        size += c.length;
        if (size > 64 * 1024) throw new Error('form too large');
        chunks.push(c);
    }
    return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

/**
 * The provider's `findAccount` for the one person who signs in: their account and its claims
 * (sub, email, email_verified, name).
 *
 * @param {{accountId: string, email: string, name: string}} user
 */
export function accountFinder(user) {
    return async function findAccount(_ctx, sub) {
        if (sub !== user.accountId) return undefined;
        return {
            accountId: sub,
            async claims() {
                return { sub, email: user.email, email_verified: true, name: user.name };
            }
        };
    };
}

/**
 * The login and consent pages at /interaction/<uid> (GET renders, POST decides), for the
 * provider's `interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` }`.
 * Returns `serve(req, res, pathname)`: true when it took the request (an interaction path),
 * false when the request is the provider's own.
 *
 * @param {object} opts
 * @param {import('oidc-provider').default} opts.provider
 * @param {{accountId: string, username: string, password: string}} opts.user the one person who signs in
 * @param {object[]} opts.interactions where each page request's outcome is recorded: {method, prompt, outcome, ...}
 * @param {string} opts.loginTitle the login page's title
 * @param {boolean} [opts.showResources] the consent page also lists the resource scopes asked for (`<p class="resources">`)
 * @param {boolean} [opts.recordDetails] an approved consent's record also carries the prompt's details (`details`)
 */
export function interactionPages({ provider, user, interactions, loginTitle, showResources = false, recordDetails = false }) {
    async function interactionPage(req, res, uid) {
        const details = await provider.interactionDetails(req, res);
        if (details.uid !== uid) throw new Error('interaction mismatch');
        const { prompt, params, session } = details;
        const client = await provider.Client.find(params.client_id);
        const action = `/interaction/${uid}`;
        if (req.method === 'GET') {
            interactions.push({ method: 'GET', prompt: prompt.name });
            if (prompt.name === 'login') return loginForm(res, action, '');
            if (prompt.name === 'consent') return consentForm(res, action, client, params, prompt.details);
            throw new Error(`unexpected prompt ${prompt.name}`);
        }
        if (req.method !== 'POST') throw new Error('method not allowed');
        const form = await readForm(req);
        if (prompt.name === 'login') {
            if (form.get('username') !== user.username || form.get('password') !== user.password) {
                interactions.push({ method: 'POST', prompt: 'login', outcome: 'wrong password' });
                return loginForm(res, action, 'Wrong username or password.', 401);
            }
            interactions.push({ method: 'POST', prompt: 'login', outcome: 'signed in' });
            return provider.interactionFinished(req, res, { login: { accountId: user.accountId } }, { mergeWithLastSubmission: false });
        }
        if (prompt.name === 'consent') {
            if (form.get('decision') !== 'approve') {
                interactions.push({ method: 'POST', prompt: 'consent', outcome: 'denied' });
                return provider.interactionFinished(
                    req,
                    res,
                    { error: 'access_denied', error_description: 'The user denied the request.' },
                    { mergeWithLastSubmission: false }
                );
            }
            const grant = details.grantId
                ? await provider.Grant.find(details.grantId)
                : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
            const d = prompt.details;
            if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
            if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
            if (d.missingResourceScopes) {
                for (const [indicator, scope] of Object.entries(d.missingResourceScopes)) grant.addResourceScope(indicator, scope.join(' '));
            }
            const grantId = await grant.save();
            interactions.push({ method: 'POST', prompt: 'consent', outcome: 'approved', grantId, ...(recordDetails ? { details: d } : {}) });
            return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
        }
        throw new Error(`unexpected prompt ${prompt.name}`);
    }

    function loginForm(res, action, error, status = 200) {
        page(
            res,
            status,
            loginTitle,
            `${error ? `<p class="error">${esc(error)}</p>` : ''}<form method="post" action="${esc(action)}">` +
                `<input name="username" autocomplete="username"><input type="password" name="password" autocomplete="current-password">` +
                `<button type="submit">Sign in</button></form>`
        );
    }

    function consentForm(res, action, client, params, details) {
        const resources = Object.entries(details.missingResourceScopes ?? {}).map(([r, s]) => `${r}: ${s.join(' ')}`);
        page(
            res,
            200,
            'Authorize',
            `<p><strong class="client">${esc(client?.clientName ?? params.client_id)}</strong> asks for: ` +
                `<span class="scopes">${esc(params.scope ?? '')}</span></p>` +
                `<p class="missing">${esc((details.missingOIDCScope ?? []).join(' '))}</p>` +
                (showResources ? `<p class="resources">${esc(resources.join('; '))}</p>` : '') +
                `<form method="post" action="${esc(action)}">` +
                `<button type="submit" name="decision" value="approve">Allow</button>` +
                `<button type="submit" name="decision" value="deny">Deny</button></form>`
        );
    }

    return function serve(req, res, pathname) {
        const m = pathname.match(/^\/interaction\/([A-Za-z0-9_-]+)$/);
        if (!m) return false;
        interactionPage(req, res, m[1]).catch(err => {
            interactions.push({ method: req.method, path: pathname, outcome: `error: ${err.message}` });
            if (!res.headersSent) page(res, 400, 'Error', `<p>${esc(err.message)}</p>`);
        });
        return true;
    };
}

/**
 * The person at the upstream, from an authorization URL to the upstream's redirect to
 * `callbackUrl`: follows redirects within `issuer`, and at each page with a form hands it to
 * `login` (a page with a password field) or `consent` (any other), which post it and return the
 * answer (a redirect). Returns the callback URL and the pages seen ('login', 'consent', and
 * whatever `login` adds to `seen`).
 *
 * @param {import('./agent.mjs').UserAgent} agent
 * @param {string} authorizationUrl
 * @param {{issuer: string, callbackUrl: string,
 *          login: (page: {res: any, action: string, target: string, seen: string[]}) => Promise<any>,
 *          consent: (page: {res: any, action: string, target: string, seen: string[]}) => Promise<any>}} opts
 */
export async function throughInteraction(agent, authorizationUrl, { issuer, callbackUrl, login, consent }) {
    const seen = [];
    let url = authorizationUrl;
    for (let hop = 0; hop < 12; hop++) {
        const res = await agent.get(url);
        if (res.status === 302 || res.status === 303) {
            assert.ok(res.location, `redirect without Location at ${url}`);
            if (res.location.startsWith(callbackUrl)) return { callback: res.location, seen };
            assert.ok(res.location.startsWith(issuer), `the upstream redirected elsewhere: ${res.location}`);
            url = res.location;
            continue;
        }
        assert.equal(res.status, 200, `GET ${url}: ${res.status} ${res.text}`);
        const action = res.text.match(/<form method="post" action="([^"]+)"/)?.[1];
        assert.ok(action, `a form at ${url}: ${res.text}`);
        const target = new URL(action, url).href;
        let posted;
        if (res.text.includes('name="password"')) {
            seen.push('login');
            posted = await login({ res, action, target, seen });
        } else {
            seen.push('consent');
            posted = await consent({ res, action, target, seen });
        }
        assert.ok(posted.status === 302 || posted.status === 303, `POST ${target}: ${posted.status} ${posted.text}`);
        url = posted.location;
    }
    throw new Error(`no redirect to ${callbackUrl} after 12 hops: ${seen.join(', ')}`);
}
