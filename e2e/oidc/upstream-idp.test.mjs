// End-to-end: people sign in to Bridgekeeper with an upstream OpenID Connect provider — npm
// `oidc-provider` (panva, on the pinned Node 22 it supports), with a real login: its interaction
// pages (a password form and a consent page, ../connections/lib/interaction.mjs) driven over HTTP
// with a cookie jar per site. Bridgekeeper runs as the binary, configured with two providers on
// that server (`acme`, and `acmecorp` limited to acme.example addresses).
//
// What it proves: a verified person gets an account; the provider restarts with a new signing key
// first in its JWKS and the next sign-in is accepted (the new key id makes Bridgekeeper fetch the
// keys again); an unverified email an existing account holds neither signs in nor links
// (takeover refused); a verified one is not linked either — the person is told to sign in and
// link, and linking while signed in works, after which the provider signs in to that account; a
// replayed callback, a forged state and a nonce changed on the way are refused; the domain
// restriction holds; a white-label client naming the provider shows it alone under its branding.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';

import { UserAgent } from '../connections/lib/agent.mjs';
import { throughInteraction } from '../connections/lib/interaction.mjs';
import { extractForm } from '../ts/lib/browser.mjs';
import { idpEnv, rsaKey, startIdp } from './lib/idp.mjs';
import { REDIRECT_URI, createOperatorToken, createWhitelabelClient, signUp, startServer, withServerLog } from './lib/bridgekeeper.mjs';

const TEST_TIMEOUT_MS = 60_000;
const PASSWORD = 'correct horse battery staple';

