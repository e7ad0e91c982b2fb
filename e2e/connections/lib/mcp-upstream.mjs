// A remote MCP server that protects itself with OAuth, as MCP authorization (2025-11-25) has it,
// built from real third-party parts and run by the test over HTTPS from one throwaway CA
// (../../lib/certs.mjs) that the binary is told to trust:
//
// - the resource server: the official TypeScript SDK (`@modelcontextprotocol/sdk`, v1) —
//   `McpServer` with two tools over `StreamableHTTPServerTransport` (stateful sessions, answers
//   as server-sent events), `requireBearerAuth` in front of it (401 with
//   `WWW-Authenticate: Bearer … scope="mcp:tools", resource_metadata="…"` without a good
//   token), `mcpAuthMetadataRouter` serving its RFC 9728 protected-resource metadata at
//   /.well-known/oauth-protected-resource/mcp. Tokens are checked by introspection (RFC 7662) at
//   the authorization server, as a confidential client of its own: active, and issued for this
//   resource (`aud`, also checked by the SDK's `expectedResource`).
// - the authorization server: npm `oidc-provider` (panva), with open dynamic client registration
//   (RFC 7591) and no client for Bridgekeeper, PKCE required, resource indicators (RFC 8707: the
//   MCP URL is its one resource server, whose access tokens are opaque and carry `aud` = the MCP
//   URL), refresh tokens (on offline_access, or for the MCP resource) rotated on every use,
//   revocation, introspection, and RFC 9207 `iss` in authorization responses (advertised by
//   oidc-provider itself). Login and consent are the pages of ./interaction.mjs on the
//   package's interaction API, as in ./upstream.mjs.
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';

import express from 'express';
import Provider, { errors as oidcErrors } from 'oidc-provider';
import * as z from 'zod';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js';
import { getOAuthProtectedResourceMetadataUrl, mcpAuthMetadataRouter } from '@modelcontextprotocol/sdk/server/auth/router.js';
import { InvalidTokenError } from '@modelcontextprotocol/sdk/server/auth/errors.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';

import { makeCerts } from '../../lib/certs.mjs';
import { rawRequest } from './agent.mjs';
import { accountFinder, interactionPages, page } from './interaction.mjs';

async function listen(server) {
    await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
    });
    return server.address().port;
}

/** The MCP server's own scopes (its protected-resource metadata) and the one it requires. */
export const MCP_SCOPES = ['mcp:tools', 'mcp:admin'];
export const REQUIRED_SCOPE = 'mcp:tools';

/**
 * @param {{user: {accountId: string, username: string, password: string, email: string, name: string},
 *          accessTokenTtl?: number, serverInfo?: {name: string, version: string}}} opts
 */
