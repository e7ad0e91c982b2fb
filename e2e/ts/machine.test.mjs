// End-to-end: machine clients with the official MCP TypeScript SDK's own providers
// (`PrivateKeyJwtProvider`, `ClientCredentialsProvider` from
// `@modelcontextprotocol/sdk/client/auth-extensions.js`) against the real binary. An operator
// creates the clients (the auth-clients API with an operator token); the SDK discovers the
// authorization server from /mcp's 401, runs the client_credentials grant itself — signing its
// RFC 7523 client assertion with its private key, or sending its secret — and calls tools as the
// account the operator bound the client to. A client bound to no account gets a token that /mcp
// refuses, saying why.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ClientCredentialsProvider, PrivateKeyJwtProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';

import { serverBinary, startServer } from './lib/server.mjs';

const SCOPE = 'universal-mcp-read-write';
const TEST_TIMEOUT_MS = 60_000;

/** Records what the SDK sent (method, URL, status, token-request form, WWW-Authenticate). */
function recordingFetch(log) {
    return async (url, init = {}) => {
        const response = await fetch(url, init);
        let form;
        if (typeof init.body === 'string' || init.body instanceof URLSearchParams) {
            const text = String(init.body);
            if (!text.startsWith('{') && !text.startsWith('[')) form = Object.fromEntries(new URLSearchParams(text));
        }
        log.push({
            method: (init.method ?? 'GET').toUpperCase(),
            url: String(url),
            status: response.status,
            wwwAuthenticate: response.headers.get('www-authenticate') ?? undefined,
            form
        });
        return response;
    };
}

const describeLog = log => log.map(e => `${e.method} ${e.url} -> ${e.status}`).join('\n');

/** Runs `bridgekeeper <args>` on the server's data directory; its standard output. */
function cli(server, args, input) {
    return execFileSync(serverBinary(), [...args, '--data-dir', server.dataDir], {
        input,
        env: { ...process.env, BRIDGEKEEPER_LOG_FORMAT: 'json' },
        encoding: 'utf8'
    }).trim();
}

