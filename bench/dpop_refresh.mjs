#!/usr/bin/env node
// Refresh-token grants per second for bearer and for DPoP-bound (RFC 9449) refresh tokens, with
// one load generator in one process, so the two figures compare fairly (wrk's Lua cannot sign the
// ES256 proof a DPoP-bound refresh needs). Node.js >= 20, standard library only (node:http,
// node:crypto: P-256 keys and ES256 signatures from OpenSSL; no npm package).
//
//   node bench/dpop_refresh.mjs BASE_URL CODES_FILE CONNS SECONDS ROUNDS SERVER_PID CLK_TCK
//
// CODES_FILE: "client_id code code_verifier redirect_uri" lines (setup_tokens.py --codes-only), at
// least 2 × CONNS, all of one public client, not yet redeemed (codes live 60 s). The first CONNS
// are redeemed without a proof (bearer grants), the next CONNS each with a proof by a key of its
// own (DPoP-bound grants: every refresh needs a fresh proof by that key). Then ROUNDS rounds, each
// one run per kind in alternating order (bearer, dpop, then dpop, bearer, ...), SECONDS each: CONNS
// workers, one keep-alive connection and one grant chain each, refresh again and again, keeping
// the rotated token (a token is never sent twice). A DPoP worker signs a new proof (new jti,
// current iat) for every request, as a client does; the request is timed from after the signing.
// Each run also measures the CPU of the server (SERVER_PID, /proc), of this process and of the
// machine. Prints key=value lines (prefix dpop_refresh_).
import http from 'node:http';
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';

const [base, codesFile, connsArg, secondsArg, roundsArg, serverPidArg, clkTckArg] = process.argv.slice(2);
if (!clkTckArg) {
    console.error('usage: dpop_refresh.mjs BASE_URL CODES_FILE CONNS SECONDS ROUNDS SERVER_PID CLK_TCK');
    process.exit(2);
}
const CONNS = Number(connsArg);
const SECONDS = Number(secondsArg);
const ROUNDS = Number(roundsArg);
const SERVER_PID = Number(serverPidArg);
const CLK_TCK = Number(clkTckArg);
const origin = new URL(base);
const TOKEN_PATH = '/api/v1/auth/token';
const HTU = `${origin.origin}${TOKEN_PATH}`;
const agent = new http.Agent({ keepAlive: true, maxSockets: CONNS });

const b64url = buf => Buffer.from(buf).toString('base64url');

/** POST form `body` to the token endpoint: {status, json}. */
function post(headers, body) {
    return new Promise((resolve, reject) => {
        const req = http.request(
            {
                agent,
                host: origin.hostname,
                port: origin.port,
                path: TOKEN_PATH,
                method: 'POST',
                headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body), ...headers }
            },
            res => {
                const chunks = [];
                res.on('data', c => chunks.push(c));
                res.on('end', () => {
                    const text = Buffer.concat(chunks).toString('utf8');
                    let json;
                    try {
                        json = JSON.parse(text);
                    } catch {
                        json = { unparsed: text.slice(0, 300) };
                    }
                    resolve({ status: res.statusCode, json });
                });
                res.on('error', reject);
            }
        );
        req.on('error', reject);
        req.end(body);
    });
}

/** A client's DPoP key: a P-256 pair, its proof header (fixed per key, as client libraries cache it). */
function dpopKey() {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const { kty, crv, x, y } = publicKey.export({ format: 'jwk' });
    const header = b64url(JSON.stringify({ typ: 'dpop+jwt', alg: 'ES256', jwk: { kty, crv, x, y } }));
    return {
        /** A fresh proof for POST at the token endpoint (ES256: the raw r||s signature JWS wants). */
        proof() {
            const claims = { jti: b64url(randomBytes(16)), htm: 'POST', htu: HTU, iat: Math.floor(Date.now() / 1000) };
            const input = `${header}.${b64url(JSON.stringify(claims))}`;
            return `${input}.${b64url(sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }))}`;
        }
    };
}

const form = o => new URLSearchParams(o).toString();

/** Redeems one code; with `key`, with a proof (a DPoP-bound grant). Returns the chain. */
async function redeem([clientId, code, verifier, redirectUri], key) {
    const headers = key ? { dpop: key.proof() } : {};
    const { status, json } = await post(
        headers,
        form({ grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: redirectUri, client_id: clientId })
    );
    const want = key ? 'DPoP' : 'Bearer';
    if (status !== 200 || !json.refresh_token || json.token_type !== want) {
        throw new Error(`code exchange (${want}): ${status} ${JSON.stringify(json).slice(0, 300)}`);
    }
    return { clientId, refreshToken: json.refresh_token, key, alive: true };
}

const procTicks = pid => {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from 3 (state) on
    return Number(f[11]) + Number(f[12]); // utime, stime (fields 14, 15)
};
const machineTicks = () => {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const total = f.reduce((a, b) => a + b, 0);
    return { busy: total - f[3] - f[4], total }; // idle, iowait
};
const CORES = readFileSync('/proc/stat', 'utf8').split('\n').filter(l => /^cpu\d/.test(l)).length;

