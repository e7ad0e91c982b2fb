// The person's browser across two sites: Bridgekeeper (http, loopback) and the
// upstream OAuth server (https, from a throwaway CA that only this agent and the
// binary trust). One cookie jar per origin, cookies matched by path and dropped
// when expired, redirects never followed automatically. Built on node:http(s)
// rather than fetch so that the throwaway CA can be trusted per request.
import http from 'node:http';
import https from 'node:https';

/** Cookies of one origin, keyed by name and path (RFC 6265 §5.3, enough of it). */
class OriginJar {
    constructor() {
        /** `${name}\0${path}` → {name, value, path, expires} */
        this.cookies = new Map();
    }

    update(setCookies, requestPath) {
        for (const header of setCookies ?? []) {
            const [pair, ...attrs] = header.split(';');
            const eq = pair.indexOf('=');
            if (eq < 0) continue;
            const name = pair.slice(0, eq).trim();
            const value = pair.slice(eq + 1).trim();
            let path;
            let expires = Infinity;
            for (const a of attrs) {
                const i = a.indexOf('=');
                const k = (i < 0 ? a : a.slice(0, i)).trim().toLowerCase();
                const v = i < 0 ? '' : a.slice(i + 1).trim();
                if (k === 'path' && v.startsWith('/')) path = v;
                else if (k === 'max-age') expires = Date.now() + Number(v) * 1000;
                else if (k === 'expires' && expires === Infinity) expires = Date.parse(v);
            }
            if (path === undefined) {
                // The default path: the request path up to its last '/'.
                const dir = requestPath.slice(0, requestPath.lastIndexOf('/'));
                path = dir === '' ? '/' : dir;
            }
            const key = `${name}\0${path}`;
            if (!(expires > Date.now())) this.cookies.delete(key);
            else this.cookies.set(key, { name, value, path, expires });
        }
    }

    header(requestPath) {
        const now = Date.now();
        const matches = [...this.cookies.values()]
            .filter(c => c.expires > now)
            .filter(c => requestPath === c.path || requestPath.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`))
            .sort((a, b) => b.path.length - a.path.length);
        return matches.map(c => `${c.name}=${c.value}`).join('; ');
    }

    get(name) {
        return [...this.cookies.values()].find(c => c.name === name)?.value;
    }
}

/**
 * One HTTP(S) request with node's clients. `ca`: extra trusted CA (PEM) for https.
 * Returns {status, headers, text, json(), location (absolute, when redirected)}.
 */
export function rawRequest(url, { method = 'GET', headers = {}, body, ca } = {}) {
    const target = new URL(url);
    const client = target.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
        const req = client.request(
            target,
            { method, headers: body === undefined ? headers : { ...headers, 'Content-Length': Buffer.byteLength(body) }, ...(ca ? { ca } : {}) },
            res => {
                const chunks = [];
                res.on('data', c => chunks.push(c));
                res.on('error', reject);
                res.on('end', () => {
                    const text = Buffer.concat(chunks).toString('utf8');
                    const loc = res.headers.location;
                    resolve({
                        status: res.statusCode,
                        headers: res.headers,
                        text,
                        location: loc === undefined ? undefined : new URL(loc, target).href,
                        json() {
                            try {
                                return JSON.parse(text);
                            } catch {
                                throw new Error(`${method} ${url} -> ${res.statusCode}: not JSON: ${text.slice(0, 500)}`);
                            }
                        }
                    });
                });
            }
        );
        req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${url}: no answer within 30 s`)));
        req.on('error', reject);
        if (body !== undefined) req.write(body);
        req.end();
    });
}

/** The person's user agent: cookies per origin, forms posted, redirects returned (not followed). */
export class UserAgent {
    constructor({ ca } = {}) {
        this.ca = ca;
        /** origin → OriginJar */
        this.jars = new Map();
    }

    jar(origin) {
        if (!this.jars.has(origin)) this.jars.set(origin, new OriginJar());
        return this.jars.get(origin);
    }

    /** `form`: an object, a Map or [name, value] pairs, sent urlencoded. */
    async request(url, { method = 'GET', form } = {}) {
        const target = new URL(url);
        const jar = this.jar(target.origin);
        const headers = { Accept: 'text/html', 'User-Agent': 'bridgekeeper-e2e-connections' };
        const cookie = jar.header(target.pathname);
        if (cookie) headers.Cookie = cookie;
        let body;
        if (form !== undefined) {
            headers['Content-Type'] = 'application/x-www-form-urlencoded';
            body = new URLSearchParams(form instanceof Map ? [...form] : form).toString();
        }
        const res = await rawRequest(target, { method, headers, body, ca: this.ca });
        const setCookie = res.headers['set-cookie'];
        jar.update(Array.isArray(setCookie) ? setCookie : setCookie ? [setCookie] : [], target.pathname);
        return res;
    }

    get(url) {
        return this.request(url);
    }

    post(url, form) {
        return this.request(url, { method: 'POST', form });
    }
}