async function createClient(server, operatorToken, body) {
    const res = await fetch(`${server.issuer}/api/v1/auth-clients`, {
        method: 'POST',
        headers: { authorization: `Bearer ${operatorToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(body)
    });
    const json = await res.json();
    assert.equal(res.status, 201, JSON.stringify(json));
    return json;
}

function jwtClaims(token) {
    return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}

describe('machine clients through the TypeScript SDK', () => {
    let server;
    let operatorToken;
    let accountId;

    before(async () => {
        server = await startServer();
        operatorToken = JSON.parse(cli(server, ['admin', 'token', 'create', '--name', 'e2e-machine', '--format', 'json'])).token;
        accountId = cli(server, ['admin', 'account', 'create', '--email', `machine-${randomBytes(4).toString('hex')}@example.com`, '--password-stdin'], 'a long enough password\n')
            .split('\n')
            .pop();
        assert.match(accountId, /^acc_/);
    });

    after(async () => {
        await server?.stop();
    });

    test('PrivateKeyJwtProvider: client_credentials with a signed assertion, acting for the bound account', { timeout: TEST_TIMEOUT_MS }, async () => {
        const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
        const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'e2e-1', use: 'sig', alg: 'ES256' };
        const created = await createClient(server, operatorToken, {
            name: 'E2E nightly job',
            grantTypes: ['client_credentials'],
            tokenEndpointAuthMethod: 'private_key_jwt',
            jwks: { keys: [jwk] },
            allowedScopes: [SCOPE],
            boundAccountId: accountId
        });
        assert.equal(created.clientSecret, undefined, 'a private_key_jwt client gets no secret');
        assert.equal(created.client.tokenEndpointAuthMethod, 'private_key_jwt');

        const provider = new PrivateKeyJwtProvider({
            clientId: created.clientId,
            privateKey: privateKey.export({ format: 'pem', type: 'pkcs8' }),
            algorithm: 'ES256',
            scope: SCOPE,
            expectedIssuer: server.issuer
        });
        const log = [];
        const transport = new StreamableHTTPClientTransport(new URL(`${server.issuer}/mcp`), {
            authProvider: provider,
            fetch: recordingFetch(log)
        });
        const client = new Client({ name: 'bridgekeeper-e2e-machine', version: '1.0.0' });
        await client.connect(transport);
        try {
            const tokenRequests = log.filter(e => e.url === `${server.issuer}/api/v1/auth/token`);
            assert.equal(tokenRequests.length, 1, describeLog(log));
            const form = tokenRequests[0].form;
            assert.equal(form.grant_type, 'client_credentials');
            assert.equal(form.client_assertion_type, 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
            assert.equal(form.client_secret, undefined);
            assert.equal(tokenRequests[0].status, 200, describeLog(log));
            const tokens = provider.tokens();
            assert.equal(tokens.refresh_token, undefined, 'no refresh token for client_credentials');
            const claims = jwtClaims(tokens.access_token);
            assert.equal(claims.sub, accountId);
            assert.equal(claims.client_id, created.clientId);

            const { tools } = await client.listTools();
            assert.ok(tools.some(t => t.name === 'whoami'), tools.map(t => t.name).join(', '));
            const who = await client.callTool({ name: 'whoami', arguments: {} });
            assert.equal(who.isError ?? false, false, JSON.stringify(who));
            assert.equal(who.structuredContent.account_id, accountId);
            assert.equal(who.structuredContent.client_id, created.clientId);
            assert.deepEqual(who.structuredContent.scopes, [SCOPE]);
        } finally {
            await client.close();
        }
        assert.ok(!server.logTail().includes(provider.tokens().access_token), 'the token reached the log');
    });

    test('ClientCredentialsProvider: a secret client bound to the account works; one bound to none reaches no tenant', { timeout: TEST_TIMEOUT_MS }, async () => {
        const bound = await createClient(server, operatorToken, {
            name: 'E2E bound secret client',
            grantTypes: ['client_credentials'],
            allowedScopes: [SCOPE],
            boundAccountId: accountId
        });
        const provider = new ClientCredentialsProvider({
            clientId: bound.clientId,
            clientSecret: bound.clientSecret,
            scope: SCOPE,
            expectedIssuer: server.issuer
        });
        const client = new Client({ name: 'bridgekeeper-e2e-secret', version: '1.0.0' });
        await client.connect(new StreamableHTTPClientTransport(new URL(`${server.issuer}/mcp`), { authProvider: provider }));
        try {
            const who = await client.callTool({ name: 'whoami', arguments: {} });
            assert.equal(who.structuredContent.account_id, accountId);
        } finally {
            await client.close();
        }

        const unbound = await createClient(server, operatorToken, {
            name: 'E2E unbound secret client',
            grantTypes: ['client_credentials'],
            allowedScopes: [SCOPE]
        });
        const log = [];
        const lonely = new ClientCredentialsProvider({
            clientId: unbound.clientId,
            clientSecret: unbound.clientSecret,
            scope: SCOPE,
            expectedIssuer: server.issuer
        });
        const refused = new Client({ name: 'bridgekeeper-e2e-unbound', version: '1.0.0' });
        await assert.rejects(
            refused.connect(new StreamableHTTPClientTransport(new URL(`${server.issuer}/mcp`), { authProvider: lonely, fetch: recordingFetch(log) }))
        );
        const token = log.find(e => e.url === `${server.issuer}/api/v1/auth/token`);
        assert.equal(token?.status, 200, `the client got its token:\n${describeLog(log)}`);
        const challenge = log.filter(e => e.url === `${server.issuer}/mcp` && e.status === 401).pop();
        assert.ok(challenge, describeLog(log));
        assert.match(challenge.wwwAuthenticate, /acts for no account/);
        await refused.close().catch(() => {});
    });
});