describe('sign-in with an upstream OpenID Connect provider (oidc-provider)', { timeout: 5 * TEST_TIMEOUT_MS }, () => {
    let idp;
    let bk;
    let op;
    let callbackUrl;

    before(async () => {
        idp = await startIdp();
        const env = {
            ...idpEnv(idp),
            ...idpEnv(idp, 'acmecorp', 'Acme Corp'),
            BRIDGEKEEPER_IDP__PROVIDERS__ACMECORP__ALLOWED_EMAIL_DOMAINS: 'acme.example'
        };
        Object.assign(process.env, env);
        bk = await startServer();
        for (const k of Object.keys(env)) delete process.env[k];
        callbackUrl = `${bk.issuer}/login/idp/callback`;
        idp.configure({ redirectUri: callbackUrl, signingKeys: [rsaKey('key-1')] });
        op = (await createOperatorToken(bk.dataDir)).token;
    });

    after(async () => {
        await bk?.stop();
        await idp?.close();
    });

    /** Who signs in at the provider next; `verified`: its email_verified claim ('omitted': none at all). */
    const who = (sub, email, verified = true) =>
        Object.assign(idp.person, { accountId: sub, username: sub, email, email_verified: verified === 'omitted' ? undefined : verified });

    /** Through the provider's real login and consent pages, from an authorization URL to Bridgekeeper's callback. */
    async function atIdp(agent, authorizationUrl) {
        const { callback, seen } = await throughInteraction(agent, authorizationUrl, {
            issuer: idp.issuer,
            callbackUrl,
            login: ({ target }) => agent.post(target, { username: idp.person.username, password: idp.person.password }),
            consent: ({ target }) => agent.post(target, { decision: 'approve' })
        });
        return { callback, seen };
    }

    /** Presses "Continue with <name>" on the login page; returns where the provider is asked. */
    async function pressContinue(agent, idpId = 'acme', next = '/') {
        const login = await agent.get(`${bk.issuer}/login?next=${encodeURIComponent(next)}`);
        assert.equal(login.status, 200);
        const form = extractForm(login.text, '/login/idp');
        const res = await agent.post(`${bk.issuer}/login/idp`, { csrf_token: form.hidden.get('csrf_token'), idp: idpId, next });
        assert.equal(res.status, 303, res.text);
        assert.ok(res.location.startsWith(`${idp.issuer}/auth?`), res.location);
        const asked = new URL(res.location);
        assert.equal(asked.searchParams.get('code_challenge_method'), 'S256');
        assert.ok(asked.searchParams.get('nonce') && asked.searchParams.get('state'));
        return res.location;
    }

    /** A whole sign-in in `agent`: Bridgekeeper's answer to the callback, and the callback URL. */
    async function signInThroughIdp(agent, idpId = 'acme') {
        const { callback, seen } = await atIdp(agent, await pressContinue(agent, idpId));
        const answer = await agent.get(callback);
        return { answer, callback, seen };
    }

    async function homeEmail(agent) {
        const home = await agent.get(`${bk.issuer}/`);
        return home.text;
    }

    /** Signs in with a password in `agent`. */
    async function passwordSignIn(agent, email) {
        const login = await agent.get(`${bk.issuer}/login?next=%2F`);
        const form = extractForm(login.text, '/login');
        const res = await agent.post(`${bk.issuer}/login`, { csrf_token: form.hidden.get('csrf_token'), next: '/', email, password: PASSWORD });
        assert.equal(res.status, 303, res.text);
    }

    async function linkedPage(agent) {
        const res = await agent.get(`${bk.issuer}/account/security/sign-in-methods`);
        assert.equal(res.status, 200, res.text);
        return res.text;
    }

    test('a real login creates a verified account; after the provider restarts with a new key first, sign-in still works', { timeout: TEST_TIMEOUT_MS }, () =>
        withServerLog(bk, async () => {
            who('p-rotate', 'rotate@acme.example');
            const first = new UserAgent();
            const { answer, seen } = await signInThroughIdp(first);
            assert.deepEqual(seen, ['login', 'consent'], 'the provider asked for the password and consent');
            assert.equal(answer.status, 303, answer.text);
            assert.equal(answer.location, `${bk.issuer}/`);
            assert.match(await homeEmail(first), /rotate@acme\.example/);
            const res = await fetch(`${bk.issuer}/api/v1/admin/accounts?email=rotate%40acme.example`, { headers: { Authorization: `Bearer ${op}` } });
            const [account] = (await res.json()).accounts;
            assert.equal(account.emailVerified, true, 'the provider vouched for the address');
            const fetchesBefore = idp.jwksRequests.length;
            assert.ok(fetchesBefore >= 1);

            // The provider restarts with a new signing key first (the old one still published).
            await idp.restart({ redirectUri: callbackUrl, signingKeys: [rsaKey('key-2'), idp.keys[0]] });
            const second = new UserAgent();
            const again = await signInThroughIdp(second);
            assert.equal(again.answer.status, 303, again.answer.text);
            assert.match(await homeEmail(second), /rotate@acme\.example/, 'the same account, through a token signed by key-2');
            assert.ok(idp.jwksRequests.length > fetchesBefore, 'the unknown key id made Bridgekeeper fetch the keys again');

            // Later the old key is gone altogether: still fine (key-2 signs).
            await idp.restart({ redirectUri: callbackUrl, signingKeys: [idp.keys[0]] });
            const third = await signInThroughIdp(new UserAgent());
            assert.equal(third.answer.status, 303, third.answer.text);
        }));

    test('security: an unverified email an existing account holds neither signs in nor links (takeover refused)', { timeout: TEST_TIMEOUT_MS }, () =>
        withServerLog(bk, async () => {
            await signUp(bk.issuer, 'victim@acme.example', PASSWORD);
            for (const verified of [false, 'omitted']) {
                who(`attacker-${verified}`, 'victim@acme.example', verified);
                const attacker = new UserAgent();
                const { answer } = await signInThroughIdp(attacker);
                assert.equal(answer.status, 403, answer.text);
                assert.match(answer.text, /does not vouch for your email address/);
                assert.doesNotMatch(await homeEmail(attacker), /victim@acme\.example/, 'not signed in');
            }
            const victim = new UserAgent();
            await passwordSignIn(victim, 'victim@acme.example');
            assert.match(await linkedPage(victim), /No identity provider is linked/);
        }));

    test('a verified email of an existing account is not linked by sign-in; linking while signed in works', { timeout: TEST_TIMEOUT_MS }, () =>
        withServerLog(bk, async () => {
            await signUp(bk.issuer, 'owner@acme.example', PASSWORD);
            who('owner-at-acme', 'owner@acme.example');
            const stranger = new UserAgent();
            const { answer } = await signInThroughIdp(stranger);
            assert.equal(answer.status, 409, answer.text);
            assert.match(answer.text, /Sign in the usual way/);
            assert.doesNotMatch(await homeEmail(stranger), /owner@acme\.example/);

            // The owner signs in with the password and links the provider from the security page.
            const owner = new UserAgent();
            await passwordSignIn(owner, 'owner@acme.example');
            const page = await linkedPage(owner);
            assert.match(page, /No identity provider is linked/);
            const form = extractForm(page, '/account/security/sign-in-methods/link');
            const res = await owner.post(`${bk.issuer}/account/security/sign-in-methods/link`, { csrf_token: form.hidden.get('csrf_token'), idp: 'acme' });
            assert.equal(res.status, 303, res.text);
            const { callback } = await atIdp(owner, res.location);
            const linked = await owner.get(callback);
            assert.equal(linked.status, 303, linked.text);
            assert.equal(linked.location, `${bk.issuer}/account/security/sign-in-methods?notice=linked`);
            assert.match(await linkedPage(owner), /Acme SSO · owner@acme\.example/);

            // The next sign-in through the provider lands in that account.
            const later = new UserAgent();
            const next = await signInThroughIdp(later);
            assert.equal(next.answer.status, 303, next.answer.text);
            assert.match(await homeEmail(later), /owner@acme\.example/);
        }));

    test('security: a replayed callback, a forged state and a nonce changed on the way are refused', { timeout: TEST_TIMEOUT_MS }, () =>
        withServerLog(bk, async () => {
            who('p-replay', 'replay@acme.example');
            const agent = new UserAgent();
            const { answer, callback } = await signInThroughIdp(agent);
            assert.equal(answer.status, 303, answer.text);
            const replay = await agent.get(callback);
            assert.equal(replay.status, 400, 'the state was spent');
            assert.match(replay.text, /already used/);

            // A state Bridgekeeper never handed out (the code is real).
            const other = new UserAgent();
            const { callback: cb2 } = await atIdp(other, await pressContinue(other));
            const forged = new URL(cb2);
            forged.searchParams.set('state', randomBytes(32).toString('base64url'));
            assert.equal((await other.get(forged.href)).status, 400);

            // The nonce changed on its way to the provider: the ID token carries the wrong one.
            who('p-nonce', 'nonce@acme.example');
            const third = new UserAgent();
            const asked = new URL(await pressContinue(third));
            asked.searchParams.set('nonce', randomBytes(16).toString('base64url'));
            const { callback: cb3 } = await atIdp(third, asked.href);
            const refused = await third.get(cb3);
            assert.equal(refused.status, 400, refused.text);
            assert.match(refused.text, /nonce/);
            assert.doesNotMatch(await homeEmail(third), /nonce@acme\.example/);
        }));

    test('security: a provider limited to a domain refuses other addresses', { timeout: TEST_TIMEOUT_MS }, () =>
        withServerLog(bk, async () => {
            who('p-outsider', 'outsider@elsewhere.example');
            const { answer } = await signInThroughIdp(new UserAgent(), 'acmecorp');
            assert.equal(answer.status, 403, answer.text);
            assert.match(answer.text, /limited to addresses in acme\.example/);
            who('p-insider', 'insider@acme.example');
            const ok = await signInThroughIdp(new UserAgent(), 'acmecorp');
            assert.equal(ok.answer.status, 303, ok.answer.text);
        }));

    test('a white-label client naming the provider shows it alone, under its branding', { timeout: TEST_TIMEOUT_MS }, () =>
        withServerLog(bk, async () => {
            const app = await createWhitelabelClient(bk.issuer, op, { name: 'Acme Portal', identityProvider: 'acme' });
            assert.equal(app.client.identityProvider, 'acme');
            const authorize = new URL('/api/v1/auth/authorize', bk.issuer);
            for (const [k, v] of Object.entries({
                response_type: 'code',
                client_id: app.clientId,
                redirect_uri: REDIRECT_URI,
                scope: 'account',
                state: 's',
                code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
                code_challenge_method: 'S256'
            }))
                authorize.searchParams.set(k, v);
            const agent = new UserAgent();
            const res = await agent.get(authorize.href);
            assert.equal(res.status, 303, res.text);
            const login = await agent.get(res.location);
            assert.match(login.text, /Acme Portal/, 'the client brand');
            assert.match(login.text, /Continue with Acme SSO/);
            assert.doesNotMatch(login.text, /Continue with Acme Corp/, 'only the provider the client names');
            // And it works from there: back to the authorization request after the provider.
            who('p-portal', 'portal@acme.example');
            const form = extractForm(login.text, '/login/idp');
            const next = form.hidden.get('next');
            const started = await agent.post(`${bk.issuer}/login/idp`, { csrf_token: form.hidden.get('csrf_token'), idp: 'acme', next });
            const { callback } = await atIdp(agent, started.location);
            const back = await agent.get(callback);
            assert.equal(back.status, 303, back.text);
            assert.equal(new URL(back.location).pathname + new URL(back.location).search, next, 'back to the pending authorization request');
        }));
});
