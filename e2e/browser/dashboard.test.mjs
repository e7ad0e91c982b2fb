// End-to-end in a real browser: the account dashboard (/account/…) as a person uses it. Chromium
// (Debian's, driven by playwright-core) signs in, creates a personal access token on the tokens
// page (shown once, no-store) and uses it on /mcp (initialize + tools/list lists `whoami`), revokes
// it there and sees /mcp answer 401; approves an OAuth app (a dynamically registered public
// client, consent in the browser) and revokes it on the apps page, after which its access token is
// refused; reads the activity page, filters it by kind, and watches the live tail add an event;
// opens a second browser signed in as the same person and presses "Sign out everywhere" in the
// first, after which the second is signed out on its next page load. Every page is screenshot at
// desktop (1100 px) and phone (390 px) width into e2e/artifacts/dashboard-*.png, has no horizontal
// scrolling down to 360 px, and passes an axe-core scan with no serious or critical violation
// (axe is injected in a context of its own that bypasses the CSP; the pages' own runs are checked
// for CSP violations and console errors). The browser reaches nothing but the server under test.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { REDIRECT_URI, signUp, startServer, withServerLog } from '../oidc/lib/bridgekeeper.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = path.resolve(here, '..', 'artifacts');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const AXE = readFileSync(path.join(here, 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');
const TEST_TIMEOUT_MS = 240_000;
const DESKTOP = { width: 1100, height: 900 };
const PHONE = { width: 390, height: 844 };
const NARROWEST = { width: 360, height: 740 };
const PAGES = [
    ['overview', '/account', 'Overview'],
    ['apps', '/account/apps', 'Apps'],
    ['tokens', '/account/tokens', 'Tokens'],
    ['activity', '/account/activity', 'Activity'],
    ['security', '/account/security', 'Security']
];

const rand = () => randomBytes(6).toString('hex');
const sleep = ms => new Promise(r => setTimeout(r, ms));

/** The JSON-RPC messages of an MCP answer (plain JSON or an SSE stream). */
async function rpcMessages(res) {
    const text = await res.text();
    if ((res.headers.get('content-type') ?? '').includes('text/event-stream')) {
        return text
            .split('\n')
            .filter(l => l.startsWith('data:'))
            .map(l => JSON.parse(l.slice(5)));
    }
    return text ? [JSON.parse(text)] : [];
}

/** `initialize`, `notifications/initialized` and `tools/list` on /mcp with `token`: the tool names, or the refusing status. */
async function mcpTools(issuer, token) {
    const post = (body, session) =>
        fetch(new URL('/mcp', issuer), {
            method: 'POST',
            headers: {
                Authorization: `Bearer ${token}`,
                'Content-Type': 'application/json',
                Accept: 'application/json, text/event-stream',
                ...(session ? { 'Mcp-Session-Id': session, 'MCP-Protocol-Version': '2025-11-25' } : {})
            },
            body: JSON.stringify(body)
        });
    const init = await post({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'dashboard-e2e', version: '1' } }
    });
    if (init.status !== 200) return { status: init.status };
    const session = init.headers.get('mcp-session-id');
    const [hello] = await rpcMessages(init);
    assert.equal(hello.result?.protocolVersion, '2025-11-25', JSON.stringify(hello));
    assert.equal((await post({ jsonrpc: '2.0', method: 'notifications/initialized' }, session)).status, 202);
    const list = await post({ jsonrpc: '2.0', id: 2, method: 'tools/list', params: {} }, session);
    if (list.status !== 200) return { status: list.status };
    const answer = (await rpcMessages(list)).find(m => m.id === 2);
    return { status: 200, tools: answer.result.tools.map(t => t.name) };
}

/** Polls until /mcp refuses `token` (revocation is seen within about a second). */
async function refused(issuer, token) {
    const deadline = Date.now() + 3000;
    for (;;) {
        const res = await fetch(new URL('/mcp', issuer), {
            method: 'POST',
            headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' },
            body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } })
        });
        await res.text();
        if (res.status === 401) return true;
        if (Date.now() > deadline) return false;
        await sleep(150);
    }
}

