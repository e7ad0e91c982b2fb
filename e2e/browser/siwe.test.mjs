// End-to-end in a real browser: the login page's "Sign in with Ethereum" button, through the page's
// own /static/siwe.js (the only script the pages' CSP allows), with an EIP-1193 wallet injected as
// `window.ethereum` before any page script runs (an init script). The wallet is minimal but real: it
// holds a secp256k1 key and answers `personal_sign` with an EIP-191 signature made by
// @noble/curves (Keccak-256 from @noble/hashes) in this test process, reached through a function
// exposed to the page; no verification is skipped on the server. Without a wallet the button stays
// hidden; with one, clicking it signs up and lands signed in, and the account lists the address;
// a wallet that refuses to sign shows why and signs nobody in. Screenshots in e2e/artifacts/.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { secp256k1 } from '@noble/curves/secp256k1.js';
import { keccak_256 } from '@noble/hashes/sha3.js';
import { chromium } from 'playwright-core';

import { startServer } from '../ts/lib/server.mjs';
import { shoot } from './lib/shots.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const TEST_TIMEOUT_MS = 120_000;

const hex = bytes => Buffer.from(bytes).toString('hex');

/** A wallet: a fresh secp256k1 key, its address (lower case and EIP-55), and what it signed. */
function newWallet() {
    const { secretKey, publicKey } = secp256k1.keygen();
    const uncompressed = secp256k1.Point.fromBytes(publicKey).toBytes(false);
    const lower = hex(keccak_256(uncompressed.slice(1)).slice(12));
    const digest = keccak_256(new TextEncoder().encode(lower));
    const checksummed =
        '0x' +
        [...lower]
            .map((c, i) => ((i % 2 === 0 ? digest[i >> 1] >> 4 : digest[i >> 1] & 0xf) >= 8 ? c.toUpperCase() : c))
            .join('');
    const signed = [];
    return {
        address: `0x${lower}`,
        checksummed,
        signed,
        refuse: false,
        /** EIP-191 personal_sign of the UTF-8 bytes given as hex: r, s and v = 27 + recovery id. */
        personalSign(messageHex) {
            const message = Buffer.from(messageHex.replace(/^0x/, ''), 'hex');
            signed.push(message.toString('utf8'));
            const prefix = Buffer.from(`\x19Ethereum Signed Message:\n${message.length}`, 'utf8');
            const recovered = secp256k1.sign(keccak_256(Buffer.concat([prefix, message])), secretKey, {
                prehash: false,
                format: 'recovered'
            });
            return `0x${hex(recovered.slice(1))}${(27 + recovered[0]).toString(16)}`;
        }
    };
}

/** The page side of the wallet: EIP-1193 `request` over the function the test exposes. */
function injectProvider({ address }) {
    window.ethereum = {
        isTestWallet: true,
        async request({ method, params }) {
            switch (method) {
                case 'eth_requestAccounts':
                case 'eth_accounts':
                    return [address];
                case 'eth_chainId':
                    return '0x1';
                case 'personal_sign': {
                    if (String(params[1]).toLowerCase() !== address) throw Object.assign(new Error('unknown account'), { code: 4100 });
                    const signature = await window.__bkTestWalletSign(params[0]);
                    if (!signature) throw Object.assign(new Error('User rejected the request.'), { code: 4001 });
                    return signature;
                }
                default:
                    throw Object.assign(new Error(`unsupported method ${method}`), { code: 4200 });
            }
        }
    };
}

