// End-to-end in a real browser: a white-label client's login, sign-up, forgot-password and consent pages
// in Chromium (Debian's, driven by playwright-core over CDP). Checks what a
// person sees: the client's logo (a real PNG, decoded), name, description and
// brand colour (from /static/brand/<client_id>.css, applied to the primary
// button), that the pages load without CSP violations, that approving sends
// the browser to the redirect URI with code, state and iss, and that a
// client's name and description are rendered as text, never as markup.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import {
    REDIRECT_URI,
    createOperatorToken,
    createWhitelabelClient,
    signUp,
    solidPngDataUri,
    startServer,
    withServerLog
} from '../oidc/lib/bridgekeeper.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = path.resolve(here, '..', 'artifacts');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const TEST_TIMEOUT_MS = 90_000;

const BRAND_COLOR = '#4F46E5';
const BRAND_RGB = 'rgb(79, 70, 229)';
const DESCRIPTION = 'YourApp — AI-powered workspace';
const XSS_NAME = 'Evil<script>window.__xss=1</script>';
const XSS_DESCRIPTION = 'Hello <img src=x onerror=window.__xss=2> world';
const XSS_COLOR = '#0F766E';
const XSS_RGB = 'rgb(15, 118, 110)';

const rand = () => randomBytes(6).toString('hex');

function pkce() {
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    return { verifier, challenge };
}

function authorizeUrl(issuer, clientId, { state, challenge, scope = 'openid account' }) {
    const u = new URL('/api/v1/auth/authorize', issuer);
    u.searchParams.set('response_type', 'code');
    u.searchParams.set('client_id', clientId);
    u.searchParams.set('redirect_uri', REDIRECT_URI);
    u.searchParams.set('scope', scope);
    u.searchParams.set('state', state);
    u.searchParams.set('code_challenge', challenge);
    u.searchParams.set('code_challenge_method', 'S256');
    return u.href;
}

/** Everything the branded header and brand stylesheet show, read from the live page. */
async function readBrand(page) {
    return page.evaluate(() => {
        const brand = document.querySelector('main > .brand');
        const img = brand?.querySelector('img.brand-logo');
        const button = document.querySelector('form button[type="submit"]');
        const links = [...document.querySelectorAll('link[rel="stylesheet"]')].map(l => l.getAttribute('href'));
        return {
            className: brand?.className ?? null,
            brandHtml: brand?.outerHTML ?? null,
            logo: img
                ? {
                      src: img.getAttribute('src'),
                      alt: img.getAttribute('alt'),
                      complete: img.complete,
                      naturalWidth: img.naturalWidth,
                      naturalHeight: img.naturalHeight,
                      renderedWidth: img.getBoundingClientRect().width
                  }
                : null,
            name: brand?.querySelector('.brand-name')?.textContent ?? null,
            description: document.querySelector('p.muted.brand-description')?.textContent ?? null,
            descriptionVisible: (() => {
                const d = document.querySelector('p.muted.brand-description');
                if (!d) return false;
                const r = d.getBoundingClientRect();
                return r.width > 0 && r.height > 0 && getComputedStyle(d).visibility !== 'hidden';
            })(),
            stylesheets: links,
            brandVar: getComputedStyle(document.documentElement).getPropertyValue('--brand').trim(),
            buttonText: button?.textContent?.trim() ?? null,
            buttonBackground: button ? getComputedStyle(button).backgroundColor : null,
            // Our own files (/static/passkeys.js, /static/siwe.js) are the only scripts a page may carry.
            scripts: document.querySelectorAll('script:not([src^="/static/"])').length,
            xss: window.__xss
        };
    });
}

