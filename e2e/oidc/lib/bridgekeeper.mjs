// Set-up shared by e2e/oidc and e2e/browser: an operator token from the CLI,
// a white-label client through the clients API, a person signed up through
// the sign-up page, and a real PNG to use as a logo. Node built-ins only, so
// both test folders can import it whatever their own dependencies are.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { deflateSync } from 'node:zlib';

import { serverBinary, startServer } from '../../ts/lib/server.mjs';
import { Browser, extractForm } from '../../ts/lib/browser.mjs';

export { serverBinary, startServer };

const run = promisify(execFile);

/**
 * `bridgekeeper admin token create --name <name> --format json --data-dir <dataDir>`:
 * prints `{id, name, token}`. Runs beside the live server (same SQLite database).
 *
 * @returns {Promise<{id: string, token: string}>}
 */
export async function createOperatorToken(dataDir, name = 'e2e') {
    const { stdout, stderr } = await run(serverBinary(), ['admin', 'token', 'create', '--name', name, '--format', 'json', '--data-dir', dataDir], {
        env: { ...process.env, BRIDGEKEEPER_LOG_FORMAT: 'json' },
        timeout: 30_000
    });
    let printed;
    try {
        printed = JSON.parse(stdout);
    } catch {
        assert.fail(`admin token create --format json should print one JSON object; stdout:\n${stdout}\nstderr:\n${stderr}`);
    }
    const { id, token } = printed;
    assert.match(token, /^bko_/, `operator token should start with bko_; stdout:\n${stdout}`);
    return { id, token };
}

// --- A real PNG (8-bit RGB, one solid colour), written by hand with zlib. ---

const CRC_TABLE = (() => {
    const t = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
        let c = n;
        for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
        t[n] = c >>> 0;
    }
    return t;
})();

function crc32(buf) {
    let c = 0xffffffff;
    for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
}

/** A `width`×`height` PNG filled with `[r, g, b]`. */
export function solidPng(width = 32, height = 32, [r, g, b] = [0x4f, 0x46, 0xe5]) {
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(width, 0);
    ihdr.writeUInt32BE(height, 4);
    ihdr[8] = 8; // bit depth
    ihdr[9] = 2; // colour type: truecolour (RGB)
    ihdr[10] = 0; // compression
    ihdr[11] = 0; // filter
    ihdr[12] = 0; // no interlace
    const row = Buffer.alloc(1 + width * 3);
    row[0] = 0; // filter type: none
    for (let x = 0; x < width; x++) row.set([r, g, b], 1 + x * 3);
    const raw = Buffer.concat(Array.from({ length: height }, () => row));
    return Buffer.concat([
        Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
        chunk('IHDR', ihdr),
        chunk('IDAT', deflateSync(raw)),
        chunk('IEND', Buffer.alloc(0))
    ]);
}

/** The PNG above as a `data:` URI, the form `branding.logo` takes. */
export function solidPngDataUri(...args) {
    return `data:image/png;base64,${solidPng(...args).toString('base64')}`;
}

export const REDIRECT_URI = 'http://127.0.0.1:53682/callback';

/**
 * `POST /api/v1/auth-clients` as the operator: a white-label client. `overrides`
 * are merged into the request body (branding merged one level deep).
 *
 * @returns {Promise<{clientId: string, clientSecret?: string, client: object, request: object}>}
 */
export async function createWhitelabelClient(issuer, operatorToken, overrides = {}) {
    const { branding, ...rest } = overrides;
    const request = {
        name: 'YourApp',
        type: 'confidential',
        roles: ['whitelabel-customer'],
        domains: ['yourapp.com'],
        redirectUris: [REDIRECT_URI],
        allowedScopes: ['universal-mcp-read-write', 'account', 'openid', 'profile', 'email'],
        ...rest,
        branding: {
            logo: solidPngDataUri(),
            description: 'YourApp — AI-powered workspace',
            brandColor: '#4F46E5',
            ...branding
        }
    };
    const res = await fetch(new URL('/api/v1/auth-clients', issuer), {
        method: 'POST',
        headers: { Authorization: `Bearer ${operatorToken}`, 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify(request)
    });
    const text = await res.text();
    assert.equal(res.status, 201, `POST /api/v1/auth-clients should be 201; got ${res.status}: ${text}`);
    const body = JSON.parse(text);
    assert.match(body.clientId ?? '', /^cli_/, `201 body should carry clientId: ${text}`);
    if (request.type === 'confidential') assert.ok(body.clientSecret, `a confidential client gets a clientSecret: ${text}`);
    assert.equal(body.client?.id, body.clientId, `client.id is the clientId: ${text}`);
    return { ...body, request };
}

/** Creates an account through the sign-up page (its own cookie jar). */
export async function signUp(issuer, email, password) {
    const browser = new Browser(issuer);
    const page = await browser.get('/signup');
    assert.equal(page.status, 200, `GET /signup: ${page.status} ${page.text}`);
    const form = extractForm(page.text, '/signup');
    assert.ok(form.hidden.get('csrf_token'), 'sign-up form carries a csrf_token');
    const res = await browser.post('/signup', {
        csrf_token: form.hidden.get('csrf_token'),
        next: form.hidden.get('next') ?? '',
        email,
        password
    });
    assert.equal(res.status, 303, `POST /signup should be a 303; got ${res.status}: ${res.text}`);
}

/** Runs `fn`; on failure appends the server's recent log lines to the error. */
export async function withServerLog(server, fn) {
    try {
        return await fn();
    } catch (err) {
        if (server && err && typeof err === 'object') {
            try {
                err.message += `\n--- server log (tail) ---\n${server.logTail()}`;
            } catch {
                // message not writable: leave it
            }
        }
        throw err;
    }
}
