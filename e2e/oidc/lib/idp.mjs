// The upstream OpenID Connect provider of the e2e tests: npm `oidc-provider` (on the pinned Node 22
// it supports) with real login and consent pages (../../connections/lib/interaction.mjs).
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

import { interactionPages } from '../../connections/lib/interaction.mjs';

export const rsaKey = kid => ({ ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' });

/**
 * The provider: an HTTP server on a fixed port (so its issuer survives a restart) serving the
 * current `oidc-provider` instance. `person` is who may sign in at its login page (mutable).
 */
export async function startIdp() {
    let handler = (_req, res) => {
        res.writeHead(503);
        res.end();
    };
    const server = createServer((req, res) => handler(req, res));
    await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
    const port = server.address().port;
    const issuer = `http://127.0.0.1:${port}`;
    const clients = {
        acme: { id: 'bk-acme', secret: `s-${randomBytes(18).toString('base64url')}` },
        acmecorp: { id: 'bk-acmecorp', secret: `s-${randomBytes(18).toString('base64url')}` }
    };
    const person = { accountId: 'p1', username: 'p1', password: 'idp-password', email: 'p1@acme.example', email_verified: true };
    const jwksRequests = [];
    const interactions = [];
    let provider;
    let keys;

    function configure({ redirectUri, signingKeys }) {
        keys = signingKeys;
        provider = new Provider(issuer, {
            clients: Object.values(clients).map(c => ({
                client_id: c.id,
                client_secret: c.secret,
                redirect_uris: [redirectUri],
                grant_types: ['authorization_code'],
                response_types: ['code'],
                token_endpoint_auth_method: 'client_secret_basic'
            })),
            async findAccount(_ctx, sub) {
                if (sub !== person.accountId) return undefined;
                return {
                    accountId: sub,
                    async claims() {
                        const c = { sub, email: person.email, name: 'Pat Person' };
                        if (person.email_verified !== undefined) c.email_verified = person.email_verified;
                        return c;
                    }
                };
            },
            claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
            pkce: { required: () => true },
            cookies: { keys: [randomBytes(32).toString('base64url')] },
            jwks: { keys: signingKeys },
            features: { devInteractions: { enabled: false }, userinfo: { enabled: true } },
            interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` }
        });
        const app = provider.callback();
        const pages = interactionPages({ provider, user: person, interactions, loginTitle: 'Sign in to Acme' });
        handler = (req, res) => {
            const u = new URL(req.url, issuer);
            if (u.pathname === '/jwks') jwksRequests.push(Date.now());
            if (!pages(req, res, u.pathname)) app(req, res);
        };
    }

    async function close() {
        server.closeAllConnections?.();
        await new Promise(resolve => server.close(resolve));
    }

    return {
        issuer,
        clients,
        person,
        jwksRequests,
        configure,
        get keys() {
            return keys;
        },
        /** Stops the server and starts it again on the same port with `signingKeys` (state is lost, as in a real restart). */
        async restart({ redirectUri, signingKeys }) {
            await close();
            await new Promise((resolve, reject) => {
                server.once('error', reject);
                server.listen(port, '127.0.0.1', resolve);
            });
            configure({ redirectUri, signingKeys });
        },
        close
    };
}

/** Bridgekeeper's environment configuring `idp`'s client `id` as the provider `id` ("Continue with `name`"). */
export function idpEnv(idp, id = 'acme', name = 'Acme SSO') {
    const p = `BRIDGEKEEPER_IDP__PROVIDERS__${id.toUpperCase()}__`;
    return {
        BRIDGEKEEPER_IDP__ALLOW_PRIVATE_ADDRESSES: 'true',
        BRIDGEKEEPER_IDP__ALLOW_HTTP_LOOPBACK: 'true',
        [`${p}ISSUER`]: idp.issuer,
        [`${p}DISPLAY_NAME`]: name,
        [`${p}CLIENT_ID`]: idp.clients[id].id,
        [`${p}CLIENT_SECRET`]: idp.clients[id].secret
    };
}