/** One run of `kind` over `chains`: every worker refreshes its chain until the deadline. */
async function run(kind, chains) {
    const latencies = [];
    let ok = 0;
    let failed = 0;
    let firstError = '';
    const s0 = procTicks(SERVER_PID);
    const m0 = machineTicks();
    const c0 = process.cpuUsage();
    const started = performance.now();
    const deadline = started + SECONDS * 1000;
    const want = kind === 'dpop' ? 'DPoP' : 'Bearer';
    await Promise.all(
        chains.map(async chain => {
            while (chain.alive && performance.now() < deadline) {
                const body = form({ grant_type: 'refresh_token', refresh_token: chain.refreshToken, client_id: chain.clientId });
                const headers = chain.key ? { dpop: chain.key.proof() } : {};
                const t0 = performance.now();
                let answer;
                try {
                    answer = await post(headers, body);
                } catch (e) {
                    answer = { status: 0, json: { error: String(e) } };
                }
                latencies.push(performance.now() - t0);
                const { status, json } = answer;
                if (status === 200 && json.refresh_token && json.token_type === want) {
                    ok += 1;
                    chain.refreshToken = json.refresh_token;
                } else {
                    // The chain is lost (a refused refresh token is not retried).
                    failed += 1;
                    chain.alive = false;
                    firstError ||= `${status} ${JSON.stringify(json).slice(0, 200)}`;
                }
            }
        })
    );
    const elapsed = (performance.now() - started) / 1000;
    const c1 = process.cpuUsage(c0);
    const m1 = machineTicks();
    const s1 = procTicks(SERVER_PID);
    const wall = (m1.total - m0.total) / CORES / CLK_TCK;
    const serverCpu = (s1 - s0) / CLK_TCK;
    const clientCpu = (c1.user + c1.system) / 1e6;
    latencies.sort((a, b) => a - b);
    const pct = p => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] : 0);
    return {
        grants_per_s: ok / elapsed,
        grants: ok,
        failures: failed,
        latency_p50_ms: pct(50),
        latency_p99_ms: pct(99),
        server_cpu_cores: serverCpu / wall,
        client_cpu_cores: clientCpu / wall,
        machine_busy_pct: (100 * (m1.busy - m0.busy)) / (m1.total - m0.total),
        server_cpu_us_per_grant: ok ? (1e6 * serverCpu) / ok : 0,
        client_cpu_us_per_grant: ok ? (1e6 * clientCpu) / ok : 0,
        first_error: firstError
    };
}

const lines = readFileSync(codesFile, 'utf8')
    .split('\n')
    .map(l => l.trim().split(/\s+/))
    .filter(f => f.length === 4);
if (lines.length < 2 * CONNS) throw new Error(`${codesFile}: ${lines.length} codes, need ${2 * CONNS}`);
const chains = {
    bearer: await Promise.all(lines.slice(0, CONNS).map(l => redeem(l, undefined))),
    dpop: await Promise.all(lines.slice(CONNS, 2 * CONNS).map(l => redeem(l, dpopKey())))
};
console.log(`dpop_refresh_setup=${CONNS} bearer + ${CONNS} DPoP-bound grants (one key each), ${CONNS} connections, ${SECONDS}s per run, ${ROUNDS} rounds`);

const results = { bearer: [], dpop: [] };
for (let r = 1; r <= ROUNDS; r++) {
    for (const kind of r % 2 ? ['bearer', 'dpop'] : ['dpop', 'bearer']) {
        const res = await run(kind, chains[kind]);
        results[kind].push(res);
        const fmt = v => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : v);
        for (const [k, v] of Object.entries(res)) if (k !== 'first_error' || v) console.log(`dpop_refresh_${kind}_r${r}_${k}=${fmt(v)}`);
        // Let the server's audit writer drain before the next run.
        await new Promise(resolve => setTimeout(resolve, 1000));
    }
}

const mean = (xs, k) => xs.reduce((a, x) => a + x[k], 0) / (xs.length || 1);
const sum = (xs, k) => xs.reduce((a, x) => a + x[k], 0);
for (const kind of ['bearer', 'dpop']) {
    const xs = results[kind];
    console.log(`dpop_refresh_${kind}_grants_per_s=${mean(xs, 'grants_per_s').toFixed(1)}`);
    console.log(`dpop_refresh_${kind}_runs_per_s=${xs.map(x => x.grants_per_s.toFixed(1)).join(',')}`);
    for (const k of ['latency_p50_ms', 'latency_p99_ms', 'server_cpu_us_per_grant', 'client_cpu_us_per_grant', 'server_cpu_cores', 'client_cpu_cores', 'machine_busy_pct']) {
        console.log(`dpop_refresh_${kind}_${k}=${mean(xs, k).toFixed(k.endsWith('_ms') || k.endsWith('_cores') ? 2 : 0)}`);
    }
    console.log(`dpop_refresh_${kind}_failures=${sum(xs, 'failures')}`);
    const err = xs.map(x => x.first_error).find(Boolean);
    if (err) console.log(`dpop_refresh_${kind}_first_error=${err}`);
}
const ratio = (a, b) => (b > 0 ? a / b : 0).toFixed(3);
console.log(`dpop_refresh_dpop_vs_bearer_ratio=${ratio(mean(results.dpop, 'grants_per_s'), mean(results.bearer, 'grants_per_s'))}`);
console.log(
    `dpop_refresh_dpop_vs_bearer_server_cpu_ratio=${ratio(mean(results.dpop, 'server_cpu_us_per_grant'), mean(results.bearer, 'server_cpu_us_per_grant'))}`
);
agent.destroy();