describe('Sign-In with Ethereum in Chromium with an injected wallet', () => {
    let server;
    let browser;
    const consoleLog = [];

    before(async () => {
        server = await startServer();
        browser = await chromium.launch({
            executablePath: CHROMIUM,
            headless: true,
            args: ['--no-sandbox', '--headless', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-gpu']
        });
    });

    after(async () => {
        await browser?.close().catch(() => {});
        await server?.stop();
    });

    const at = p => `${server.issuer}${p}`;

    /** A fresh browser context (its own cookies), with `wallet` injected when given. */
    async function newPage(wallet) {
        const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
        await context.route('**/*', route =>
            new URL(route.request().url()).origin === new URL(server.issuer).origin ? route.continue() : route.abort('blockedbyclient')
        );
        if (wallet) {
            await context.exposeFunction('__bkTestWalletSign', messageHex => (wallet.refuse ? null : wallet.personalSign(messageHex)));
            await context.addInitScript(injectProvider, { address: wallet.address });
        }
        const page = await context.newPage();
        page.on('console', m => consoleLog.push(`[${m.type()}] ${page.url()} ${m.text()}`));
        page.on('pageerror', e => consoleLog.push(`[pageerror] ${page.url()} ${e.message}`));
        return page;
    }

    const button = page => page.getByRole('button', { name: 'Sign in with Ethereum' });

    test('without a wallet the button stays hidden', { timeout: TEST_TIMEOUT_MS }, async () => {
        const page = await newPage(null);
        await page.goto(at('/login'));
        assert.equal(await page.locator('[data-siwe="sign_in"]').count(), 1, 'the button is on the page');
        assert.equal(await button(page).isVisible(), false);
        await page.context().close();
    });

    test('the wallet button signs up, lands signed in, and signs in again', { timeout: TEST_TIMEOUT_MS }, async () => {
        const wallet = newWallet();
        const page = await newPage(wallet);
        await page.goto(at('/login'));
        await button(page).waitFor({ state: 'visible' });
        await shoot(page, 'login-siwe');
        await button(page).click();
        await page.waitForURL(url => new URL(url).pathname === '/', { timeout: 30_000 });
        // The wallet signed one EIP-4361 message for this server, with the server's nonce.
        assert.equal(wallet.signed.length, 1);
        const message = wallet.signed[0];
        const host = new URL(server.issuer).host;
        assert.ok(message.startsWith(`${host} wants you to sign in with your Ethereum account:\n${wallet.checksummed}\n`), message);
        assert.match(message, /\nURI: http:\/\/[^\n]+\nVersion: 1\nChain ID: 1\nNonce: [0-9a-f]{32}\nIssued At: /);
        // Signed in: the account API answers (session cookie), without the placeholder address.
        const me = await page.evaluate(async () => (await fetch('/api/v1/account', { credentials: 'same-origin' })).json());
        assert.match(me.id, /^acc_/);
        assert.equal(me.email, undefined, JSON.stringify(me));
        await page.goto(at('/account/security/wallets'));
        assert.ok((await page.locator('main').innerText()).includes(wallet.checksummed), 'the wallets page lists the address');
        await shoot(page, 'account-wallets');

        // Another browser, the same wallet: the same account.
        const again = await newPage(wallet);
        await again.goto(at('/login'));
        await button(again).click();
        await again.waitForURL(url => new URL(url).pathname === '/', { timeout: 30_000 });
        const me2 = await again.evaluate(async () => (await fetch('/api/v1/account', { credentials: 'same-origin' })).json());
        assert.equal(me2.id, me.id);
        assert.equal(wallet.signed.length, 2);
        await again.context().close();
        await page.context().close();
    });

    test('a wallet that refuses to sign shows why and signs nobody in', { timeout: TEST_TIMEOUT_MS }, async () => {
        const wallet = newWallet();
        wallet.refuse = true;
        const page = await newPage(wallet);
        await page.goto(at('/login'));
        await button(page).click();
        const status = page.locator('#siwe-status');
        await status.waitFor({ state: 'visible' });
        assert.equal(await status.innerText(), 'The request was refused in the wallet.');
        assert.equal(new URL(page.url()).pathname, '/login');
        const res = await page.evaluate(async () => (await fetch('/api/v1/account', { credentials: 'same-origin' })).status);
        assert.equal(res, 401);
        await page.context().close();
    });

    test('no CSP violation or script error', () => {
        // The signed-out account request answers 401 on purpose (the last test).
        const trouble = consoleLog
            .filter(l => /Content Security Policy|Refused to|\[pageerror\]|\[error\]/i.test(l))
            .filter(l => !/favicon\.ico|\/login Failed to load resource: .*status of 401/.test(l));
        assert.deepEqual(trouble, []);
    });
});
