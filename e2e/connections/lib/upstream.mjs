// The upstream: a real third-party OAuth 2.0 / OpenID Connect server, npm
// `oidc-provider` (panva), run over HTTPS on 127.0.0.1 with a certificate from a
// throwaway CA (openssl CLI). The binary is told to trust the CA
// (connections.extra_ca_file); the test's user agent trusts it per request.
//
// Configured as a provider that makes a broker's life hard: short-lived access
// tokens, refresh tokens rotated on every use (a used one is dead, and presenting
// it again revokes the whole grant), PKCE required of every client, revocation,
// introspection and userinfo on. One confidential client (client_secret_post)
// whose only redirect URI is Bridgekeeper's callback.
//
// Login and consent: devInteractions are off; this module serves the pages a real
// deployment serves (./interaction.mjs): a login form that checks a password, and
// a consent page (approve or deny).
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';

import Provider from 'oidc-provider';

import { makeCerts } from '../../lib/certs.mjs';
import { accountFinder, interactionPages, page } from './interaction.mjs';

/**
 * Starts listening (so the URLs are known) before the provider exists: the
 * provider's one client needs Bridgekeeper's callback URL, known only once the
 * binary, which needs these URLs, is up. Call `configure({redirectUri})` then.
 *
 * @param {{accessTokenTtl: number, user: {accountId: string, username: string, password: string, email: string, name: string}}} opts
 */