describe('The account dashboard in Chromium', () => {
    let server;
    let browser;
    const person = { email: `dash-${rand()}@example.com`, password: `pw-${rand()}-correct horse` };
    const consoleLog = [];

    before(async () => {
        mkdirSync(ARTIFACTS, { recursive: true });
        server = await startServer();
        await withServerLog(server, () => signUp(server.issuer, person.email, person.password));
        browser = await chromium.launch({
            executablePath: CHROMIUM,
            headless: true,
            args: ['--no-sandbox', '--headless', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-gpu'],
            timeout: 60_000
        });
    });

    after(async () => {
        await browser?.close().catch(() => {});
        await server?.stop();
    });

    /** A browser context (its own cookies) that reaches only the server under test. */
    async function newContext(options = {}) {
        const context = await browser.newContext({ viewport: DESKTOP, ...options });
        await context.route('**/*', route => {
            const url = new URL(route.request().url());
            return url.origin === new URL(server.issuer).origin ? route.continue() : route.abort('blockedbyclient');
        });
        return context;
    }

    async function newPage(context, label) {
        const page = await context.newPage();
        page.on('console', m => consoleLog.push(`[${label}] [${m.type()}] ${page.url()} ${m.text()}`));
        page.on('pageerror', e => consoleLog.push(`[${label}] [pageerror] ${page.url()} ${e.message}`));
        page.on('response', r => {
            if (r.status() >= 400) consoleLog.push(`[${label}] [http ${r.status()}] ${r.request().method()} ${r.url()}`);
        });
        page.on('requestfailed', r => consoleLog.push(`[${label}] [requestfailed] ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
        return page;
    }

    /** CSP violations, script errors and failed requests since `from` (an aborted live stream on leaving a page aside). */
    function trouble(from) {
        return consoleLog
            .slice(from)
            .filter(l => /Content Security Policy|Refused to|\[pageerror\]|\[http |\[requestfailed\]|\[error\]/i.test(l))
            .filter(l => !(/\/api\/v1\/events/.test(l) && /ERR_ABORTED/.test(l)))
            .filter(l => !l.includes(REDIRECT_URI.replace(/\/callback$/, '')));
    }

    async function signIn(page, next = '/account') {
        await page.goto(new URL(next, server.issuer).href, { waitUntil: 'load' });
        assert.equal(new URL(page.url()).pathname, '/login', `signed out: sent to sign in first (${page.url()})`);
        assert.equal(new URL(page.url()).searchParams.get('next'), next);
        await page.locator('#email').fill(person.email);
        await page.locator('#password').fill(person.password);
        await Promise.all([page.waitForURL(u => u.pathname === new URL(next, server.issuer).pathname), page.locator('form button[type="submit"]').click()]);
    }

    /** Shots at desktop and phone width, and no horizontal scrolling down to 360 px. */
    async function shoot(page, name) {
        await page.setViewportSize(DESKTOP);
        await page.screenshot({ path: path.join(ARTIFACTS, `dashboard-${name}-desktop.png`), fullPage: true });
        for (const size of [PHONE, NARROWEST]) {
            await page.setViewportSize(size);
            const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
            assert.ok(overflow <= 0, `${name}: no horizontal scrolling at ${size.width} px (${overflow} px)`);
        }
        await page.setViewportSize(PHONE);
        await page.screenshot({ path: path.join(ARTIFACTS, `dashboard-${name}-phone.png`), fullPage: true });
        await page.setViewportSize(DESKTOP);
    }

    /** What the layout shows: landmarks, the current navigation entry, labels. */
    async function structure(page) {
        return page.evaluate(() => ({
            nav: document.querySelectorAll('nav[aria-label="Account"]').length,
            main: document.querySelectorAll('main').length,
            current: [...document.querySelectorAll('nav a[aria-current="page"]')].map(a => a.textContent),
            unlabelled: [...document.querySelectorAll('input:not([type=hidden]), select')]
                .filter(i => !(i.labels && i.labels.length))
                .map(i => i.id || i.name),
            inlineScripts: [...document.querySelectorAll('script')].filter(s => !s.src).length
        }));
    }

    test('tokens, apps, activity and security pages, then sign out everywhere', { timeout: TEST_TIMEOUT_MS }, () =>
        withServerLog(server, async () => {
            const from = consoleLog.length;
            const first = await newContext();
            const page = await newPage(first, 'first');
            await signIn(page);

            // Overview.
            assert.equal(await page.locator('h1').textContent(), 'Your account');
            assert.match(await page.locator('.email-line').textContent(), new RegExp(`${person.email.replace('.', '\\.')}\\s+Not verified`));
            let seen = await structure(page);
            assert.deepEqual(seen, { nav: 1, main: 1, current: ['Overview'], unlabelled: [], inlineScripts: 0 });
            // Keyboard: the skip link first, then the navigation in order.
            await page.keyboard.press('Tab');
            assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Skip to content');
            await page.keyboard.press('Tab');
            assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Overview');
            await page.keyboard.press('Tab');
            assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Connected services');
            const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
            assert.equal(outline, 'solid', 'focus is visible');

            // A token: created on the page, shown once, no-store.
            await page.getByRole('link', { name: 'Tokens', exact: true }).click();
            await page.waitForURL(u => u.pathname === '/account/tokens');
            assert.deepEqual((await structure(page)).current, ['Tokens']);
            await page.locator('#token-name').fill('e2e laptop');
            await page.locator('#scope-universal-mcp-read').check();
            await page.locator('#token-expires').selectOption('30');
            const [created] = await Promise.all([
                page.waitForResponse(r => r.url().endsWith('/account/tokens') && r.request().method() === 'POST'),
                page.getByRole('button', { name: 'Create token' }).click()
            ]);
            await page.waitForLoadState('load');
            assert.equal(created.status(), 201);
            assert.equal(created.headers()['cache-control'], 'no-store');
            const pat = await page.locator('#new-token').inputValue();
            assert.match(pat, /^bkp_/);
            assert.equal(new URL(page.url()).search, '', 'the token is never in a URL');
            await shoot(page, 'token-created');

            const withPat = await mcpTools(server.issuer, pat);
            assert.equal(withPat.status, 200);
            assert.ok(withPat.tools.includes('whoami'), `tools/list: ${withPat.tools}`);

            await page.goto(new URL('/account/tokens', server.issuer).href);
            assert.ok(!(await page.content()).includes(pat), 'never shown again');
            assert.equal(await page.locator('#yours-h + ul .item-title').first().textContent(), 'e2e laptop');
            await shoot(page, 'tokens');
            await Promise.all([page.waitForURL(u => u.searchParams.has('revoked')), page.getByRole('button', { name: 'Revoke token e2e laptop' }).click()]);
            assert.equal(await page.locator('p.notice[role="status"]').textContent(), 'Token revoked. It no longer works anywhere.');
            assert.ok(await refused(server.issuer, pat), 'the revoked token still works on /mcp');

            // An app: registered dynamically, approved in this browser, revoked on the apps page.
            const reg = await fetch(new URL('/api/v1/auth/register', server.issuer), {
                method: 'POST',
                headers: { 'Content-Type': 'application/json' },
                body: JSON.stringify({
                    client_name: 'Dashboard E2E Agent',
                    redirect_uris: [REDIRECT_URI],
                    grant_types: ['authorization_code', 'refresh_token'],
                    response_types: ['code'],
                    token_endpoint_auth_method: 'none',
                    scope: 'universal-mcp-read account'
                })
            });
            assert.equal(reg.status, 201);
            const clientId = (await reg.json()).client_id;
            const verifier = randomBytes(32).toString('base64url');
            const authorize = new URL('/api/v1/auth/authorize', server.issuer);
            for (const [k, v] of Object.entries({
                response_type: 'code', client_id: clientId, redirect_uri: REDIRECT_URI, scope: 'universal-mcp-read account', state: 'st',
                code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256'
            })) authorize.searchParams.set(k, v);
            await page.goto(authorize.href, { waitUntil: 'load' });
            assert.equal(new URL(page.url()).pathname, '/consent', 'signed in: straight to consent');
            const [back] = await Promise.all([
                page.waitForRequest(r => r.url().startsWith(REDIRECT_URI)),
                page.getByRole('button', { name: 'Approve' }).click()
            ]);
            const code = new URL(back.url()).searchParams.get('code');
            // Nothing listens at the app's redirect URI here: the browser shows its error page.
            await page.waitForURL(u => u.protocol === 'chrome-error:', { timeout: 5000 }).catch(() => {});
            const tokenRes = await fetch(new URL('/api/v1/auth/token', server.issuer), {
                method: 'POST',
                headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
                body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, client_id: clientId, code_verifier: verifier })
            });
            const appTokens = await tokenRes.json();
            assert.equal(tokenRes.status, 200, JSON.stringify(appTokens));
            assert.equal((await mcpTools(server.issuer, appTokens.access_token)).status, 200, 'the app works');

            await page.goto(new URL('/account', server.issuer).href, { waitUntil: 'load' });
            assert.match(await page.locator('section[aria-labelledby="apps-h"]').textContent(), /Dashboard E2E Agent/);
            await shoot(page, 'overview');
            await page.getByRole('link', { name: 'Apps', exact: true }).click();
            await page.waitForURL(u => u.pathname === '/account/apps');
            const app = page.locator('li.item', { hasText: 'Dashboard E2E Agent' });
            assert.match(await app.textContent(), /Sends you back to\s*127\.0\.0\.1/);
            assert.match(await app.textContent(), /universal-mcp-read/);
            assert.match(await app.textContent(), /It registered itself/);
            await shoot(page, 'apps');
            await Promise.all([
                page.waitForURL(u => u.searchParams.has('revoked')),
                page.getByRole('button', { name: 'Revoke access of Dashboard E2E Agent' }).click()
            ]);
            assert.equal(await page.locator('li.item', { hasText: 'Dashboard E2E Agent' }).count(), 0);
            assert.ok(await refused(server.issuer, appTokens.access_token), 'the revoked app still works on /mcp');

            // Activity: what happened, a filter, and the live tail.
            await page.getByRole('link', { name: 'Activity', exact: true }).click();
            await page.waitForURL(u => u.pathname === '/account/activity');
            const kinds = await page.locator('#events .event-meta code').allTextContents();
            for (const k of ['auth.signin', 'pat.created', 'pat.revoked', 'auth.consent', 'session.revoked']) {
                assert.ok(kinds.includes(k), `${k} in the log: ${kinds}`);
            }
            await shoot(page, 'activity');
            await page.locator('#f-kind').fill('pat.created');
            await Promise.all([page.waitForURL(u => u.searchParams.get('kind') === 'pat.created'), page.getByRole('button', { name: 'Show' }).click()]);
            assert.deepEqual(await page.locator('#events .event-meta code').allTextContents(), ['pat.created']);
            await page.waitForFunction(() => /^Live:/.test(document.getElementById('live-status')?.textContent ?? ''));
            // A token created in another tab shows up here, live (and only what the filter asks for).
            const tab = await newPage(first, 'first-tab');
            await tab.goto(new URL('/account/tokens', server.issuer).href);
            await tab.locator('#token-name').fill('live one');
            await Promise.all([tab.waitForURL(u => u.pathname === '/account/tokens'), tab.getByRole('button', { name: 'Create token' }).click()]);
            await tab.waitForSelector('#new-token');
            await page.waitForFunction(() => document.querySelectorAll('#events li.event').length === 2, null, { timeout: 5000 });
            assert.deepEqual(await page.locator('#events .event-meta code').allTextContents(), ['pat.created', 'pat.created']);
            assert.equal(await page.locator('#events li.event').last().locator('.event-label').textContent(), 'Personal access token created');
            await tab.close();
            assert.ok((await page.content()).includes('script src="/static/dashboard.js"'));

            // Security: a second browser signed in as the same person, listed; sign out everywhere.
            const second = await newContext();
            const other = await newPage(second, 'second');
            await signIn(other, '/account/security');
            await page.goto(new URL('/account/security', server.issuer).href, { waitUntil: 'load' });
            seen = await structure(page);
            assert.deepEqual(seen, { nav: 1, main: 1, current: ['Security'], unlabelled: [], inlineScripts: 0 });
            assert.ok((await page.locator('#sessions-h + p + ul > li').count()) >= 2, 'both browsers are listed');
            assert.match(await page.locator('li.item.current').textContent(), /Chrome on Linux\s+This browser/);
            assert.equal(await page.locator('#current-password').getAttribute('autocomplete'), 'current-password');
            assert.equal(await page.locator('#new-password').getAttribute('autocomplete'), 'new-password');
            assert.equal(await page.getByRole('button', { name: 'Send the verification link again' }).count(), 1);
            await shoot(page, 'security');
            await Promise.all([page.waitForURL(u => u.pathname === '/login'), page.getByRole('button', { name: 'Sign out everywhere' }).click()]);
            await sleep(700);
            await other.reload({ waitUntil: 'load' });
            assert.equal(new URL(other.url()).pathname, '/login', `the other browser is signed out: ${other.url()}`);
            await page.goto(new URL('/account', server.issuer).href, { waitUntil: 'load' });
            assert.equal(new URL(page.url()).pathname, '/login', 'and this one');

            await first.close();
            await second.close();
            const bad = trouble(from);
            assert.deepEqual(bad, [], `no CSP violation, script error or failed request:\n${bad.join('\n')}`);
        })
    );

    test('every dashboard page passes an axe-core scan (no serious or critical violation)', { timeout: TEST_TIMEOUT_MS }, () =>
        withServerLog(server, async () => {
            // axe is injected as an inline script, which the pages' CSP refuses: this context alone bypasses it.
            const context = await newContext({ bypassCSP: true });
            const page = await context.newPage();
            await signIn(page);
            const scan = async name => {
                await page.addScriptTag({ content: AXE });
                const result = await page.evaluate(async () => {
                    const r = await window.axe.run(document, { resultTypes: ['violations'] });
                    return r.violations.map(v => ({ id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5) }));
                });
                const grave = result.filter(v => v.impact === 'serious' || v.impact === 'critical');
                assert.deepEqual(grave, [], `${name}: axe violations ${JSON.stringify(grave, null, 1)}`);
                return result;
            };
            for (const [name, url, current] of PAGES) {
                await page.goto(new URL(url, server.issuer).href, { waitUntil: 'load' });
                assert.deepEqual((await structure(page)).current, [current], name);
                await scan(name);
                await page.setViewportSize(PHONE);
                await scan(`${name} (phone)`);
                await page.setViewportSize(DESKTOP);
            }
            // The answer to the token form, and a form shown again with an error.
            await page.goto(new URL('/account/tokens', server.issuer).href);
            await page.locator('#token-name').fill('axe');
            await Promise.all([page.waitForLoadState('load'), page.getByRole('button', { name: 'Create token' }).click()]);
            await page.waitForSelector('#new-token');
            await scan('token created');
            await page.goto(new URL('/account/tokens', server.issuer).href);
            await page.locator('#token-name').fill('no scopes');
            await page.locator('#scope-universal-mcp-read').uncheck();
            await Promise.all([page.waitForLoadState('load'), page.getByRole('button', { name: 'Create token' }).click()]);
            await page.waitForSelector('p.error[role="alert"]');
            assert.equal(await page.locator('p.error[role="alert"]').textContent(), 'None of the requested scopes can be granted to this token.');
            assert.equal(await page.locator('#token-name').inputValue(), 'no scopes', 'what was typed is kept');
            await scan('token form with an error');
            await page.goto(new URL('/account/security?error=wrong_password', server.issuer).href);
            assert.equal(await page.locator('p.error[role="alert"]').textContent(), 'The current password is not correct.');
            await scan('security with an error');
            await context.close();
        })
    );
});
