// End-to-end in a real browser: the connections page, opened through the
// white-label handoff. A white-label app's backend (this test, over HTTP)
// holds its customer's access token and asks POST /api/v1/auth/handoff/init
// for a one-time code; Chromium follows the link it answers and lands on
// /connections in the app's branding (logo, name, colour), signed in as the
// customer with no second sign-in. There it connects an API-key service
// through the form, sees it listed, disconnects it, and follows "Back to
// YourApp". Then the same page for a person signed in here directly. At
// desktop and phone width, with screenshots in e2e/browser/screenshots/, and
// no CSP violation, script error or failed request on our origin.
//
// Provider logos are https URLs (the catalog requires it); this test never
// lets the browser reach anything but the server under test: logos on
// logos.example are answered by the test with a PNG, every other outside
// request is aborted (the shipped providers' logos: the page shows their
// initial instead).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
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
    solidPng,
    solidPngDataUri,
    startServer,
    withServerLog
} from '../oidc/lib/bridgekeeper.mjs';
import { Browser, extractForm } from '../ts/lib/browser.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const SCREENSHOTS = path.resolve(here, 'screenshots');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const TEST_TIMEOUT_MS = 120_000;
const APP_SETTINGS = 'https://yourapp.com/settings/integrations';
const BRAND_RGB = 'rgb(79, 70, 229)';
const DESKTOP = { width: 1100, height: 900 };
const PHONE = { width: 390, height: 844 };

const CATALOG = `
[acme]
name = "Acme CRM"
description = "Deals, contacts and pipelines"
logo_url = "https://logos.example/acme.png"
auth = "api_key"
api_key = { label = "Acme API token", help = "In Acme, open Settings → API and create a token." }
tools = { kind = "http" }

[weather]
name = "Weather Desk"
description = "Forecasts for your team"
auth = "api_key"
api_key = { label = "Weather Desk key" }
tools = { kind = "http" }
`;

const rand = () => randomBytes(6).toString('hex');

