// server-everything (the MCP reference server, npm) on a loopback port behind a recording proxy
// with fault modes, shared by the gateway tests.
import { spawn } from 'node:child_process';
import http from 'node:http';
import { createRequire } from 'node:module';
import net from 'node:net';

const require = createRequire(import.meta.url);
const EVERYTHING = require.resolve('@modelcontextprotocol/server-everything/dist/index.js');

const freePort = () =>
    new Promise((resolve, reject) => {
        const s = net.createServer();
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });

/**
 * server-everything on a loopback port behind a recording proxy (the test sees each request's
 * Authorization header and JSON-RPC method as the server received them).
 */
export async function startEverything() {
    const port = await freePort();
    const child = spawn(process.execPath, [EVERYTHING, 'streamableHttp'], {
        env: { ...process.env, PORT: String(port) },
        stdio: ['ignore', 'pipe', 'pipe']
    });
    let log = '';
    await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`server-everything did not start: ${log}`)), 20_000);
        const seen = chunk => {
            log += chunk;
            if (log.includes('listening on port')) {
                clearTimeout(timer);
                resolve();
            }
        };
        child.stdout.on('data', seen);
        child.stderr.on('data', seen);
        child.once('exit', code => reject(new Error(`server-everything exited (${code}): ${log}`)));
    });
    const requests = [];
    let down = false;
    /** How tools/call is answered: ok (forwarded), hang (never), huge (10 MB of text), garbage (malformed JSON). */
    let mode = 'ok';
    const hung = [];
    const proxy = http.createServer((req, res) => {
        const chunks = [];
        req.on('data', c => chunks.push(c));
        req.on('end', () => {
            const body = Buffer.concat(chunks);
            let method;
            try {
                method = JSON.parse(body.toString()).method;
            } catch {
                method = undefined;
            }
            requests.push({ method: req.method, rpc: method, authorization: req.headers.authorization });
            if (down) {
                res.writeHead(503).end();
                return;
            }
            if (method === 'tools/call' && mode !== 'ok') {
                const id = JSON.parse(body.toString()).id;
                if (mode === 'hang') {
                    hung.push(res);
                    return;
                }
                if (mode === 'huge') {
                    const text = 'y'.repeat(10 * 1024 * 1024);
                    res.writeHead(200, { 'Content-Type': 'application/json' });
                    res.end(JSON.stringify({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text }] } }));
                    return;
                }
                res.writeHead(200, { 'Content-Type': 'application/json' });
                res.end('{"jsonrpc": "2.0", "id": ' + JSON.stringify(id) + ', "result": [not json');
                return;
            }
            const out = http.request(
                { host: '127.0.0.1', port, path: req.url, method: req.method, headers: req.headers },
                up => {
                    res.writeHead(up.statusCode, up.headers);
                    up.pipe(res);
                }
            );
            out.on('error', () => res.writeHead(502).end());
            out.end(body);
        });
    });
    await new Promise(r => proxy.listen(0, '127.0.0.1', r));
    return {
        url: `http://127.0.0.1:${proxy.address().port}/mcp`,
        requests,
        setDown(v) {
            down = v;
        },
        setMode(m) {
            mode = m;
            if (m === 'ok') for (const r of hung.splice(0)) r.destroy();
        },
        async stop() {
            proxy.close();
            child.kill('SIGTERM');
        }
    };
}


/**
 * The environment that configures `url` (a server-everything) as the operator-added provider
 * `everything` (`api_key`, tools from that MCP server on loopback), plus `extra`.
 */
export function everythingEnv(url, extra = {}) {
    const p = 'BRIDGEKEEPER_CONNECTIONS__PROVIDERS__EVERYTHING__';
    return {
        [`${p}NAME`]: 'Everything',
        [`${p}DESCRIPTION`]: 'The MCP reference server (server-everything)',
        [`${p}AUTH`]: 'api_key',
        [`${p}TOOLS__KIND`]: 'mcp',
        [`${p}TOOLS__URL`]: url,
        BRIDGEKEEPER_CONNECTIONS__ALLOW_PRIVATE_ADDRESSES: 'true',
        BRIDGEKEEPER_CONNECTIONS__ALLOW_HTTP_LOOPBACK: 'true',
        ...extra
    };
}

/** Appends the server's log tail to a failing test's message. */
export const withLogsOf = getBk => fn => async t => {
    try {
        await fn(t);
    } catch (err) {
        err.message += `\n--- server log (tail) ---\n${getBk()?.logTail()}`;
        throw err;
    }
};
