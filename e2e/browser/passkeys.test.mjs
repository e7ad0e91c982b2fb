// End-to-end in a real browser: passkeys through Chromium's virtual authenticator (CDP
// WebAuthn.addVirtualAuthenticator: CTAP2, internal, resident keys, user verification). The
// server runs with the issuer http://localhost:PORT (WebAuthn needs a domain name). A person signs
// up, adds a passkey on /account/security/passkeys (through /static/passkeys.js, the only script
// the pages' CSP allows), signs out, signs in with the passkey alone (no email typed), then turns
// on an authenticator app and signs in with the password and the passkey as the second factor;
// removes the passkey and sees passkey sign-in refused. Screenshots in e2e/artifacts/; no CSP
// violation or script error.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { startServer } from '../ts/lib/server.mjs';
import { shoot } from './lib/shots.mjs';
import { totp } from './lib/totp.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = path.resolve(here, '..', 'artifacts');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const TEST_TIMEOUT_MS = 120_000;
const rand = () => randomBytes(6).toString('hex');
const PHONE = { width: 390, height: 844 };

describe('Passkeys in Chromium with a virtual authenticator', () => {
    let server;
    let browser;
    let page;
    let cdp;
    let authenticatorId;
    const person = { email: `passkey-${rand()}@example.com`, password: `pw-${rand()}-correct horse` };
    const consoleLog = [];

    before(async () => {
        mkdirSync(ARTIFACTS, { recursive: true });
        server = await startServer({ localhost: true });
        assert.match(server.issuer, /^http:\/\/localhost:\d+$/);
        browser = await chromium.launch({
            executablePath: CHROMIUM,
            headless: true,
            args: ['--no-sandbox', '--headless', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-gpu']
        });
        const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
        await context.route('**/*', route =>
            new URL(route.request().url()).origin === new URL(server.issuer).origin ? route.continue() : route.abort('blockedbyclient')
        );
        page = await context.newPage();
        page.on('console', m => consoleLog.push(`[${m.type()}] ${page.url()} ${m.text()}`));
        page.on('pageerror', e => consoleLog.push(`[pageerror] ${page.url()} ${e.message}`));
        cdp = await context.newCDPSession(page);
        await cdp.send('WebAuthn.enable');
        ({ authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
            options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true }
        }));
    });

    after(async () => {
        await browser?.close().catch(() => {});
        await server?.stop();
    });

    const at = p => `${server.issuer}${p}`;
    const main = () => page.locator('main').innerText();

    async function signOut() {
        await page.goto(at('/'));
        await page.getByRole('button', { name: 'Sign out', exact: true }).click();
        await page.waitForURL(/\/login/);
    }

    async function passwordSignIn() {
        await page.goto(at('/login'));
        await page.getByLabel('Email').fill(person.email);
        await page.getByLabel('Password').fill(person.password);
        await page.getByRole('button', { name: 'Sign in', exact: true }).click();
        await page.waitForLoadState();
    }

    test('a person adds a passkey and signs in with it alone', { timeout: TEST_TIMEOUT_MS }, async () => {
        await page.goto(at('/signup'));
        await page.getByLabel('Email').fill(person.email);
        await page.getByLabel('Password').fill(person.password);
        await page.getByRole('button', { name: 'Create account' }).click();
        await page.waitForURL(/\/login/);
        await passwordSignIn();

        await page.goto(at('/account/security/passkeys'));
        assert.match(await main(), /No passkeys yet/);
        await page.getByLabel('Name of the new passkey').fill('Test laptop');
        await page.getByRole('button', { name: 'Add a passkey' }).click();
        await page.waitForURL(/notice=added/);
        assert.match(await main(), /Passkey added/);
        assert.match(await main(), /Test laptop/);
        const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
        assert.equal(credentials.length, 1, 'one credential on the authenticator');
        assert.equal(credentials[0].isResidentCredential, true, 'discoverable');
        await shoot(page, 'account-passkeys');

        await signOut();
        await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
        await page.waitForURL(url => !url.pathname.startsWith('/login'));
        assert.match(await main(), new RegExp(person.email.replace(/[.]/g, '\\.')), 'signed in, no email typed');
    });

    test('with two-factor on, the passkey answers as the second factor after the password', { timeout: TEST_TIMEOUT_MS }, async () => {
        await page.goto(at('/account/security/totp'));
        const key = await page.locator('#totp-secret').innerText();
        await page.getByLabel('Code from the app').fill(totp(key));
        await page.getByRole('button', { name: 'Turn on two-factor sign-in' }).click();
        await page.waitForLoadState();
        assert.match(await main(), /Two-factor sign-in is on/);

        await signOut();
        await passwordSignIn();
        await page.waitForURL(/\/login\/second-factor/);
        await shoot(page, 'account-second-factor');
        await page.getByRole('button', { name: 'Use a passkey' }).click();
        await page.waitForURL(url => !url.pathname.startsWith('/login'));
        assert.match(await main(), new RegExp(person.email.replace(/[.]/g, '\\.')));
    });

    test('a removed passkey no longer signs in', { timeout: TEST_TIMEOUT_MS }, async () => {
        await page.goto(at('/account/security/passkeys'));
        await page.getByRole('button', { name: 'Remove Test laptop' }).click();
        await page.waitForURL(/notice=removed/);
        await signOut();
        await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
        await page.locator('#passkey-status').waitFor({ state: 'visible' });
        assert.match(await page.locator('#passkey-status').innerText(), /not accepted/);
        assert.match(page.url(), /\/login/);
    });

    test('no CSP violation or script error', () => {
        // The refused passkey answers 401 on purpose (the last test).
        const trouble = consoleLog
            .filter(l => /Content Security Policy|Refused to|\[pageerror\]|\[error\]/i.test(l))
            .filter(l => !/favicon\.ico|\/login Failed to load resource: .*status of 401/.test(l));
        assert.deepEqual(trouble, []);
    });
});
