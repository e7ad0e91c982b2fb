// A loopback HTTP proxy that adds `Authorization: Bearer <token>` and otherwise forwards each
// request unchanged: method, path, every header (Host and Origin included, as sent), body. Used for
// the dns-rebinding-protection scenario, which sends raw HTTP requests (not fetch, so the
// inject-auth.mjs preload cannot reach them) with forged Host/Origin headers. Bridgekeeper checks
// Host/Origin before the token, so without the token the "valid localhost" case would get 401.
//
// The response (status, headers, body) is passed back as received.
import http from 'node:http';

/**
 * Starts the proxy on 127.0.0.1:<ephemeral>, forwarding to `target` (an origin such as
 * http://127.0.0.1:43117). `getToken()` is asked for the token on every request.
 *
 * @returns {Promise<{url: string, port: number, close: () => Promise<void>}>}
 */
export async function startAuthProxy(target, getToken) {
    const upstream = new URL(target);
    if (upstream.protocol !== 'http:') throw new Error(`proxy target must be http: ${target}`);

    const server = http.createServer((req, res) => {
        // rawHeaders keeps every header as sent (names, values, repeats), including Host.
        const headers = [];
        for (let i = 0; i < req.rawHeaders.length; i += 2) {
            if (req.rawHeaders[i].toLowerCase() === 'authorization') continue;
            headers.push(req.rawHeaders[i], req.rawHeaders[i + 1]);
        }
        headers.push('Authorization', `Bearer ${getToken()}`);

        const out = http.request({
            host: upstream.hostname,
            port: upstream.port || 80,
            method: req.method,
            path: req.url,
            headers,
            // Host comes from the client's headers, never from the target.
            setHost: false
        });
        out.on('response', up => {
            res.writeHead(up.statusCode, up.statusMessage, up.rawHeaders);
            up.pipe(res);
        });
        out.on('error', err => {
            if (!res.headersSent) {
                res.writeHead(502, { 'Content-Type': 'text/plain' });
                res.end(`conformance proxy: upstream error: ${err.message}\n`);
            } else {
                res.destroy(err);
            }
        });
        req.pipe(out);
    });

    await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
    });
    const { port } = server.address();
    return {
        url: `http://127.0.0.1:${port}`,
        port,
        close: () =>
            new Promise(resolve => {
                server.closeAllConnections?.();
                server.close(() => resolve());
            })
    };
}
