// Starts the real Bridgekeeper binary on an ephemeral loopback port with a
// fresh data directory, and stops it again.
import { createServer as createNetServer } from 'node:net';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..', '..');

/** The server binary: $BK_BIN, else target/debug/bridgekeeper in the repo. */
export function serverBinary() {
    const bin = process.env.BK_BIN || path.join(repoRoot, 'target', 'debug', 'bridgekeeper');
    return path.resolve(bin);
}

const STARTUP_TIMEOUT_MS = 30_000;
const LOG_TAIL_LINES = 200;

/**
 * Spawns `bridgekeeper serve --listen 127.0.0.1:0 --data-dir <tmp>` and waits
 * for its JSON "listening" log line. `peerOf`: the data directory of a running
 * instance to share (a second instance on the same database; it is left in place).
 * `localhost`: listen on a free port of 127.0.0.1 with the issuer http://localhost:PORT (WebAuthn
 * needs a domain name as the relying party id; an IP address is refused).
 *
 * @returns {Promise<{issuer: string, addr: string, dataDir: string, logTail: () => string, stop: () => Promise<void>}>}
 */
export async function startServer({ peerOf, localhost = false } = {}) {
    const bin = serverBinary();
    if (!existsSync(bin)) {
        throw new Error(`server binary not found at ${bin} (build it with cargo build, or set BK_BIN)`);
    }
    const dataDir = peerOf ?? (await mkdtemp(path.join(tmpdir(), 'bk-e2e-')));
    const removeDataDir = () => (peerOf ? Promise.resolve() : rm(dataDir, { recursive: true, force: true }));
    const address = localhost ? await freeLocalPort().then(port => ({ listen: `127.0.0.1:${port}`, issuer: `http://localhost:${port}` })) : { listen: '127.0.0.1:0' };
    const args = ['serve', '--listen', address.listen, '--data-dir', dataDir, ...(address.issuer ? ['--issuer', address.issuer] : [])];
    const child = spawn(bin, args, {
        env: { ...process.env, BRIDGEKEEPER_LOG_FORMAT: 'json' },
        stdio: ['ignore', 'pipe', 'pipe']
    });

    const lines = [];
    const remember = line => {
        lines.push(line);
        if (lines.length > LOG_TAIL_LINES) lines.shift();
    };
    const logTail = () => lines.join('\n');

    let exited = false;
    const exitPromise = new Promise(resolve => {
        child.once('exit', (code, signal) => {
            exited = true;
            resolve({ code, signal });
        });
    });
    // Never leave a server behind if the test process dies first.
    const killOnExit = () => {
        if (!exited) child.kill('SIGKILL');
    };
    process.once('exit', killOnExit);

    createInterface({ input: child.stderr }).on('line', line => remember(`[stderr] ${line}`));
    const stdout = createInterface({ input: child.stdout });

    const listening = new Promise((resolve, reject) => {
        const timer = setTimeout(
            () => reject(new Error(`server did not log "listening" within ${STARTUP_TIMEOUT_MS} ms; output:\n${logTail()}`)),
            STARTUP_TIMEOUT_MS
        );
        stdout.on('line', line => {
            remember(line);
            let entry;
            try {
                entry = JSON.parse(line);
            } catch {
                return;
            }
            const fields = entry?.fields;
            if (fields?.message === 'listening' && typeof fields.issuer === 'string') {
                clearTimeout(timer);
                resolve({ issuer: fields.issuer, addr: fields.addr });
            }
        });
        exitPromise.then(({ code, signal }) => {
            clearTimeout(timer);
            reject(new Error(`server exited before listening (code ${code}, signal ${signal}); output:\n${logTail()}`));
        });
    });

    let info;
    try {
        info = await listening;
    } catch (err) {
        if (!exited) child.kill('SIGKILL');
        await removeDataDir();
        throw err;
    }

    async function stop() {
        let stuck = false;
        if (!exited) {
            child.kill('SIGTERM');
            let timer;
            const timeout = new Promise(resolve => {
                timer = setTimeout(() => resolve('timeout'), 10_000);
            });
            const outcome = await Promise.race([exitPromise, timeout]);
            clearTimeout(timer);
            if (outcome === 'timeout') {
                stuck = true;
                child.kill('SIGKILL');
                await exitPromise;
            }
        }
        process.removeListener('exit', killOnExit);
        await removeDataDir();
        if (stuck) throw new Error(`server did not stop within 10 s of SIGTERM and was killed; output:\n${logTail()}`);
    }

    return { ...info, dataDir, logTail, stop };
}

/** A port of 127.0.0.1 free right now (listened on and closed). */
function freeLocalPort() {
    return new Promise((resolve, reject) => {
        const probe = createNetServer();
        probe.once('error', reject);
        probe.listen(0, '127.0.0.1', () => {
            const { port } = probe.address();
            probe.close(() => resolve(port));
        });
    });
}
