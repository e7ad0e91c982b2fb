// An in-memory OAuthClientProvider (the SDK's interface from
// @modelcontextprotocol/sdk/client/auth.js) whose "browser redirect" is a
// callback: the test drives the authorization pages over HTTP in it.
import { randomBytes } from 'node:crypto';

export class TestOAuthProvider {
    /**
     * @param {object} opts
     * @param {string} opts.redirectUrl  loopback redirect URI registered via DCR (nothing listens there)
     * @param {string} opts.scope        scope asked for in the client metadata
     * @param {(url: URL, provider: TestOAuthProvider) => Promise<void>} opts.onRedirect
     *        plays the user agent: called with the authorization URL the SDK built
     */
    constructor({ redirectUrl, scope, onRedirect }) {
        this._redirectUrl = redirectUrl;
        this._scope = scope;
        this._onRedirect = onRedirect;
        this._clientInformation = undefined;
        this._tokens = undefined;
        this._codeVerifier = undefined;
        this._discoveryState = undefined;
        /** Every authorization URL the SDK sent the "user" to. */
        this.authorizationUrls = [];
        /** Every token set the SDK saved, oldest first. */
        this.savedTokens = [];
        /** Every `state` handed out, newest last. */
        this.states = [];
        /** Scopes passed to invalidateCredentials. */
        this.invalidations = [];
    }

    get redirectUrl() {
        return this._redirectUrl;
    }

    get clientMetadata() {
        return {
            client_name: 'Bridgekeeper e2e (MCP TypeScript SDK)',
            redirect_uris: [this._redirectUrl],
            grant_types: ['authorization_code', 'refresh_token'],
            response_types: ['code'],
            token_endpoint_auth_method: 'none',
            scope: this._scope
        };
    }

    state() {
        const s = randomBytes(16).toString('base64url');
        this.states.push(s);
        return s;
    }

    clientInformation() {
        return this._clientInformation;
    }

    saveClientInformation(info) {
        this._clientInformation = info;
    }

    tokens() {
        return this._tokens;
    }

    saveTokens(tokens) {
        this._tokens = tokens;
        this.savedTokens.push(tokens);
    }

    async redirectToAuthorization(authorizationUrl) {
        this.authorizationUrls.push(authorizationUrl);
        await this._onRedirect(authorizationUrl, this);
    }

    saveCodeVerifier(codeVerifier) {
        this._codeVerifier = codeVerifier;
    }

    codeVerifier() {
        if (!this._codeVerifier) throw new Error('no code verifier saved');
        return this._codeVerifier;
    }

    saveDiscoveryState(state) {
        this._discoveryState = state;
    }

    discoveryState() {
        return this._discoveryState;
    }

    invalidateCredentials(scope) {
        this.invalidations.push(scope);
        if (scope === 'all' || scope === 'client') this._clientInformation = undefined;
        if (scope === 'all' || scope === 'tokens') this._tokens = undefined;
        if (scope === 'all' || scope === 'verifier') this._codeVerifier = undefined;
        if (scope === 'all' || scope === 'discovery') this._discoveryState = undefined;
    }

    /** Test hook: spoil the access token, keeping everything else. */
    corruptAccessToken(garbage) {
        this._tokens = { ...this._tokens, access_token: garbage };
    }
}
