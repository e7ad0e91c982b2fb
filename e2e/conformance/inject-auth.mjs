// Preload for the conformance CLI (`node --import ./inject-auth.mjs …`): the suite's server
// scenarios send no Authorization header, and Bridgekeeper's /mcp needs a bearer token. This
// wraps globalThis.fetch (used by the MCP SDK client and by the scenarios' own fetch calls) so
// that every request to the server under test carries `Authorization: Bearer $CONFORMANCE_BEARER`.
// Requests elsewhere are untouched; a request that already has an Authorization header keeps it.
//
//   CONFORMANCE_BEARER    the access token
//   CONFORMANCE_BASE_URL  the server's origin, e.g. http://127.0.0.1:43117

const token = process.env.CONFORMANCE_BEARER;
const base = process.env.CONFORMANCE_BASE_URL;
if (!token || !base) {
    throw new Error('inject-auth.mjs: CONFORMANCE_BEARER and CONFORMANCE_BASE_URL must be set');
}
// Compare whole origins (so http://127.0.0.1:80 does not match http://127.0.0.1:8080).
const origin = new URL(base).origin;

const originalFetch = globalThis.fetch;

function urlOf(input) {
    if (typeof input === 'string') return input;
    if (input instanceof URL) return input.href;
    return input?.url ?? String(input);
}

function sameOrigin(url) {
    try {
        return new URL(url).origin === origin;
    } catch {
        return false;
    }
}

globalThis.fetch = function fetchWithBearer(input, init) {
    if (sameOrigin(urlOf(input))) {
        // init.headers, when given, replaces the Request's headers (fetch semantics), so start
        // from whichever of the two fetch would use.
        const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
        if (!headers.has('authorization')) headers.set('authorization', `Bearer ${token}`);
        init = { ...init, headers };
    }
    return originalFetch.call(this, input, init);
};
