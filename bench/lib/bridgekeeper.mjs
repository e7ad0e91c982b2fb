// Shared by the Node benches (llm_proxy.mjs, agent_loop.mjs): a child process started and its first
// matching JSON line awaited, a Bridgekeeper started on a temporary data directory, and a person
// signed up through the pages with a PAT. Node.js >= 20, standard library only.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

/**
 * Spawns `cmd` (stderr inherited), remembers it in `children`, and resolves with the first stdout
 * line that is JSON and that `match` accepts (parsed).
 */
export function start(children, cmd, args, env, match) {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    return new Promise((resolve, reject) => {
        const lines = createInterface({ input: child.stdout });
        lines.on('line', line => {
            try {
                const v = JSON.parse(line);
                if (match(v)) resolve(v);
            } catch { /* not JSON */ }
        });
        child.on('exit', code => reject(new Error(`${cmd} exited with ${code}`)));
    });
}

/** `bin serve` on a free loopback port with `dataDir` and `env`; resolves with its base URL. */
export async function startBridgekeeper(children, bin, dataDir, env) {
    const listening = await start(children, bin, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
        BRIDGEKEEPER_LOG_FORMAT: 'json',
        BRIDGEKEEPER_LIMITS__LOGIN_FAILURES_PER_MINUTE: '1000',
        ...env,
    }, v => v.fields?.message === 'listening' || (v.fields?.addr && String(v.fields?.message ?? '').includes('listening')));
    return `http://${listening.fields.addr}`;
}

/** Signs a new person up and in through the pages (cookies by hand), then makes a PAT with `scopes`. */
export async function personWithPat(base, scopes, { email = `bench-${Date.now()}@example.com`, password = 'bench password' } = {}) {
    let cookie = '';
    async function page(method, path, form) {
        const res = await fetch(base + path, {
            method,
            redirect: 'manual',
            headers: { cookie, ...(form ? { 'content-type': 'application/x-www-form-urlencoded', origin: base } : {}) },
            body: form ? new URLSearchParams(form).toString() : undefined,
        });
        for (const c of res.headers.getSetCookie()) {
            const [pair] = c.split(';');
            const name = pair.split('=')[0];
            cookie = cookie.split('; ').filter(p => p && !p.startsWith(`${name}=`)).concat([pair]).join('; ');
        }
        return res;
    }
    const csrf = html => /name="csrf_token" value="([^"]+)"/.exec(html)?.[1];
    let res = await page('GET', '/signup');
    res = await page('POST', '/signup', { csrf_token: csrf(await res.text()), next: '/', email, password });
    if (res.status !== 303) throw new Error(`sign-up answered ${res.status}`);
    res = await page('GET', '/login');
    res = await page('POST', '/login', { csrf_token: csrf(await res.text()), next: '/', email, password });
    if (res.status !== 303) throw new Error(`sign-in answered ${res.status}`);
    res = await fetch(`${base}/api/v1/auth/pat`, {
        method: 'POST',
        headers: { cookie, origin: base, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'bench', scopes }),
    });
    if (res.status !== 201) throw new Error(`PAT answered ${res.status}: ${await res.text()}`);
    return (await res.json()).token;
}