/** Asserts the white-label header, stylesheet and button colour on the current page. */
async function assertBranded(page, issuer, { clientId, name, description, color, rgb, logo }, where) {
    const b = await readBrand(page);
    const ctx = `${where} (${page.url()}): ${JSON.stringify(b, null, 2)}`;
    assert.equal(b.className, 'brand branded', `branded header div: ${ctx}`);
    assert.ok(b.logo, `logo <img class="brand-logo"> present: ${ctx}`);
    assert.equal(b.logo.src, logo, `logo src is the client's data: URI: ${ctx}`);
    assert.equal(b.logo.alt, `${name} logo`, `logo alt: ${ctx}`);
    assert.ok(b.logo.complete && b.logo.naturalWidth > 0, `logo image decoded (naturalWidth > 0): ${ctx}`);
    assert.equal(b.logo.naturalWidth, 32, `logo is the 32×32 PNG: ${ctx}`);
    assert.ok(b.logo.renderedWidth > 0, `logo rendered: ${ctx}`);
    assert.equal(b.name, name, `brand name text: ${ctx}`);
    assert.equal(b.description, description, `brand description text: ${ctx}`);
    assert.ok(b.descriptionVisible, `brand description visible: ${ctx}`);
    assert.ok(b.stylesheets.includes(`/static/brand/${clientId}.css`), `brand stylesheet linked: ${ctx}`);
    assert.equal(b.brandVar.toUpperCase(), color.toUpperCase(), `--brand custom property from the brand stylesheet: ${ctx}`);
    assert.equal(b.buttonBackground, rgb, `primary submit button background is the brand colour: ${ctx}`);

    // The stylesheet itself, as served (fetched outside the page: its CSP allows no fetch()).
    const cssResponse = await fetch(new URL(`/static/brand/${clientId}.css`, issuer));
    const css = { status: cssResponse.status, type: cssResponse.headers.get('content-type'), text: await cssResponse.text() };
    assert.equal(css.status, 200, `GET /static/brand/${clientId}.css: ${JSON.stringify(css)}`);
    assert.match(css.type ?? '', /^text\/css/, `brand stylesheet content type: ${JSON.stringify(css)}`);
    assert.match(css.text, new RegExp(`:root\\s*\\{\\s*--brand:\\s*${color}\\s*;\\s*--on-brand:\\s*#(fff|111)\\s*;\\s*\\}`, 'i'), `brand stylesheet body: ${css.text}`);
    assert.equal(new URL(page.url()).origin, new URL(issuer).origin);
    return b;
}