export async function startUpstream({ accessTokenTtl, user }) {
    const dir = await mkdtemp(path.join(tmpdir(), 'bk-e2e-upstream-'));
    await makeCerts(dir, 'bridgekeeper e2e upstream CA');
    let handler = (_req, res) => page(res, 503, 'Not ready', '');
    const server = createServer(
        { cert: await readFile(path.join(dir, 'leaf.pem')), key: await readFile(path.join(dir, 'leaf.key')) },
        (req, res) => handler(req, res)
    );
    await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
    });
    const issuer = `https://localhost:${server.address().port}`;
    const clientId = 'bridgekeeper-acme';
    const clientSecret = `secret-${randomBytes(24).toString('base64url')}`;

    /** What the provider did, in order: {event, ...} (token values are the opaque tokens themselves). */
    const events = [];
    /** Requests to the provider's own endpoints: {method, path, status, headers that matter, params (names)}. */
    const requests = [];
    /** Requests to the login and consent pages: {method, path, outcome}. */
    const interactions = [];
    let provider;
    /** Token requests are held this long before the provider sees them (a slow provider). */
    let tokenDelayMs = 0;

    function configure({ redirectUri }) {
        provider = new Provider(issuer, {
            clients: [
                {
                    client_id: clientId,
                    client_secret: clientSecret,
                    client_name: 'Bridgekeeper (e2e)',
                    redirect_uris: [redirectUri],
                    grant_types: ['authorization_code', 'refresh_token'],
                    response_types: ['code'],
                    token_endpoint_auth_method: 'client_secret_post'
                }
            ],
            findAccount: accountFinder(user),
            claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
            scopes: ['openid', 'offline_access', 'email', 'profile'],
            // A refresh token for every code grant of a client allowed to refresh that asked for
            // offline access (which OIDC keeps only with prompt=consent) ...
            async issueRefreshToken(_ctx, client, code) {
                return client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access');
            },
            // ... and a new one on every refresh: the used one is consumed.
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
            // Expiry exactly as issued (the default tolerates 15 s of clock skew).
            clockTolerance: 0,
            cookies: { keys: [randomBytes(32).toString('base64url')] },
            // Its own signing key (ID tokens), not the package's development keys. State stays in
            // the package's in-memory adapter: this provider lives as long as the test.
            jwks: { keys: [{ ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }), kid: 'e2e', use: 'sig', alg: 'RS256' }] },
            features: {
                devInteractions: { enabled: false },
                // A client may revoke or introspect only its own tokens.
                revocation: { enabled: true, allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId },
                introspection: { enabled: true, allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId },
                userinfo: { enabled: true }
            },
            interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` }
        });

        const record = (event, fields) => events.push({ event, at: Date.now(), ...fields });
        // Every request to the provider's endpoints: what arrived (parameter names, never values).
        provider.use(async (ctx, next) => {
            await next();
            const params = ctx.oidc?.params;
            requests.push({
                method: ctx.method,
                path: ctx.path,
                status: ctx.status,
                contentType: ctx.get('content-type') || undefined,
                accept: ctx.get('accept') || undefined,
                userAgent: ctx.get('user-agent') || undefined,
                authorization: ctx.get('authorization') ? ctx.get('authorization').split(' ')[0] : undefined,
                params: params ? Object.keys(params).filter(k => params[k] !== undefined).sort() : undefined
            });
        });
        provider.on('grant.success', ctx => {
            const e = ctx.oidc.entities;
            record('grant.success', {
                grantType: ctx.oidc.params.grant_type,
                clientId: ctx.oidc.client?.clientId,
                clientAuth: ctx.oidc.client?.clientAuthMethod,
                grantId: e.Grant?.jti ?? e.AccessToken?.grantId,
                accessToken: e.AccessToken?.jti,
                refreshToken: e.RefreshToken?.jti,
                rotatedFrom: e.RotatedRefreshToken?.jti,
                scope: e.AccessToken?.scope
            });
        });
        provider.on('grant.error', (ctx, err) =>
            record('grant.error', {
                grantType: ctx.oidc.params?.grant_type,
                presented: ctx.oidc.params?.refresh_token,
                error: err.error,
                description: err.error_description
            })
        );
        provider.on('grant.revoked', (ctx, grantId) =>
            record('grant.revoked', { route: ctx.oidc.route, clientId: ctx.oidc.client?.clientId, grantId })
        );
        provider.on('refresh_token.consumed', t => record('refresh_token.consumed', { token: t.jti, grantId: t.grantId }));
        provider.on('refresh_token.destroyed', t => record('refresh_token.destroyed', { token: t.jti, grantId: t.grantId }));
        provider.on('revocation.error', (ctx, err) => record('revocation.error', { error: err.error, description: err.error_description }));
        provider.on('authorization.success', ctx =>
            record('authorization.success', { clientId: ctx.oidc.client?.clientId, scope: ctx.oidc.params?.scope })
        );
        provider.on('authorization.error', (ctx, err) => record('authorization.error', { error: err.error, description: err.error_description }));
        provider.on('server_error', (ctx, err) => record('server_error', { route: ctx?.oidc?.route, message: err.message }));
        provider.on('userinfo.error', (ctx, err) => record('userinfo.error', { error: err.error }));

        const app = provider.callback();
        const interaction = interactionPages({ provider, user, interactions, loginTitle: 'Sign in to Acme' });
        handler = (req, res) => {
            const u = new URL(req.url, issuer);
            if (tokenDelayMs > 0 && req.method === 'POST' && u.pathname === '/token') {
                setTimeout(() => app(req, res), tokenDelayMs);
                return;
            }
            if (!interaction(req, res, u.pathname)) app(req, res);
        };
    }

    async function stop() {
        server.closeAllConnections?.();
        await new Promise(resolve => server.close(resolve));
        await rm(dir, { recursive: true, force: true });
    }

    return {
        issuer,
        clientId,
        clientSecret,
        caFile: path.join(dir, 'ca.pem'),
        ca: await readFile(path.join(dir, 'ca.pem')),
        endpoints: {
            authorize: `${issuer}/auth`,
            token: `${issuer}/token`,
            revoke: `${issuer}/token/revocation`,
            introspect: `${issuer}/token/introspection`,
            userinfo: `${issuer}/me`
        },
        events,
        requests,
        interactions,
        configure,
        /** Makes the token endpoint answer `ms` later (0: at once). */
        slowTokenEndpoint(ms) {
            tokenDelayMs = ms;
        },
        get provider() {
            return provider;
        },
        stop
    };
}
