#!/usr/bin/env node
// Chat-completions proxy overhead: requests/s and latency of POST /api/v1/chat/completions through
// Bridgekeeper (authentication, scope check, credit reservation and settlement — two write
// transactions and a ledger row per request — and the upstream call) against the same requests
// sent straight to the scripted OpenAI-compatible server (e2e/lib/scripted-llm.mjs, its own
// process), in one run, with one load generator, in alternating rounds. Node.js >= 20, standard
// library only.
//
//   node bench/llm_proxy.mjs BRIDGEKEEPER_BIN [CONNS] [SECONDS] [ROUNDS]
//
// Starts the scripted server and a Bridgekeeper (temporary SQLite data directory) offering one
// model on it, signs up one account through the pages, makes a PAT with `llm-all`, then runs.
// Prints key=value lines (prefix llm_proxy_), the last being the ratio proxied/direct requests/s.
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

import { personWithPat, start, startBridgekeeper } from './lib/bridgekeeper.mjs';

const [bin, connsArg = '16', secondsArg = '5', roundsArg = '2'] = process.argv.slice(2);
if (!bin) {
    console.error('usage: llm_proxy.mjs BRIDGEKEEPER_BIN [CONNS] [SECONDS] [ROUNDS]');
    process.exit(2);
}
const CONNS = Number(connsArg);
const SECONDS = Number(secondsArg);
const ROUNDS = Number(roundsArg);
const here = dirname(fileURLToPath(import.meta.url));
const children = [];
const dataDir = mkdtempSync(join(tmpdir(), 'bk-llm-bench-'));
const cleanup = () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    rmSync(dataDir, { recursive: true, force: true });
};
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

const llm = await start(children, process.execPath, [join(here, '../e2e/lib/scripted-llm.mjs'), '--no-record'], {}, v => v.baseUrl);
const KEY = 'sk-bench-upstream-key';
const models = `[{id="bench-model", base_url="${llm.baseUrl}", api_key_env="BENCH_LLM_KEY", ` +
    'prompt_credits_per_million=1000, completion_credits_per_million=2000}]';
const base = await startBridgekeeper(children, bin, dataDir, {
    BRIDGEKEEPER_LLM__MODELS: models,
    BRIDGEKEEPER_CREDITS__SIGNUP_GRANT: '1000000000000',
    BENCH_LLM_KEY: KEY,
});

// A person: signed up and in through the pages, then a PAT with llm-all.
const pat = await personWithPat(base, ['llm-all'], { email: `bench-${Date.now()}@example.com`, password: 'bench password for the llm proxy' });

const agent = new http.Agent({ keepAlive: true, maxSockets: CONNS });
const body = JSON.stringify({
    model: 'bench-model',
    max_tokens: 64,
    messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Say hello.' }],
});

function post(url, headers) {
    return new Promise((resolve) => {
        const req = http.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json',
            'content-length': Buffer.byteLength(body), ...headers } }, r => {
            r.resume();
            r.on('end', () => resolve(r.statusCode));
        });
        req.on('error', () => resolve(0));
        req.end(body);
    });
}

async function run(url, headers) {
    const latencies = [];
    let failures = 0;
    const end = performance.now() + SECONDS * 1000;
    await Promise.all(Array.from({ length: CONNS }, async () => {
        while (performance.now() < end) {
            const t = performance.now();
            const status = await post(url, headers);
            latencies.push(performance.now() - t);
            if (status !== 200) failures++;
        }
    }));
    latencies.sort((a, b) => a - b);
    const q = p => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0;
    return { perS: latencies.length / SECONDS, p50: q(0.5), p99: q(0.99), failures };
}

const direct = { url: `${llm.baseUrl}/chat/completions`, headers: { authorization: `Bearer ${KEY}` } };
const proxied = { url: `${base}/api/v1/chat/completions`, headers: { authorization: `Bearer ${pat}` } };
await run(direct.url, direct.headers); // warm-up (connections, caches)
const results = { direct: [], proxied: [] };
for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? ['direct', 'proxied'] : ['proxied', 'direct'];
    for (const kind of order) {
        const t = kind === 'direct' ? direct : proxied;
        results[kind].push(await run(t.url, t.headers));
    }
}
const mean = (xs, k) => xs.reduce((s, x) => s + x[k], 0) / xs.length;
const out = {};
for (const kind of ['direct', 'proxied']) {
    out[`${kind}_per_s`] = mean(results[kind], 'perS').toFixed(1);
    out[`${kind}_latency_p50_ms`] = mean(results[kind], 'p50').toFixed(2);
    out[`${kind}_latency_p99_ms`] = mean(results[kind], 'p99').toFixed(2);
    out[`${kind}_failures`] = results[kind].reduce((s, x) => s + x.failures, 0);
}
out.overhead_p50_ms = (out.proxied_latency_p50_ms - out.direct_latency_p50_ms).toFixed(2);
out.proxied_vs_direct_ratio = (out.proxied_per_s / out.direct_per_s).toFixed(3);
console.log(`llm_proxy_conns=${CONNS}`);
console.log(`llm_proxy_seconds_per_run=${SECONDS}`);
console.log(`llm_proxy_rounds=${ROUNDS}`);
for (const [k, v] of Object.entries(out)) console.log(`llm_proxy_${k}=${v}`);
agent.destroy();
process.exit(0);
