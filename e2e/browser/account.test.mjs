// End-to-end in a real browser with real mail: the server sends over SMTP (email.smtp_url) to a
// local sink (aiosmtpd from PyPI, smtp_sink.py, in e2e/browser/.venv), and Chromium does what a
// person does — signs up, opens the verification link from the message received, signs out,
// asks for a password reset from the sign-in page, opens the reset link from the second message,
// sets a new password, and signs in with it (the old one no longer works). The reset link is
// refused when opened again. No CSP violation, script error or failed request on our origin.
// Screenshots of the forgot-password, reset and verified pages in e2e/artifacts/.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

import { chromium } from 'playwright-core';

import { startServer } from '../oidc/lib/bridgekeeper.mjs';
import { shoot } from './lib/shots.mjs';
import { totp } from './lib/totp.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = path.resolve(here, '..', 'artifacts');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const TEST_TIMEOUT_MS = 120_000;
const rand = () => randomBytes(6).toString('hex');
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const PHONE = { width: 390, height: 844 };

/** e2e/browser/.venv with requirements-smtp.txt installed (created or updated when it changed). */
function smtpPython() {
    const venv = path.join(here, '.venv');
    const python = path.join(venv, 'bin', 'python');
    const requirements = path.join(here, 'requirements-smtp.txt');
    const stamp = path.join(venv, '.e2e-requirements-stamp');
    const run = (cmd, args) => execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 300_000 });
    if (!existsSync(python)) run(process.env.PYTHON || 'python3', ['-m', 'venv', venv]);
    const locked = readFileSync(requirements);
    if (!existsSync(stamp) || !readFileSync(stamp).equals(locked)) {
        run(python, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '-r', requirements]);
        copyFileSync(requirements, stamp);
    }
    return python;
}

