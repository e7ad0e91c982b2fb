// A tiny "browser": fetch with a cookie jar and manual redirects, plus
// regex-based extraction of the server's HTML forms. Enough to drive the
// sign-up, login and consent pages the way a person's browser would.

/** Decodes the HTML character references the server's templates emit. */
export function htmlUnescape(s) {
    return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|amp|quot|apos|lt|gt);/g, (_, ref) => {
        switch (ref) {
            case 'amp':
                return '&';
            case 'quot':
                return '"';
            case 'apos':
                return "'";
            case 'lt':
                return '<';
            case 'gt':
                return '>';
        }
        const code = ref[1] === 'x' || ref[1] === 'X' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
        return String.fromCodePoint(code);
    });
}

/** Attributes of one start tag, e.g. `<input type="hidden" name="x" value="y">`. */
function parseAttributes(tag) {
    const attrs = {};
    const re = /([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
    // Skip the tag name itself.
    const body = tag.replace(/^<\s*[a-zA-Z]+/, '').replace(/\/?>$/, '');
    let m;
    while ((m = re.exec(body)) !== null) {
        const value = m[2] ?? m[3] ?? m[4] ?? '';
        attrs[m[1].toLowerCase()] = htmlUnescape(value);
    }
    return attrs;
}

/**
 * Finds the `<form method="post" action="<action>">` in `html` and returns its
 * method, action, the name→value map of its `<input>` elements (all of them,
 * hidden or not, in document order) and its submit buttons.
 *
 * @returns {{method: string, action: string, inputs: Map<string, string>, hidden: Map<string, string>, buttons: {name?: string, value?: string, type?: string}[]}}
 */
export function extractForm(html, action) {
    const formRe = /<form\b[^>]*>[\s\S]*?<\/form>/gi;
    let m;
    const seen = [];
    while ((m = formRe.exec(html)) !== null) {
        const formHtml = m[0];
        const openTag = formHtml.match(/^<form\b[^>]*>/i)[0];
        const attrs = parseAttributes(openTag);
        seen.push(`${attrs.method ?? 'get'} ${attrs.action ?? ''}`);
        if (attrs.action !== action) continue;
        const inputs = new Map();
        const hidden = new Map();
        for (const tag of formHtml.match(/<input\b[^>]*>/gi) ?? []) {
            const a = parseAttributes(tag);
            if (!a.name) continue;
            inputs.set(a.name, a.value ?? '');
            if ((a.type ?? '').toLowerCase() === 'hidden') hidden.set(a.name, a.value ?? '');
        }
        const buttons = (formHtml.match(/<button\b[^>]*>/gi) ?? []).map(parseAttributes);
        return { method: (attrs.method ?? 'get').toLowerCase(), action: attrs.action, inputs, hidden, buttons };
    }
    throw new Error(`no <form action="${action}"> in page (forms seen: ${seen.join(', ') || 'none'}):\n${html}`);
}

/** Cookie jar for a single origin: name → value, honouring deletions. */
export class CookieJar {
    constructor() {
        this.cookies = new Map();
    }

    /** Records the Set-Cookie headers of `response`; returns the names set. */
    update(response) {
        const set = [];
        for (const header of response.headers.getSetCookie()) {
            const [pair, ...attrs] = header.split(';');
            const eq = pair.indexOf('=');
            if (eq < 0) continue;
            const name = pair.slice(0, eq).trim();
            const value = pair.slice(eq + 1).trim();
            const expired = attrs.some(a => {
                const [k, v] = a.split('=').map(x => x?.trim());
                if (k?.toLowerCase() === 'max-age') return Number(v) <= 0;
                if (k?.toLowerCase() === 'expires') return Date.parse(v) <= Date.now();
                return false;
            });
            if (expired) this.cookies.delete(name);
            else this.cookies.set(name, value);
            set.push(name);
        }
        return set;
    }

    get(name) {
        return this.cookies.get(name);
    }

    header() {
        return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    }
}

/** A user agent against one origin: cookies kept, redirects never followed automatically. */
export class Browser {
    constructor(origin) {
        this.origin = origin;
        this.jar = new CookieJar();
    }

    /**
     * One HTTP request. `form` (an iterable of [name, value] or an object) is
     * sent as application/x-www-form-urlencoded. Returns the response with its
     * body read: { status, location (absolute URL or undefined), text, response }.
     */
    async request(url, { method = 'GET', form } = {}) {
        const target = new URL(url, this.origin);
        const headers = { Accept: 'text/html' };
        const cookie = this.jar.header();
        // Cookies go only to our server, never to the client's redirect URI.
        if (cookie && target.origin === new URL(this.origin).origin) headers.Cookie = cookie;
        let body;
        if (form !== undefined) {
            headers['Content-Type'] = 'application/x-www-form-urlencoded';
            body = new URLSearchParams(form instanceof Map ? [...form] : form).toString();
        }
        const response = await fetch(target, { method, headers, body, redirect: 'manual' });
        this.jar.update(response);
        const text = await response.text();
        const loc = response.headers.get('location');
        return {
            status: response.status,
            location: loc === null ? undefined : new URL(loc, target).href,
            rawLocation: loc ?? undefined,
            text,
            response
        };
    }

    get(url) {
        return this.request(url);
    }

    post(url, form) {
        return this.request(url, { method: 'POST', form });
    }
}

/** Path + query of a URL, as the server puts it into `next`. */
export function pathAndQuery(url) {
    const u = new URL(url);
    return u.pathname + u.search;
}