describe('White-label login and consent pages in Chromium', () => {
    let server;
    let operator;
    let app;
    let evil;
    let context;
    let userDataDir;
    const email = `browser-${rand()}@example.com`;
    const password = `pw-${rand()}-correct horse`;
    const logo = solidPngDataUri(32, 32, [0x4f, 0x46, 0xe5]);
    const evilLogo = solidPngDataUri(32, 32, [0x0f, 0x76, 0x6e]);
    /** Console messages and page errors, per page, to catch CSP violations and script errors. */
    const consoleLog = [];

    before(async () => {
        mkdirSync(ARTIFACTS, { recursive: true });
        server = await startServer();
        await withServerLog(server, async () => {
            operator = await createOperatorToken(server.dataDir);
            app = await createWhitelabelClient(server.issuer, operator.token, {
                type: 'public',
                branding: { logo, description: DESCRIPTION, brandColor: BRAND_COLOR }
            });
            evil = await createWhitelabelClient(server.issuer, operator.token, {
                type: 'public',
                name: XSS_NAME,
                domains: ['evil.example'],
                branding: { logo: evilLogo, description: XSS_DESCRIPTION, brandColor: XSS_COLOR }
            });
            await signUp(server.issuer, email, password);
        });
        userDataDir = await mkdtemp(path.join(tmpdir(), 'bk-e2e-chromium-'));
        context = await chromium.launchPersistentContext(userDataDir, {
            executablePath: CHROMIUM,
            headless: true,
            args: [
                '--no-sandbox',
                '--headless',
                '--disable-background-networking',
                '--disable-component-update',
                '--no-first-run',
                '--disable-gpu'
            ],
            viewport: { width: 800, height: 900 },
            timeout: 60_000
        });
    });

    after(async () => {
        await context?.close().catch(() => {});
        if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
        await server?.stop();
    });

    async function newPage() {
        const page = await context.newPage();
        page.on('console', m => consoleLog.push(`[${m.type()}] ${page.url()} ${m.text()}`));
        page.on('pageerror', e => consoleLog.push(`[pageerror] ${page.url()} ${e.message}`));
        page.on('response', r => {
            if (r.status() >= 400) consoleLog.push(`[http ${r.status()}] ${r.request().method()} ${r.url()}`);
        });
        page.on('requestfailed', r => consoleLog.push(`[requestfailed] ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
        return page;
    }

    const cspViolations = () => consoleLog.filter(l => /Content Security Policy|Refused to/i.test(l));

    test('login → consent → redirect, branded throughout', { timeout: TEST_TIMEOUT_MS }, () =>
        withServerLog(server, async () => {
            const { issuer } = server;
            await context.clearCookies();
            const page = await newPage();
            const before = consoleLog.length;

            const state = randomBytes(12).toString('base64url');
            const { challenge } = pkce();
            const response = await page.goto(authorizeUrl(issuer, app.clientId, { state, challenge }), { waitUntil: 'load' });
            assert.ok(response, 'navigation response');

            // Signed out: the authorize endpoint sent us to the login page.
            const loginUrl = new URL(page.url());
            assert.equal(loginUrl.pathname, '/login', `landed on /login: ${page.url()}`);
            assert.equal(response.status(), 200, `login page status: ${response.status()}`);
            assert.equal(new URL(loginUrl.searchParams.get('next'), issuer).pathname, '/api/v1/auth/authorize');
            await page.waitForFunction(() => [...document.images].every(i => i.complete));

            const brand = { clientId: app.clientId, name: 'YourApp', description: DESCRIPTION, color: BRAND_COLOR, rgb: BRAND_RGB, logo };
            const login = await assertBranded(page, issuer, brand, 'login page');
            assert.equal(login.buttonText, 'Sign in');
            await page.screenshot({ path: path.join(ARTIFACTS, 'whitelabel-login.png'), fullPage: true });

            // Sign in like a person: type, click.
            await page.locator('#email').fill(email);
            await page.locator('#password').fill(password);
            await Promise.all([page.waitForURL(u => u.pathname === '/consent', { timeout: 15_000 }), page.locator('form button[type="submit"]').click()]);
            await page.waitForLoadState('load');
            await page.waitForFunction(() => [...document.images].every(i => i.complete));

            // The consent page, branded the same way.
            const consent = await assertBranded(page, issuer, brand, 'consent page');
            assert.equal(consent.buttonText, 'Approve', 'the first submit button on the consent page is Approve');
            const heading = await page.locator('h1').textContent();
            assert.match(heading, /YourApp/, `consent heading names the client: ${heading}`);
            await page.screenshot({ path: path.join(ARTIFACTS, 'whitelabel-consent.png'), fullPage: true });

            // Approve: the consent form's POST answers 303 to the client's redirect URI with
            // code, state and iss. Nothing listens there (and page.route does not see requests
            // that are redirect hops), so catch the browser's request to it.
            const [callbackRequest] = await Promise.all([
                page.waitForRequest(r => r.url().startsWith(REDIRECT_URI), { timeout: 15_000 }),
                page.getByRole('button', { name: 'Approve' }).click()
            ]);
            const hop = callbackRequest.redirectedFrom();
            assert.ok(hop, 'the redirect URI was reached through a redirect');
            assert.equal(hop.method(), 'POST', 'redirected from the consent form POST');
            assert.equal(new URL(hop.url()).pathname, '/consent');
            assert.equal((await hop.response())?.status(), 303, 'the consent POST answered 303 See Other');
            assert.ok(callbackRequest.isNavigationRequest(), 'a top-level navigation');
            assert.equal(callbackRequest.method(), 'GET');
            const callback = new URL(callbackRequest.url());
            assert.equal(callback.origin + callback.pathname, REDIRECT_URI);
            assert.match(callback.searchParams.get('code') ?? '', /.{20,}/, `code: ${callback}`);
            assert.equal(callback.searchParams.get('state'), state, `state round-trips: ${callback}`);
            assert.equal(callback.searchParams.get('iss'), issuer, `iss (RFC 9207): ${callback}`);
            assert.equal(callback.searchParams.get('error'), null, `no error: ${callback}`);
            // Let the (failed, nothing listens) navigation settle before looking at the console.
            await page.waitForLoadState('load').catch(() => {});

            const mine = consoleLog.slice(before);
            assert.deepEqual(
                mine.filter(
                    l =>
                        /Content Security Policy|Refused to|\[pageerror\]|\[http |\[requestfailed\]/i.test(l) &&
                        // Nothing listens on the redirect URI; browsers ask every origin for a favicon.
                        !l.includes(REDIRECT_URI) &&
                        !/\/favicon\.ico$/.test(l)
                ),
                [],
                `no CSP violations, script errors or failed sub-resources on the pages:\n${mine.join('\n')}`
            );
            await page.close();
        })
    );

    test('sign-up and forgot-password pages reached from the sign-in page are branded too', { timeout: TEST_TIMEOUT_MS }, () =>
        withServerLog(server, async () => {
            const { issuer } = server;
            await context.clearCookies();
            const page = await newPage();
            const before = consoleLog.length;
            const brand = { clientId: app.clientId, name: 'YourApp', description: DESCRIPTION, color: BRAND_COLOR, rgb: BRAND_RGB, logo };
            const { challenge } = pkce();
            await page.goto(authorizeUrl(issuer, app.clientId, { state: 'st', challenge }), { waitUntil: 'load' });
            assert.equal(new URL(page.url()).pathname, '/login', `landed on /login: ${page.url()}`);

            // "No account yet? Create one": the sign-up page, in the client's brand, for the same request.
            await Promise.all([page.waitForURL(u => u.pathname === '/signup'), page.getByRole('link', { name: 'Create one' }).click()]);
            await page.waitForFunction(() => [...document.images].every(i => i.complete));
            const signup = await assertBranded(page, issuer, brand, 'sign-up page');
            assert.equal(signup.buttonText, 'Create account');
            assert.equal(new URL(await page.locator('input[name="next"]').getAttribute('value'), issuer).pathname, '/api/v1/auth/authorize');
            const signupTitle = await page.title();
            assert.ok(signupTitle.includes('YourApp') && !signupTitle.includes('Bridgekeeper'), `title: ${signupTitle}`);
            assert.equal(await page.getByText('Bridgekeeper').count(), 0, 'no "Bridgekeeper" shown on the sign-up page');
            await page.screenshot({ path: path.join(ARTIFACTS, 'whitelabel-signup.png'), fullPage: true });

            // Back to sign in (still branded), then "Forgot your password?".
            await Promise.all([page.waitForURL(u => u.pathname === '/login'), page.getByRole('link', { name: 'Sign in' }).click()]);
            await assertBranded(page, issuer, brand, 'sign-in page from sign-up');
            await Promise.all([
                page.waitForURL(u => u.pathname === '/forgot-password'),
                page.getByRole('link', { name: 'Forgot your password?' }).click()
            ]);
            await page.waitForFunction(() => [...document.images].every(i => i.complete));
            const forgot = await assertBranded(page, issuer, brand, 'forgot-password page');
            assert.equal(forgot.buttonText, 'Send the link');
            assert.equal(await page.getByText('Bridgekeeper').count(), 0, 'no "Bridgekeeper" shown on the forgot-password page');
            await page.screenshot({ path: path.join(ARTIFACTS, 'whitelabel-forgot.png'), fullPage: true });

            const mine = consoleLog.slice(before);
            assert.deepEqual(
                mine.filter(l => /Content Security Policy|Refused to|\[pageerror\]|\[http |\[requestfailed\]/i.test(l) && !/\/favicon\.ico$/.test(l)),
                [],
                `no CSP violations, script errors or failed sub-resources:\n${mine.join('\n')}`
            );
            await page.close();
        })
    );

    test('a client name and description with markup are shown as text (no XSS)', { timeout: TEST_TIMEOUT_MS }, () =>
        withServerLog(server, async () => {
            const { issuer } = server;
            await context.clearCookies();
            const page = await newPage();
            const before = consoleLog.length;

            const state = randomBytes(12).toString('base64url');
            const { challenge } = pkce();
            await page.goto(authorizeUrl(issuer, evil.clientId, { state, challenge }), { waitUntil: 'load' });
            assert.equal(new URL(page.url()).pathname, '/login', `landed on /login: ${page.url()}`);
            await page.waitForFunction(() => [...document.images].every(i => i.complete));
            // An injected <img src=x onerror=…> would fire its handler once the image fails: give it time.
            await page.waitForTimeout(500);

            const evilBrand = { clientId: evil.clientId, name: XSS_NAME, description: XSS_DESCRIPTION, color: XSS_COLOR, rgb: XSS_RGB, logo: evilLogo };
            const login = await assertBranded(page, issuer, evilBrand, 'login page (markup in name/description)');
            assert.equal(login.xss, undefined, 'window.__xss stays undefined');
            assert.equal(login.scripts, 0, `no <script> element in the page: ${login.brandHtml}`);
            const injected = await page.evaluate(() => ({
                imgs: [...document.images].map(i => i.getAttribute('src').slice(0, 30)),
                onerror: document.querySelectorAll('[onerror]').length,
                brandChildren: [...document.querySelector('main > .brand').children].map(e => e.tagName + '.' + e.className)
            }));
            assert.equal(injected.onerror, 0, `no element with an onerror attribute: ${JSON.stringify(injected)}`);
            assert.equal(injected.imgs.length, 1, `only the logo image: ${JSON.stringify(injected)}`);
            assert.deepEqual(injected.brandChildren, ['IMG.brand-logo', 'SPAN.brand-name'], JSON.stringify(injected));
            // The text is visible as typed.
            await assert.doesNotReject(page.getByText(XSS_NAME, { exact: true }).first().waitFor({ state: 'visible', timeout: 5_000 }));
            await assert.doesNotReject(page.getByText(XSS_DESCRIPTION, { exact: true }).waitFor({ state: 'visible', timeout: 5_000 }));
            await page.screenshot({ path: path.join(ARTIFACTS, 'whitelabel-login-xss.png'), fullPage: true });

            // The consent page also names the client (heading, title): still text.
            await page.locator('#email').fill(email);
            await page.locator('#password').fill(password);
            await Promise.all([page.waitForURL(u => u.pathname === '/consent', { timeout: 15_000 }), page.locator('form button[type="submit"]').click()]);
            await page.waitForLoadState('load');
            await page.waitForTimeout(500);
            const consent = await assertBranded(page, issuer, evilBrand, 'consent page (markup in name/description)');
            assert.equal(consent.xss, undefined, 'window.__xss stays undefined on the consent page');
            assert.equal(consent.scripts, 0, 'no <script> element on the consent page');
            assert.equal(await page.locator('[onerror]').count(), 0, 'no onerror attribute on the consent page');
            const h1 = await page.locator('h1 strong').textContent();
            assert.equal(h1, XSS_NAME, 'consent heading shows the name as text');
            const title = await page.title();
            assert.ok(title.includes(XSS_NAME), `document title shows the name as text: ${title}`);
            await page.screenshot({ path: path.join(ARTIFACTS, 'whitelabel-consent-xss.png'), fullPage: true });

            const mine = consoleLog.slice(before);
            assert.deepEqual(cspViolations().filter(l => mine.includes(l)), [], `no CSP violations (nothing tried to run):\n${mine.join('\n')}`);
            await page.close();
        })
    );
});