/** Starts the sink; resolves with {port, messages (array of {to, text}), stop}. */
async function startSink(dir) {
    const child = spawn(smtpPython(), ['-u', path.join(here, 'smtp_sink.py'), dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    const messages = [];
    let stderr = '';
    child.stderr.on('data', c => (stderr += c));
    const port = await new Promise((resolve, reject) => {
        let buf = '';
        child.stdout.on('data', chunk => {
            buf += chunk;
            let nl;
            while ((nl = buf.indexOf('\n')) >= 0) {
                const line = JSON.parse(buf.slice(0, nl));
                buf = buf.slice(nl + 1);
                if (line.port) resolve(line.port);
                else messages.push({ to: line.to, text: decode(readFileSync(line.file, 'latin1')) });
            }
        });
        child.once('exit', code => reject(new Error(`smtp sink exited (${code}): ${stderr}`)));
    });
    return { port, messages, stop: () => child.kill('SIGTERM') };
}

/** A received message's text with quoted-printable undone (long lines are sent that way). */
function decode(raw) {
    return raw.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
}

describe('Verification and password reset by real mail, in Chromium', () => {
    let server;
    let sink;
    let context;
    let mailDir;
    const person = { email: `person-${rand()}@example.com`, password: `first-${rand()}-password`, next: `second-${rand()}-password` };
    const consoleLog = [];

    before(async () => {
        mkdirSync(ARTIFACTS, { recursive: true });
        mailDir = await mkdtemp(path.join(tmpdir(), 'bk-e2e-mail-'));
        sink = await startSink(mailDir);
        process.env.BRIDGEKEEPER_SMTP_URL = `smtp://127.0.0.1:${sink.port}`;
        process.env.BRIDGEKEEPER_EMAIL__FROM = 'Bridgekeeper <no-reply@bk.example>';
        try {
            server = await startServer();
        } finally {
            delete process.env.BRIDGEKEEPER_SMTP_URL;
            delete process.env.BRIDGEKEEPER_EMAIL__FROM;
        }
        const browser = await chromium.launch({
            executablePath: CHROMIUM,
            headless: true,
            args: ['--no-sandbox', '--headless', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-gpu']
        });
        context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
        await context.route('**/*', route =>
            new URL(route.request().url()).origin === new URL(server.issuer).origin ? route.continue() : route.abort('blockedbyclient')
        );
    });

    after(async () => {
        await context?.browser()?.close().catch(() => {});
        sink?.stop();
        await server?.stop();
        if (mailDir) await rm(mailDir, { recursive: true, force: true });
    });

    async function newPage() {
        const page = await context.newPage();
        page.on('console', m => consoleLog.push(`[${m.type()}] ${page.url()} ${m.text()}`));
        page.on('pageerror', e => consoleLog.push(`[pageerror] ${page.url()} ${e.message}`));
        page.on('requestfailed', r => consoleLog.push(`[requestfailed] ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
        return page;
    }

    /** The newest message to `to` whose subject is `subject` (waits for it). */
    async function mail(to, subject) {
        const deadline = Date.now() + 15_000;
        for (;;) {
            const m = [...sink.messages].reverse().find(x => x.to.includes(to) && x.text.includes(`Subject: ${subject}`));
            if (m) {
                assert.match(m.text, /From: Bridgekeeper <no-reply@bk\.example>/);
                return m.text;
            }
            assert.ok(Date.now() < deadline, `no message "${subject}" to ${to}: ${JSON.stringify(sink.messages.map(x => x.to))}`);
            await sleep(100);
        }
    }

    /** The link to `pathname` in that message. */
    async function linkFrom(to, subject, pathname) {
        const text = await mail(to, subject);
        const link = text.match(new RegExp(`https?://\\S+${pathname}\\?token=[A-Za-z0-9_-]+`));
        assert.ok(link, text);
        assert.ok(link[0].startsWith(server.issuer), 'links point at the issuer');
        return link[0];
    }

    async function signIn(page, password) {
        await page.goto(`${server.issuer}/login`);
        await page.getByLabel('Email').fill(person.email);
        await page.getByLabel('Password').fill(password);
        await page.getByRole('button', { name: 'Sign in' }).click();
        await page.waitForLoadState();
    }

    test('a person verifies the address from the message the sign-up sent', { timeout: TEST_TIMEOUT_MS }, async () => {
        const page = await newPage();
        await page.goto(`${server.issuer}/signup`);
        await page.getByLabel('Email').fill(person.email);
        await page.getByLabel('Password').fill(person.password);
        await page.getByRole('button', { name: /Create|Sign up/ }).click();
        await page.waitForURL(/\/login\?/);
        assert.match(await page.locator('.notice').innerText(), /we sent it a link to verify it/);
        const link = await linkFrom(person.email, 'Verify your email address', '/verify-email');
        await page.goto(link);
        assert.match(await page.locator('main').innerText(), new RegExp(`${person.email.replace(/[.]/g, '\\.')} is verified`));
        await shoot(page, 'account-email-verified');
        await page.goto(link);
        assert.match(await page.locator('main').innerText(), /used already/);
        await page.close();
    });

    test('a forgotten password is reset through the emailed link, once', { timeout: TEST_TIMEOUT_MS }, async () => {
        const page = await newPage();
        await signIn(page, person.password);
        assert.match(await page.locator('main').innerText(), new RegExp(person.email.replace(/[.]/g, '\\.')));
        await page.getByRole('button', { name: 'Sign out', exact: true }).click();
        await page.waitForURL(/\/login/);

        await page.getByRole('link', { name: 'Forgot your password?' }).click();
        await page.waitForURL(/\/forgot-password/);
        await page.getByLabel('Email').fill(person.email);
        await shoot(page, 'account-forgot-password');
        await page.getByRole('button', { name: 'Send the link' }).click();
        await page.waitForLoadState();
        assert.match(await page.locator('.notice').innerText(), /If an account uses this address/);

        const link = await linkFrom(person.email, 'Reset your password', '/reset-password');
        await page.goto(link);
        await page.getByLabel('New password').fill(person.next);
        await shoot(page, 'account-reset-password');
        await page.getByRole('button', { name: 'Change the password' }).click();
        await page.waitForURL(/\/login\?reset=1/);
        assert.match(await page.locator('.notice').innerText(), /Your password was changed/);
        assert.match(await mail(person.email, 'Your password was reset'), /every browser signed in to it was signed out/);

        await signIn(page, person.password);
        assert.match(await page.locator('.error').innerText(), /Invalid email or password/);
        await signIn(page, person.next);
        assert.match(await page.locator('main').innerText(), new RegExp(person.email.replace(/[.]/g, '\\.')));

        await page.goto(link);
        assert.match(await page.locator('main').innerText(), /used already/);
        await page.close();
    });

    test('two-factor sign-in: the authenticator set up from the page’s key, its code asked after the password', { timeout: TEST_TIMEOUT_MS }, async () => {
        const page = await newPage();
        await signIn(page, person.next);
        await page.goto(`${server.issuer}/account/security/totp`);
        assert.ok(await page.locator('img.qr').getAttribute('src').then(src => src.startsWith('data:image/svg+xml;base64,')), 'a QR code');
        const key = await page.locator('#totp-secret').innerText();
        await shoot(page, 'account-totp-enrol');
        await page.getByLabel('Code from the app').fill(totp(key));
        await page.getByRole('button', { name: 'Turn on two-factor sign-in' }).click();
        await page.waitForLoadState();
        const codes = await page.locator('.recovery-codes code').allInnerTexts();
        assert.equal(codes.length, 10);
        person.recovery = codes;
        await shoot(page, 'account-recovery-codes');
        assert.match(await mail(person.email, 'A sign-in method was added to your account'), /authenticator app/);
        await page.getByRole('link', { name: /I saved them/ }).click();

        await page.goto(`${server.issuer}/`);
        await page.getByRole('button', { name: 'Sign out', exact: true }).click();
        await page.waitForURL(/\/login/);
        await signIn(page, person.next);
        await page.waitForURL(/\/login\/second-factor/);
        assert.match(await page.locator('main').innerText(), /authenticator app/);
        // The code of the next step (the enrolment spent this one; one step of skew is allowed).
        await page.getByLabel('Code').fill(totp(key, Date.now() + 30_000));
        await page.getByRole('button', { name: 'Continue' }).click();
        await page.waitForURL(url => !url.pathname.startsWith('/login'));
        assert.match(await page.locator('main').innerText(), new RegExp(person.email.replace(/[.]/g, '\\.')));
        await page.close();
    });

    test('the sign-in, recovery and security pages pass an axe-core scan (no serious or critical violation)', { timeout: TEST_TIMEOUT_MS }, async () => {
        // axe is injected as an inline script, which the pages' CSP refuses: this context alone bypasses it.
        const scanning = await context.browser().newContext({ bypassCSP: true, viewport: { width: 1100, height: 900 } });
        const page = await scanning.newPage();
        const scan = async name => {
            for (const viewport of [{ width: 1100, height: 900 }, PHONE]) {
                await page.setViewportSize(viewport);
                await page.addScriptTag({ content: AXE });
                const violations = await page.evaluate(async () =>
                    (await window.axe.run(document, { resultTypes: ['violations'] })).violations.map(v => ({ id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 3) }))
                );
                const grave = violations.filter(v => v.impact === 'serious' || v.impact === 'critical');
                assert.deepEqual(grave, [], `${name} at ${viewport.width}px: ${JSON.stringify(grave)}`);
            }
        };
        for (const p of ['/login', '/signup', '/forgot-password']) {
            await page.goto(`${server.issuer}${p}`);
            await scan(p);
        }
        // The reset page, from a real link.
        const other = { email: `axe-${rand()}@example.com`, password: `axe-${rand()}-password` };
        await page.goto(`${server.issuer}/signup`);
        await page.getByLabel('Email').fill(other.email);
        await page.getByLabel('Password').fill(other.password);
        await page.getByRole('button', { name: 'Create account' }).click();
        await page.waitForURL(/\/login/);
        await page.goto(`${server.issuer}/forgot-password`);
        await page.getByLabel('Email').fill(other.email);
        await page.getByRole('button', { name: 'Send the link' }).click();
        await page.waitForLoadState();
        await page.goto(await linkFrom(other.email, 'Reset your password', '/reset-password'));
        await scan('/reset-password');
        // Signed in: the pages of the security section, the enrolment page included.
        await page.goto(`${server.issuer}/login`);
        await page.getByLabel('Email').fill(other.email);
        await page.getByLabel('Password').fill(other.password);
        await page.getByRole('button', { name: 'Sign in', exact: true }).click();
        await page.waitForLoadState();
        for (const p of ['/account/security/totp', '/account/email', '/account/security/passkeys']) {
            await page.goto(`${server.issuer}${p}`);
            await scan(p);
        }
        // The second-factor page, as the person with an authenticator sees it.
        await page.goto(`${server.issuer}/`);
        await page.getByRole('button', { name: 'Sign out', exact: true }).click();
        await page.waitForURL(/\/login/);
        await page.getByLabel('Email').fill(person.email);
        await page.getByLabel('Password').fill(person.next);
        await page.getByRole('button', { name: 'Sign in', exact: true }).click();
        await page.waitForURL(/\/login\/second-factor/);
        await scan('/login/second-factor');
        // A recovery code works there, once.
        await page.getByLabel('Code').fill(person.recovery[0]);
        await page.getByRole('button', { name: 'Continue' }).click();
        await page.waitForURL(url => !url.pathname.startsWith('/login'));
        await page.goto(`${server.issuer}/account/security/totp`);
        assert.match(await page.locator('main').innerText(), /9 unused recovery codes left/);
        await scan('/account/security/totp (on)');
        await scanning.close();
    });

    test('no CSP violation, script error or failed request', () => {
        // The answers meant to be errors (a used link: 400; the old password: 401) are not trouble.
        const expected = /\/(verify-email|reset-password)\?token=\S+ Failed to load resource: .*status of 400|\/login Failed to load resource: .*status of 401/;
        const trouble = consoleLog
            .filter(l => /Content Security Policy|Refused to|\[pageerror\]|\[requestfailed\]|\[error\]/i.test(l))
            // (A subresource cut off by the next navigation, net::ERR_ABORTED, is the test moving on, not a failure.)
            .filter(l => !/blockedbyclient|favicon\.ico|net::ERR_ABORTED/.test(l) && !expected.test(l));
        assert.deepEqual(trouble, []);
    });
});
