// The "client command" of the MCP conformance suite's client auth scenarios
// (`conformance client --command "<node> driver.mjs" ...`): the runner appends
// its mock MCP server's URL (http://localhost:PORT/mcp) as the last argument and
// describes the scenario in MCP_CONFORMANCE_SCENARIO, MCP_CONFORMANCE_PROTOCOL_VERSION
// and MCP_CONFORMANCE_CONTEXT. The client under test is Bridgekeeper itself, as
// the OAuth client of that server (connection kind `mcp`); this script only plays
// the tenant's app and browser around it:
//
//   1. starts a fresh Bridgekeeper binary ($BK_BIN) with provider `conf` = the
//      mock server (environment configuration, plain http to loopback allowed);
//   2. signs a person up and gets an app token with scope `connections`;
//   3. POST /api/v1/connections/initiate {providerId: conf, redirectUrl} — a 4xx
//      here (e.g. the "must reject" scenarios) prints the problem and exits 1;
//   4. follows authorizationUrl at the mock AS without Bridgekeeper's cookies (it
//      auto-approves with a 302), then takes that Location (Bridgekeeper's
//      callback) in the signed-in browser, expecting a 303 to the app;
//   5. connectionId -> prints GET /api/v1/connections/{id}, exit 0; error -> exit 1.
//
// The binary is always stopped before exiting (its pipes are this process's
// own, so nothing outlives it on the runner's stdout/stderr). The whole run is
// capped at DEADLINE_MS. Progress goes to stderr; tokens are never logged.
import { randomBytes } from 'node:crypto';

import { UserAgent, rawRequest } from '../connections/lib/agent.mjs';
import { api, signUpAndAuthorizeApp, startBridgekeeper } from '../connections/lib/bridgekeeper.mjs';

const PROVIDER = 'conf';
// The app's registered redirect URI, where Bridgekeeper returns the browser
// (nothing listens there: the Location header is read).
const APP_REDIRECT = 'http://127.0.0.1:53690/connected';
// The URL Bridgekeeper is known by where client ID metadata documents are
// accepted; auth/basic-cimd requires exactly this client_id.
const CLIENT_METADATA_URL = 'https://conformance-test.local/client-metadata.json';
const DEADLINE_MS = Number(process.env.MCP_AUTH_DRIVER_DEADLINE_MS || 25_000);

const scenario = process.env.MCP_CONFORMANCE_SCENARIO ?? '(no scenario)';
const started = Date.now();
const log = msg => process.stderr.write(`[driver ${scenario} +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);

let bk;
let finishing;

/** Stops the binary (once) and exits with `code`. */
function finish(code) {
    finishing ??= (async () => {
        if (bk) {
            try {
                await bk.stop();
                log('bridgekeeper stopped');
            } catch (err) {
                log(`stopping bridgekeeper: ${err.message}`);
            }
        }
        process.exit(code);
    })();
    return finishing;
}

for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
    process.on(sig, () => {
        log(`${sig}: stopping`);
        finish(1);
    });
}
const deadline = setTimeout(() => {
    log(`not done within ${DEADLINE_MS} ms: giving up`);
    if (bk) process.stderr.write(`--- server log (tail) ---\n${bk.logTail()}\n`);
    finish(1);
}, DEADLINE_MS);
deadline.unref();

/** The provider `conf` and the development switches, in the binary's environment form. */
function bridgekeeperEnv(serverUrl, context) {
    const p = `BRIDGEKEEPER_CONNECTIONS__PROVIDERS__${PROVIDER.toUpperCase()}__`;
    const env = {
        [`${p}NAME`]: 'Conformance MCP server',
        [`${p}DESCRIPTION`]: `The MCP conformance suite's mock server (${scenario})`,
        [`${p}AUTH`]: 'mcp',
        [`${p}MCP__URL`]: serverUrl,
        BRIDGEKEEPER_CONNECTIONS__ALLOW_PRIVATE_ADDRESSES: 'true',
        BRIDGEKEEPER_CONNECTIONS__ALLOW_HTTP_LOOPBACK: 'true',
        BRIDGEKEEPER_CONNECTIONS__CLIENT_METADATA_URL: CLIENT_METADATA_URL
    };
    // auth/pre-registration: the operator's client at that AS (the context names it).
    if (context.client_id) env[`${p}MCP__CLIENT_ID`] = context.client_id;
    if (context.client_secret) env[`${p}MCP__CLIENT_SECRET`] = context.client_secret;
    // The operator names the authorization server its client was registered at (the context says).
    if (context.issuer) env[`${p}MCP__ISSUER`] = context.issuer;
    return env;
}

