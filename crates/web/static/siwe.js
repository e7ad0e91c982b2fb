// Sign-In with Ethereum (EIP-4361) through the browser's wallet (EIP-1193 `window.ethereum`): the
// login page's "Sign in with Ethereum" (data-siwe="sign_in") and the wallets page's "Link an
// Ethereum wallet" (data-siwe="link"). Buttons carry data-csrf (the page's CSRF token) and
// data-next; they stay hidden when no wallet is present. Errors are shown in #siwe-status. No
// inline script anywhere: the pages' CSP allows only this file.
'use strict';

(function () {
    const status = message => {
        const el = document.getElementById('siwe-status');
        if (el) {
            el.textContent = message;
            el.className = 'error';
            el.hidden = false;
        }
    };

    async function json(res) {
        const body = await res.json().catch(() => ({}));
        if (!res.ok) throw new Error(body.detail || `The server answered ${res.status}.`);
        return body;
    }

    // personal_sign takes the message as hex of its UTF-8 bytes.
    const hexOf = text =>
        '0x' + Array.from(new TextEncoder().encode(text), b => b.toString(16).padStart(2, '0')).join('');

    async function signIn(button) {
        const wallet = window.ethereum;
        const accounts = await wallet.request({ method: 'eth_requestAccounts' });
        if (!accounts || !accounts.length) throw new Error('The wallet shared no account.');
        const chainId = parseInt(await wallet.request({ method: 'eth_chainId' }), 16);
        // The nonce, what the message must name, and the address in its checksummed (EIP-55) form.
        const n = await json(await fetch(`/api/v1/auth/nonce?address=${encodeURIComponent(accounts[0])}`, {
            credentials: 'same-origin',
            cache: 'no-store'
        }));
        if (!n.chainIds.includes(chainId)) {
            throw new Error(`Switch the wallet to a network this server accepts (chain id ${n.chainIds.join(', ')}).`);
        }
        const message = [
            `${n.domain} wants you to sign in with your Ethereum account:`,
            n.address,
            '',
            button.dataset.siwe === 'link'
                ? `Link this address to your account at ${n.domain}.`
                : `Sign in to ${n.domain}.`,
            '',
            `URI: ${n.uri}`,
            'Version: 1',
            `Chain ID: ${chainId}`,
            `Nonce: ${n.nonce}`,
            `Issued At: ${new Date().toISOString()}`,
            `Expiration Time: ${new Date(n.expiresAt * 1000).toISOString()}`
        ].join('\n');
        const signature = await wallet.request({ method: 'personal_sign', params: [hexOf(message), accounts[0]] });
        const done = await json(await fetch('/api/v1/auth/authenticate', {
            method: 'POST',
            credentials: 'same-origin',
            headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': button.dataset.csrf },
            body: JSON.stringify({ message, signature, next: button.dataset.next || '/' })
        }));
        location.assign(done.redirect || '/');
    }

    document.addEventListener('DOMContentLoaded', () => {
        if (!window.ethereum || typeof window.ethereum.request !== 'function') return;
        for (const button of document.querySelectorAll('[data-siwe]')) {
            button.hidden = false;
            button.addEventListener('click', async event => {
                event.preventDefault();
                button.disabled = true;
                try {
                    await signIn(button);
                } catch (err) {
                    // EIP-1193: 4001 is the person refusing in the wallet.
                    status(err && err.code === 4001 ? 'The request was refused in the wallet.' : String(err.message || err));
                } finally {
                    button.disabled = false;
                }
            });
        }
    });
})();
