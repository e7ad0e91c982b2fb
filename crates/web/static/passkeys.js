// Passkeys: the two-step WebAuthn ceremonies of /account/security/passkeys and the sign-in pages.
// Buttons carry data-passkey="register|sign_in|second_factor", data-csrf (the page's CSRF token)
// and, for sign-in, data-next. Errors are shown in #passkey-status. No inline script anywhere: the
// pages' CSP allows only this file.
'use strict';

(function () {
    const status = message => {
        const el = document.getElementById('passkey-status');
        if (el) {
            el.textContent = message;
            el.hidden = false;
        }
    };

    async function post(url, csrf, body) {
        const res = await fetch(url, {
            method: 'POST',
            credentials: 'same-origin',
            headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
            body: JSON.stringify(body)
        });
        const answer = await res.json().catch(() => ({}));
        if (!res.ok) throw new Error(answer.error || `The server answered ${res.status}.`);
        return answer;
    }

    async function register(button) {
        const csrf = button.dataset.csrf;
        const { ceremony, options } = await post('/account/security/passkeys/options', csrf, {});
        const credential = await navigator.credentials.create({
            publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options.publicKey)
        });
        const name = document.getElementById('passkey-name');
        const done = await post('/account/security/passkeys', csrf, {
            ceremony,
            name: name ? name.value : '',
            credential: credential.toJSON()
        });
        location.assign(done.redirect);
    }

    async function signIn(button, purpose) {
        const csrf = button.dataset.csrf;
        const { ceremony, options } = await post('/login/passkey/options', csrf, { purpose });
        const credential = await navigator.credentials.get({
            publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options.publicKey)
        });
        const done = await post('/login/passkey', csrf, {
            ceremony,
            credential: credential.toJSON(),
            next: button.dataset.next || '/'
        });
        location.assign(done.redirect);
    }

    document.addEventListener('DOMContentLoaded', () => {
        const supported = window.PublicKeyCredential && PublicKeyCredential.parseCreationOptionsFromJSON;
        for (const button of document.querySelectorAll('[data-passkey]')) {
            if (!supported) {
                button.disabled = true;
                button.title = 'This browser cannot use passkeys.';
                continue;
            }
            button.hidden = false;
            button.addEventListener('click', async event => {
                event.preventDefault();
                button.disabled = true;
                try {
                    const kind = button.dataset.passkey;
                    if (kind === 'register') await register(button);
                    else await signIn(button, kind);
                } catch (err) {
                    status(err.name === 'NotAllowedError' ? 'The passkey request was cancelled or timed out.' : err.message);
                } finally {
                    button.disabled = false;
                }
            });
        }
    });
})();