export async function startMcpUpstream({ user, accessTokenTtl = 300, serverInfo = { name: 'bk-e2e-docs', version: '3.1.4' } }) {
    const dir = await mkdtemp(path.join(tmpdir(), 'bk-e2e-mcp-upstream-'));
    await makeCerts(dir, 'bridgekeeper e2e mcp upstream CA');
    const tls = { cert: await readFile(path.join(dir, 'leaf.pem')), key: await readFile(path.join(dir, 'leaf.key')) };
    const ca = await readFile(path.join(dir, 'ca.pem'));

    let asHandler = (_req, res) => page(res, 503, 'Not ready', '');
    let mcpHandler = (_req, res) => page(res, 503, 'Not ready', '');
    const asServer = createServer(tls, (req, res) => asHandler(req, res));
    const mcpServer = createServer(tls, (req, res) => mcpHandler(req, res));
    const issuer = `https://localhost:${await listen(asServer)}`;
    const mcpOrigin = `https://localhost:${await listen(mcpServer)}`;
    const mcpUrl = `${mcpOrigin}/mcp`;

    // The resource server's own client at the authorization server (introspection only).
    const resourceClient = { clientId: 'docs-mcp-server', clientSecret: `rs-${randomBytes(24).toString('base64url')}` };

    /** What the provider did, in order: {event, ...} (opaque token values are their jti). */
    const events = [];
    /** Requests to the provider's endpoints: {method, path, status, userAgent, authorization (scheme), params (names)}. */
    const requests = [];
    /** The registration requests' metadata as received, and the clients made. */
    const registrations = [];
    /** Login and consent page outcomes. */
    const interactions = [];
    /** Requests to the MCP server: {method, path, rpc (JSON-RPC method(s)), status, bearer, clientId, sub, resource, scopes, userAgent, session}. */
    const mcpRequests = [];
    /** Each refresh-token decision at a code exchange: {offlineAccess (granted), resource}. */
    const refreshPolicy = [];

    // ---------------------------------------------------------------- the authorization server
    const provider = new Provider(issuer, {
        clients: [
            {
                client_id: resourceClient.clientId,
                client_secret: resourceClient.clientSecret,
                client_name: 'Docs MCP server (resource server)',
                redirect_uris: [],
                response_types: [],
                grant_types: [],
                token_endpoint_auth_method: 'client_secret_post'
            }
        ],
        findAccount: accountFinder(user),
        claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
        scopes: ['openid', 'offline_access', 'email', 'profile'],
        // A refresh token for a code grant of a client allowed to refresh that asked for offline
        // access — which oidc-provider keeps only with prompt=consent (OIDC Core §11), and drops
        // silently otherwise — or whose token is for the MCP server (the resource asked for at the
        // token endpoint): a policy many authorization servers have for their resource servers.
        async issueRefreshToken(ctx, client, code) {
            if (!client.grantTypeAllowed('refresh_token')) return false;
            refreshPolicy.push({ offlineAccess: code.scopes.has('offline_access'), resource: ctx.oidc.params?.resource });
            // oidc-provider's default policy: a refresh token only for a granted offline_access
            // (which it honours only with prompt=consent, OpenID Connect Core §11).
            return code.scopes.has('offline_access');
        },
        rotateRefreshToken: true,
        pkce: { required: () => true },
        ttl: {
            AccessToken: accessTokenTtl,
            AuthorizationCode: 60,
            IdToken: 3600,
            RefreshToken: 86_400,
            Grant: 86_400,
            Interaction: 600,
            Session: 86_400
        },
        clockTolerance: 0,
        cookies: { keys: [randomBytes(32).toString('base64url')] },
        jwks: { keys: [{ ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }), kid: 'e2e-mcp', use: 'sig', alg: 'RS256' }] },
        features: {
            devInteractions: { enabled: false },
            // Open registration (no initial access token), as MCP clients expect of it.
            registration: { enabled: true },
            // A client revokes only its own tokens; the resource server (confidential) introspects any.
            revocation: { enabled: true, allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId },
            introspection: {
                enabled: true,
                allowedPolicy: async (_ctx, client, token) => client.clientId === resourceClient.clientId || token.clientId === client.clientId
            },
            resourceIndicators: {
                enabled: true,
                defaultResource: async () => undefined,
                useGrantedResource: async () => false,
                // The one resource server: the MCP URL exactly.
                async getResourceServerInfo(_ctx, resourceIndicator) {
                    if (resourceIndicator !== mcpUrl) throw new oidcErrors.InvalidTarget();
                    return {
                        scope: MCP_SCOPES.join(' '),
                        audience: mcpUrl,
                        accessTokenTTL: accessTokenTtl,
                        accessTokenFormat: 'opaque'
                    };
                }
            }
        },
        interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` }
    });

    const record = (event, fields) => events.push({ event, at: Date.now(), ...fields });
    provider.use(async (ctx, next) => {
        await next();
        const params = ctx.oidc?.params;
        requests.push({
            method: ctx.method,
            path: ctx.path,
            status: ctx.status,
            userAgent: ctx.get('user-agent') || undefined,
            authorization: ctx.get('authorization') ? ctx.get('authorization').split(' ')[0] : undefined,
            params: params ? Object.keys(params).filter(k => params[k] !== undefined).sort() : undefined
        });
    });
    provider.on('registration_create.success', (ctx, client) => {
        registrations.push({ request: ctx.oidc.body ?? ctx.request.body, clientId: client.clientId, metadata: client.metadata() });
        record('registration_create.success', { clientId: client.clientId });
    });
    provider.on('registration_create.error', (_ctx, err) => record('registration_create.error', { error: err.error, description: err.error_description }));
    provider.on('grant.success', ctx => {
        const e = ctx.oidc.entities;
        record('grant.success', {
            grantType: ctx.oidc.params.grant_type,
            resource: ctx.oidc.params.resource,
            clientId: ctx.oidc.client?.clientId,
            clientAuth: ctx.oidc.client?.clientAuthMethod,
            grantId: e.Grant?.jti ?? e.AccessToken?.grantId,
            accessToken: e.AccessToken?.jti,
            audience: e.AccessToken?.aud,
            refreshToken: e.RefreshToken?.jti,
            rotatedFrom: e.RotatedRefreshToken?.jti,
            scope: e.AccessToken?.scope
        });
    });
    provider.on('grant.error', (ctx, err) =>
        record('grant.error', { grantType: ctx.oidc.params?.grant_type, presented: ctx.oidc.params?.refresh_token, error: err.error, description: err.error_description })
    );
    provider.on('grant.revoked', (ctx, grantId) => record('grant.revoked', { route: ctx.oidc.route, clientId: ctx.oidc.client?.clientId, grantId }));
    provider.on('refresh_token.consumed', t => record('refresh_token.consumed', { token: t.jti, grantId: t.grantId }));
    provider.on('refresh_token.destroyed', t => record('refresh_token.destroyed', { token: t.jti, grantId: t.grantId }));
    provider.on('revocation.success', ctx => record('revocation.success', { clientId: ctx.oidc.client?.clientId }));
    provider.on('revocation.error', (_ctx, err) => record('revocation.error', { error: err.error, description: err.error_description }));
    provider.on('authorization.success', (ctx, out) =>
        record('authorization.success', { clientId: ctx.oidc.client?.clientId, scope: ctx.oidc.params?.scope, resource: ctx.oidc.params?.resource, iss: out?.iss })
    );
    provider.on('authorization.error', (_ctx, err) => record('authorization.error', { error: err.error, description: err.error_description }));
    provider.on('server_error', (ctx, err) => record('server_error', { route: ctx?.oidc?.route, message: err.message }));

    const app = provider.callback();
    const interaction = interactionPages({ provider, user, interactions, loginTitle: 'Sign in to Docs', showResources: true, recordDetails: true });
    asHandler = (req, res) => {
        const u = new URL(req.url, issuer);
        if (!interaction(req, res, u.pathname)) app(req, res);
    };

    const endpoints = {
        discovery: `${issuer}/.well-known/openid-configuration`,
        authorize: `${issuer}/auth`,
        token: `${issuer}/token`,
        revoke: `${issuer}/token/revocation`,
        introspect: `${issuer}/token/introspection`,
        registration: `${issuer}/reg`
    };

    /** Introspection (RFC 7662) at the authorization server, as the resource server. */
    async function introspect(token, hint) {
        const res = await rawRequest(endpoints.introspect, {
            method: 'POST',
            headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json', 'User-Agent': 'docs-mcp-server' },
            body: new URLSearchParams({
                token,
                ...(hint ? { token_type_hint: hint } : {}),
                client_id: resourceClient.clientId,
                client_secret: resourceClient.clientSecret
            }).toString(),
            ca
        });
        if (res.status !== 200) throw new Error(`introspection: ${res.status} ${res.text}`);
        return res.json();
    }

    // ------------------------------------------------------------------- the MCP server (the SDK)
    const discovered = await rawRequest(endpoints.discovery, { headers: { Accept: 'application/json' }, ca });
    if (discovered.status !== 200) throw new Error(`oidc-provider discovery: ${discovered.status} ${discovered.text}`);
    const oauthMetadata = discovered.json();

    /** Tokens the MCP server is to refuse next, however good (a resource server that changed its mind). */
    let refuseNext = 0;

    /** The SDK's token verifier: introspection, active, for this resource. */
    const verifier = {
        async verifyAccessToken(token) {
            if (refuseNext > 0) {
                refuseNext--;
                throw new InvalidTokenError('Refused by the test');
            }
            const r = await introspect(token, 'access_token');
            if (!r.active) throw new InvalidTokenError('The token is not active');
            const aud = Array.isArray(r.aud) ? r.aud : r.aud ? [r.aud] : [];
            if (!aud.includes(mcpUrl)) throw new InvalidTokenError('The token was not issued for this server');
            if (r.token_type !== undefined && r.token_type !== 'Bearer') throw new InvalidTokenError('Not an access token');
            return {
                token,
                clientId: r.client_id,
                scopes: (r.scope ?? '').split(' ').filter(Boolean),
                expiresAt: r.exp,
                resource: new URL(mcpUrl),
                extra: { sub: r.sub }
            };
        }
    };

    function buildServer() {
        const server = new McpServer(serverInfo, { capabilities: { tools: {} } });
        server.registerTool(
            'search_docs',
            { description: 'Searches the documentation', inputSchema: { query: z.string() } },
            async ({ query }) => ({ content: [{ type: 'text', text: `3 pages match ${JSON.stringify(query)}` }] })
        );
        server.registerTool('whoami', { description: 'Who the token is for' }, async extra => ({
            content: [{ type: 'text', text: JSON.stringify({ sub: extra.authInfo?.extra?.sub, clientId: extra.authInfo?.clientId }) }]
        }));
        return server;
    }

    /** Sessions: id → {transport, sub} (a session is bound to the person whose token opened it). */
    const sessions = new Map();
    const mcpApp = express();
    mcpApp.disable('x-powered-by');
    mcpApp.use((req, res, next) => {
        res.on('finish', () => {
            const body = req.body;
            const rpc = Array.isArray(body) ? body.map(m => m?.method) : body?.method;
            mcpRequests.push({
                method: req.method,
                path: req.originalUrl.split('?')[0],
                rpc,
                status: res.statusCode,
                bearer: /^bearer /i.test(req.headers.authorization ?? ''),
                clientId: req.auth?.clientId,
                sub: req.auth?.extra?.sub,
                resource: req.auth?.resource?.href,
                scopes: req.auth?.scopes,
                userAgent: req.headers['user-agent'],
                protocolVersion: req.headers['mcp-protocol-version'],
                session: req.headers['mcp-session-id'],
                challenge: res.getHeader('www-authenticate')
            });
        });
        next();
    });
    mcpApp.use(
        mcpAuthMetadataRouter({
            oauthMetadata,
            resourceServerUrl: new URL(mcpUrl),
            scopesSupported: MCP_SCOPES,
            resourceName: 'Docs (e2e)'
        })
    );
    const prmUrl = getOAuthProtectedResourceMetadataUrl(new URL(mcpUrl));
    const bearer = requireBearerAuth({
        verifier,
        requiredScopes: [REQUIRED_SCOPE],
        resourceMetadataUrl: prmUrl,
        expectedResource: new URL(mcpUrl)
    });
    mcpApp.all('/mcp', express.json({ limit: '256kb' }), bearer, async (req, res) => {
        try {
            const sid = req.headers['mcp-session-id'];
            let session = typeof sid === 'string' ? sessions.get(sid) : undefined;
            if (session && session.sub !== req.auth.extra.sub) {
                res.status(403).json({ jsonrpc: '2.0', error: { code: -32000, message: 'This session belongs to someone else' }, id: null });
                return;
            }
            if (!session) {
                if (sid !== undefined) {
                    res.status(404).json({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null });
                    return;
                }
                if (req.method !== 'POST' || !isInitializeRequest(req.body)) {
                    res.status(400).json({ jsonrpc: '2.0', error: { code: -32000, message: 'Bad Request: no session' }, id: null });
                    return;
                }
                const transport = new StreamableHTTPServerTransport({
                    sessionIdGenerator: () => randomUUID(),
                    onsessioninitialized: id => sessions.set(id, { transport, sub: req.auth.extra.sub })
                });
                transport.onclose = () => {
                    if (transport.sessionId) sessions.delete(transport.sessionId);
                };
                await buildServer().connect(transport);
                session = { transport };
            }
            await session.transport.handleRequest(req, res, req.body);
        } catch (err) {
            if (!res.headersSent) res.status(500).json({ jsonrpc: '2.0', error: { code: -32603, message: String(err?.message ?? err) }, id: null });
        }
    });
    mcpHandler = mcpApp;

    async function stop() {
        for (const { transport } of sessions.values()) await transport.close().catch(() => {});
        for (const s of [asServer, mcpServer]) {
            s.closeAllConnections?.();
            await new Promise(resolve => s.close(resolve));
        }
        await rm(dir, { recursive: true, force: true });
    }

    return {
        issuer,
        mcpUrl,
        prmUrl,
        serverInfo,
        accessTokenTtl,
        resourceClient,
        caFile: path.join(dir, 'ca.pem'),
        ca,
        endpoints,
        events,
        requests,
        registrations,
        interactions,
        mcpRequests,
        refreshPolicy,
        sessions,
        introspect,
        /** The MCP server refuses the next `n` tokens presented to it. */
        refuseNextTokens(n) {
            refuseNext = n;
        },
        provider,
        stop
    };
}
