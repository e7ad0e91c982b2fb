-- Sign-In with Ethereum: an Ethereum address is an identity of one account (an account may hold
-- several). Stored as 0x and 40 lower-case hexadecimal digits, so that uniqueness ignores the
-- EIP-55 checksum's capitals.
CREATE TABLE wallet_identities (
    address       TEXT PRIMARY KEY CHECK (length(address) = 42 AND address = lower(address)),
    account_id    TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);
CREATE INDEX wallet_identities_account ON wallet_identities(account_id);

-- The nonces handed out for sign-in messages, by the SHA-256 of their text: spent once, in the
-- transaction of what the sign-in does; a few minutes' life.
CREATE TABLE siwe_nonces (
    nonce_hash    BLOB PRIMARY KEY,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX siwe_nonces_expiry ON siwe_nonces(expires_at);
