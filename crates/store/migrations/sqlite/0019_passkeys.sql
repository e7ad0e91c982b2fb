-- Passkeys: the credential (public key, signature counter) as the WebAuthn library serialises it,
-- by credential id (unique across accounts).
CREATE TABLE passkeys (
    credential_id TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    credential    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);
CREATE INDEX passkeys_account ON passkeys(account_id);

-- WebAuthn ceremonies between their two requests: the challenge state, by the digest of the id
-- the browser holds; taken once; five minutes.
CREATE TABLE webauthn_ceremonies (
    id_hash       BLOB PRIMARY KEY,
    account_id    TEXT,
    purpose       TEXT NOT NULL,
    state         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX webauthn_ceremonies_expiry ON webauthn_ceremonies(expires_at);