describe('Connections page in Chromium, through the white-label handoff', () => {
    let server;
    let app;
    let context;
    let userDataDir;
    let catalogDir;
    const customer = { email: `customer-${rand()}@example.com`, password: `pw-${rand()}-correct horse` };
    const consoleLog = [];

    before(async () => {
        mkdirSync(SCREENSHOTS, { recursive: true });
        catalogDir = await mkdtemp(path.join(tmpdir(), 'bk-e2e-catalog-'));
        const catalog = path.join(catalogDir, 'providers.toml');
        writeFileSync(catalog, CATALOG);
        // startServer passes the environment on to the binary.
        process.env.BRIDGEKEEPER_CONNECTIONS__CATALOG_FILE = catalog;
        process.env.BRIDGEKEEPER_CONNECTIONS__PROVIDERS__GOOGLE__OAUTH2__CLIENT_ID = 'e2e-google-client';
        process.env.BRIDGEKEEPER_CONNECTIONS__PROVIDERS__GOOGLE__OAUTH2__CLIENT_SECRET = 'e2e-google-secret';
        server = await startServer();
        await withServerLog(server, async () => {
            const operator = await createOperatorToken(server.dataDir);
            app = await createWhitelabelClient(server.issuer, operator.token, {
                domains: ['yourapp.com'],
                allowedScopes: ['connections', 'account', 'openid'],
                branding: { logo: solidPngDataUri(32, 32, [0x4f, 0x46, 0xe5]) }
            });
            await signUp(server.issuer, customer.email, customer.password);
        });
        userDataDir = await mkdtemp(path.join(tmpdir(), 'bk-e2e-chromium-'));
        context = await chromium.launchPersistentContext(userDataDir, {
            executablePath: CHROMIUM,
            headless: true,
            args: ['--no-sandbox', '--headless', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-gpu'],
            viewport: DESKTOP,
            timeout: 60_000
        });
        // Nothing leaves this machine: our server, and logos answered here.
        const png = solidPng(48, 48, [0xe8, 0x59, 0x0c]);
        await context.route('**/*', route => {
            const url = new URL(route.request().url());
            if (url.origin === new URL(server.issuer).origin) return route.continue();
            if (url.hostname === 'logos.example') return route.fulfill({ status: 200, contentType: 'image/png', body: png });
            return route.abort('blockedbyclient');
        });
    });

    after(async () => {
        await context?.close().catch(() => {});
        if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
        if (catalogDir) await rm(catalogDir, { recursive: true, force: true });
        await server?.stop();
    });

    async function newPage(viewport = DESKTOP) {
        const page = await context.newPage();
        await page.setViewportSize(viewport);
        page.on('console', m => consoleLog.push(`[${m.type()}] ${page.url()} ${m.text()}`));
        page.on('pageerror', e => consoleLog.push(`[pageerror] ${page.url()} ${e.message}`));
        page.on('response', r => {
            if (r.status() >= 400) consoleLog.push(`[http ${r.status()}] ${r.request().method()} ${r.url()}`);
        });
        page.on('requestfailed', r => consoleLog.push(`[requestfailed] ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
        return page;
    }

    /** Console trouble on our origin since `from` (the aborted outside logos and favicon aside). */
    function trouble(from) {
        return consoleLog
            .slice(from)
            .filter(l => /Content Security Policy|Refused to|\[pageerror\]|\[http |\[requestfailed\]|\[error\]/i.test(l))
            .filter(l => !/blockedbyclient|ERR_BLOCKED_BY_CLIENT|favicon\.ico|yourapp\.com/.test(l));
    }

    /** The customer's access token for the app: the authorization code flow over HTTP, as the app's backend. */
    async function customerToken() {
        const b = new Browser(server.issuer);
        const login = await b.get('/login');
        const lf = extractForm(login.text, '/login');
        const signedIn = await b.post('/login', { csrf_token: lf.hidden.get('csrf_token'), next: '/', email: customer.email, password: customer.password });
        assert.equal(signedIn.status, 303);
        const verifier = randomBytes(32).toString('base64url');
        const u = new URL('/api/v1/auth/authorize', server.issuer);
        for (const [k, v] of Object.entries({
            response_type: 'code', client_id: app.clientId, redirect_uri: REDIRECT_URI, scope: 'connections account',
            state: 'st', code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256'
        })) u.searchParams.set(k, v);
        const toConsent = await b.get(u.href);
        assert.equal(toConsent.status, 303, toConsent.text);
        const consent = await b.get(toConsent.location);
        const cf = extractForm(consent.text, '/consent');
        const approved = await b.post('/consent', [...cf.hidden, ['decision', 'approve']]);
        assert.equal(approved.status, 303, approved.text);
        const code = new URL(approved.location).searchParams.get('code');
        const res = await fetch(new URL('/api/v1/auth/token', server.issuer), {
            method: 'POST',
            headers: {
                Authorization: `Basic ${Buffer.from(`${app.clientId}:${app.clientSecret}`).toString('base64')}`,
                'Content-Type': 'application/x-www-form-urlencoded'
            },
            body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: verifier })
        });
        const body = await res.json();
        assert.equal(res.status, 200, JSON.stringify(body));
        return body.access_token;
    }

    async function handoff(token) {
        const res = await fetch(new URL('/api/v1/auth/handoff/init', server.issuer), {
            method: 'POST',
            headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
            body: JSON.stringify({ clientId: app.clientId, clientSecret: app.clientSecret, redirectUri: APP_SETTINGS, intent: 'connections' })
        });
        const body = await res.json();
        assert.equal(res.status, 200, JSON.stringify(body));
        assert.equal(body.expiresIn, 30);
        return body.url;
    }

    /** What a person sees of the page's structure and branding. */
    async function readPage(page) {
        return page.evaluate(() => {
            const button = document.querySelector('#provider-acme button[type="submit"]');
            const key = document.querySelector('#key-acme');
            const label = key ? document.querySelector(`label[for="${key.id}"]`) : null;
            const overflow = document.documentElement.scrollWidth - document.documentElement.clientWidth;
            return {
                brandName: document.querySelector('.brand-name')?.textContent ?? null,
                brandLogoWidth: document.querySelector('img.brand-logo')?.naturalWidth ?? 0,
                back: [...document.querySelectorAll('p.back a')].map(a => ({ text: a.textContent, href: a.href })),
                h1: document.querySelector('h1')?.textContent,
                buttonBackground: button ? getComputedStyle(button).backgroundColor : null,
                buttonColor: button ? getComputedStyle(button).color : null,
                keyLabel: label?.textContent ?? null,
                keyType: key?.type ?? null,
                acmeLogoWidth: document.querySelector('#provider-acme img.logo')?.naturalWidth ?? 0,
                connections: [...document.querySelectorAll('section[aria-labelledby="yours"] li.card')].map(li => ({
                    name: li.querySelector('h3')?.textContent,
                    status: li.querySelector('.status')?.textContent
                })),
                scripts: document.querySelectorAll('script').length,
                horizontalOverflow: overflow
            };
        });
    }

    test('handoff → branded connections page → connect, disconnect, back to the app', { timeout: TEST_TIMEOUT_MS }, () =>
        withServerLog(server, async () => {
            await context.clearCookies();
            const token = await customerToken();
            const url = await handoff(token);
            const page = await newPage();
            const from = consoleLog.length;

            const response = await page.goto(url, { waitUntil: 'load' });
            assert.equal(new URL(page.url()).pathname, '/connections', `landed on the page: ${page.url()}`);
            assert.equal(response.status(), 200);
            await page.waitForFunction(() => [...document.images].every(i => i.complete));
            let seen = await readPage(page);
            assert.equal(seen.brandName, 'YourApp', JSON.stringify(seen));
            assert.equal(seen.brandLogoWidth, 32, 'the app logo (data: PNG) decoded');
            assert.equal(seen.h1, 'Connected services');
            assert.deepEqual(seen.back.map(b => b.href), [APP_SETTINGS, APP_SETTINGS]);
            assert.equal(seen.back[0].text, '← Back to YourApp');
            assert.equal(seen.buttonBackground, BRAND_RGB, 'buttons in the brand colour');
            assert.equal(seen.buttonColor, 'rgb(255, 255, 255)', 'white text on the dark brand colour');
            assert.equal(seen.keyLabel, 'Acme API token');
            assert.equal(seen.keyType, 'password');
            assert.equal(seen.acmeLogoWidth, 48, 'the provider logo (answered by the test) decoded');
            assert.equal(seen.scripts, 0);
            assert.deepEqual(seen.connections, []);
            await page.screenshot({ path: path.join(SCREENSHOTS, 'handoff-connections-desktop.png'), fullPage: true });

            // Submitting an empty key is refused by the browser (required); a blank one by the server, in words.
            await page.locator('#key-acme').fill('   ');
            await Promise.all([page.waitForLoadState('load'), page.locator('#provider-acme button[type="submit"]').click()]);
            await page.waitForSelector('p.error[role="alert"]');
            assert.equal(await page.locator('p.error[role="alert"]').textContent(), 'Enter your Acme API token to connect Acme CRM.');
            await page.screenshot({ path: path.join(SCREENSHOTS, 'handoff-connect-error-desktop.png'), fullPage: true });

            // Connect with a key, keyboard only: focus the field, type, Enter.
            await page.locator('#key-acme').focus();
            await page.keyboard.type('acme-live-key-123');
            await Promise.all([page.waitForURL(u => u.searchParams.get('status') === 'active'), page.keyboard.press('Enter')]);
            await page.waitForFunction(() => [...document.images].every(i => i.complete));
            assert.equal(await page.locator('p.notice[role="status"]').textContent(), 'Connected Acme CRM.');
            seen = await readPage(page);
            assert.deepEqual(seen.connections, [{ name: 'Acme CRM', status: 'Connected' }]);
            assert.ok(!(await page.content()).includes('acme-live-key-123'), 'the key is never shown');
            await page.screenshot({ path: path.join(SCREENSHOTS, 'handoff-connected-desktop.png'), fullPage: true });

            // Phone width: one column, nothing wider than the screen.
            await page.setViewportSize(PHONE);
            seen = await readPage(page);
            assert.ok(seen.horizontalOverflow <= 0, `no horizontal scrolling at phone width: ${seen.horizontalOverflow}px`);
            await page.screenshot({ path: path.join(SCREENSHOTS, 'handoff-connected-phone.png'), fullPage: true });
            await page.setViewportSize(DESKTOP);

            // Disconnect.
            await Promise.all([page.waitForURL(u => u.searchParams.has('disconnected')), page.getByRole('button', { name: 'Disconnect Acme CRM' }).click()]);
            assert.equal(await page.locator('p.notice[role="status"]').textContent(), 'Disconnected.');
            seen = await readPage(page);
            assert.deepEqual(seen.connections, []);

            // Back to the app (nothing listens there: catch the navigation).
            const [backRequest] = await Promise.all([
                page.waitForRequest(r => r.url().startsWith(APP_SETTINGS)),
                page.locator('p.back a').first().click()
            ]);
            assert.equal(backRequest.url(), APP_SETTINGS);
            await page.waitForLoadState('load').catch(() => {});

            // The code worked once.
            const again = await newPage();
            const second = await again.goto(url, { waitUntil: 'load' });
            assert.equal(second.status(), 400);
            assert.equal(await again.locator('h1').textContent(), 'This link has expired');
            await again.close();

            // The blank key's 400 and the used code's 400 were asked for; nothing else may fail.
            const expected = l => l.includes('/connections/handoff?code=') || l.includes('/connections/connect');
            const bad = trouble(from).filter(l => !expected(l));
            assert.equal(trouble(from).filter(l => l.includes('[http 400] POST') && l.includes('/connections/connect')).length, 1);
            assert.deepEqual(bad, [], `no CSP violation, script error or failed request:\n${bad.join('\n')}`);
            await page.close();
        })
    );

    test('the connections page for a person signed in here, desktop and phone', { timeout: TEST_TIMEOUT_MS }, () =>
        withServerLog(server, async () => {
            await context.clearCookies();
            const page = await newPage();
            const from = consoleLog.length;
            await page.goto(new URL('/connections', server.issuer).href, { waitUntil: 'load' });
            assert.equal(new URL(page.url()).pathname, '/login', 'signed out: sent to sign in first');
            await page.locator('#email').fill(customer.email);
            await page.locator('#password').fill(customer.password);
            await Promise.all([page.waitForURL(u => u.pathname === '/connections'), page.locator('form button[type="submit"]').click()]);
            await page.waitForFunction(() => [...document.images].every(i => i.complete));
            let seen = await readPage(page);
            assert.equal(seen.brandName, null, 'no white-label branding on the site itself');
            assert.deepEqual(seen.back, []);

            // Connect two key services so the list has something to show.
            for (const [field, key] of [['#key-acme', 'k-acme'], ['#key-weather', 'k-weather']]) {
                await page.locator(field).fill(key);
                await Promise.all([page.waitForURL(u => u.searchParams.get('status') === 'active'), page.locator(field).press('Enter')]);
            }
            await page.waitForFunction(() => [...document.images].every(i => i.complete));
            seen = await readPage(page);
            assert.deepEqual(seen.connections.map(c => c.name).sort(), ['Acme CRM', 'Weather Desk']);
            // The shipped Google provider is configured here (oauth2: a plain Connect button); the
            // others are not, and are named as not available.
            assert.equal(await page.locator('#provider-google button').textContent(), 'Connect Google');
            assert.match(await page.locator('p.unavailable').textContent(), /^Not available on this server yet: .*Slack/);
            await page.screenshot({ path: path.join(SCREENSHOTS, 'connections-desktop.png'), fullPage: true });
            await page.setViewportSize(PHONE);
            seen = await readPage(page);
            assert.ok(seen.horizontalOverflow <= 0, `no horizontal scrolling at phone width: ${seen.horizontalOverflow}px`);
            await page.screenshot({ path: path.join(SCREENSHOTS, 'connections-phone.png'), fullPage: true });

            // Keyboard order: the first focusable things are the account link, then the first connection's buttons.
            await page.setViewportSize(DESKTOP);
            await page.goto(new URL('/connections', server.issuer).href, { waitUntil: 'load' });
            const order = [];
            for (let i = 0; i < 3; i++) {
                await page.keyboard.press('Tab');
                order.push(await page.evaluate(() => document.activeElement?.textContent?.trim() || document.activeElement?.id));
            }
            assert.equal(order[0], 'Account', `focus order: ${order}`);
            assert.match(order[1], /^Disconnect /, `focus order: ${order}`);

            const bad = trouble(from);
            assert.deepEqual(bad, [], `no CSP violation, script error or failed request:\n${bad.join('\n')}`);
            await page.close();
        })
    );
});