async function main() {
    const serverUrl = process.argv.at(-1);
    if (!/^https?:\/\//.test(serverUrl ?? '')) throw new Error(`the last argument must be the MCP server URL, got ${serverUrl}`);
    let context = {};
    if (process.env.MCP_CONFORMANCE_CONTEXT) context = JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT);
    log(
        `server ${serverUrl}, protocol ${process.env.MCP_CONFORMANCE_PROTOCOL_VERSION}, context keys [${Object.keys(context).join(', ')}]` +
            (context.client_id ? `, pre-registered client_id ${context.client_id}` : '')
    );

    bk = await startBridgekeeper(bridgekeeperEnv(serverUrl, context));
    log(`bridgekeeper listening at ${bk.issuer}`);

    const agent = new UserAgent();
    const rand = () => randomBytes(6).toString('hex');
    const app = await signUpAndAuthorizeApp(agent, bk.issuer, {
        email: `mcp-auth-${rand()}@example.com`,
        password: `pw-${rand()}-correct horse`,
        redirectUri: APP_REDIRECT,
        scope: 'connections universal-mcp-read-write'
    });
    log(`signed up; app ${app.clientId} holds scope "${app.scope}"`);

    /** One connect flow: initiate, the mock AS, the callback. The connection id, or null (failed). */
    const connect = async () => {
        const init = await api(bk.issuer, 'POST', '/api/v1/connections/initiate', {
            token: app.accessToken,
            json: { providerId: PROVIDER, redirectUrl: APP_REDIRECT }
        });
        log(`initiate -> ${init.status}`);
        if (init.status !== 200) {
            // The "must reject" scenarios end here (resource mismatch, issuer mismatch, ...).
            process.stdout.write(`initiate refused (${init.status}): ${init.text}\n`);
            return null;
        }
        const { authorizationUrl, providerMetadata } = init.body ?? {};
        if (typeof authorizationUrl !== 'string') throw new Error(`initiate answered without authorizationUrl: ${init.text}`);
        const authz = new URL(authorizationUrl);
        const q = authz.searchParams;
        log(
            `authorizationUrl ${authz.origin}${authz.pathname} client_id=${q.get('client_id')} scope=${JSON.stringify(q.get('scope'))} ` +
                `resource=${q.get('resource')} code_challenge_method=${q.get('code_challenge_method')} redirect_uri=${q.get('redirect_uri')}; ` +
                `providerMetadata ${JSON.stringify(providerMetadata)}`
        );

        // The mock AS auto-approves: one plain request, no Bridgekeeper cookies.
        const atAs = await rawRequest(authorizationUrl, { headers: { Accept: 'text/html' } });
        if (atAs.status !== 302 && atAs.status !== 303) throw new Error(`the authorization server answered ${atAs.status}, not a redirect: ${atAs.text.slice(0, 500)}`);
        if (!atAs.location) throw new Error(`the authorization server redirected without Location`);
        const back = new URL(atAs.location);
        log(`authorization server -> ${atAs.status} to ${back.origin}${back.pathname} with [${[...back.searchParams.keys()].join(', ')}] iss=${back.searchParams.get('iss')}`);
        if (back.origin !== new URL(bk.issuer).origin) throw new Error(`the authorization server redirected elsewhere than Bridgekeeper: ${back.origin}${back.pathname}`);

        // The signed-in browser lands on Bridgekeeper's callback.
        const cb = await agent.get(back.href);
        log(`callback -> ${cb.status}`);
        if (cb.status !== 303 || !cb.location) {
            process.stdout.write(`callback answered ${cb.status} (not a redirect to the app): ${cb.text.slice(0, 2000)}\n`);
            return null;
        }
        const to = new URL(cb.location);
        if (to.origin + to.pathname !== APP_REDIRECT) throw new Error(`the callback redirected elsewhere than the app: ${to.origin}${to.pathname}`);
        const connectionId = to.searchParams.get('connectionId');
        if (!connectionId) {
            process.stdout.write(
                `connection failed: error=${to.searchParams.get('error')} error_description=${JSON.stringify(to.searchParams.get('error_description'))}\n`
            );
            return null;
        }
        log(`connected: connectionId ${connectionId}, status ${to.searchParams.get('status')}`);
        const conn = await api(bk.issuer, 'GET', `/api/v1/connections/${encodeURIComponent(connectionId)}`, { token: app.accessToken });
        process.stdout.write(`connection (${conn.status}): ${conn.text}\n`);
        return conn.status === 200 ? connectionId : null;
    };

    /** A JSON-RPC request on Bridgekeeper's /mcp (one-shot, plain JSON) with the app's token. */
    let rpcId = 0;
    const mcp = async (method, params = {}) => {
        const res = await rawRequest(new URL('/mcp', bk.issuer), {
            method: 'POST',
            headers: {
                Authorization: `Bearer ${app.accessToken}`,
                'Content-Type': 'application/json',
                Accept: 'application/json, text/event-stream',
                'X-Response-Format': 'json'
            },
            body: JSON.stringify({ jsonrpc: '2.0', id: ++rpcId, method, params })
        });
        const body = res.json();
        if (body.error) throw new Error(`${method}: ${JSON.stringify(body.error)}`);
        return body.result;
    };
    const upstreamTools = async () => (await mcp('tools/list')).tools.map(t => t.name).filter(n => n.startsWith(`${PROVIDER}_`));

    let connectionId = await connect();
    if (!connectionId) return 1;
    // The connection in use, through the gateway, as an MCP client of Bridgekeeper would use it:
    // list the server's tools, then call each (the mock's `test-tool`) — twice, so a server that
    // changes its mind after the first authenticated request (authorization-server migration)
    // is heard. A tool error asking to reconnect, or a connection no longer active, is followed by
    // a reconnect (the person's part), at most twice (three authorizations in all).
    let reconnects = 0;
    for (let round = 0; round < 4; round++) {
        const tools = await upstreamTools();
        log(`tools through the gateway: [${tools.join(', ')}]`);
        let reconnect = false;
        for (const name of tools) {
            const r = await mcp('tools/call', { name, arguments: {} });
            const text = (r.content ?? []).map(c => c.text ?? '').join(' ');
            log(`tools/call ${name} -> ${r.isError ? 'error' : 'ok'}: ${text.slice(0, 200)}`);
            if (r.isError && /reconnect/.test(text)) reconnect = true;
        }
        // A connection the server stopped taking says so (expired): the person reconnects.
        const status = (await api(bk.issuer, 'GET', `/api/v1/connections/${encodeURIComponent(connectionId)}`, { token: app.accessToken })).body?.status;
        log(`connection status: ${status}`);
        if (status && status !== 'active') reconnect = true;
        if (!reconnect && round >= 1) break;
        if (reconnect) {
            if (reconnects === 2) {
                log('the server still wants more after three authorizations: giving up');
                return 1;
            }
            reconnects++;
            log(`reconnecting (${reconnects})`);
            let connectionId = await connect();
    if (!connectionId) return 1;
        }
    }
    return 0;
}

main().then(
    code => {
        // Why it failed is in the binary's log: keep it with the scenario's stderr.
        if (code !== 0 || process.env.MCP_AUTH_SERVER_LOG) process.stderr.write(`--- server log (tail) ---\n${bk?.logTail()}\n`);
        finish(code);
    },
    err => {
        log(`error: ${err.stack ?? err}`);
        if (bk) process.stderr.write(`--- server log (tail) ---\n${bk.logTail()}\n`);
        finish(1);
    }
);
