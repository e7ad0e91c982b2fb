-- Upstream OpenID Connect sign-in: an (issuer, subject) pair of an operator-configured identity
-- provider is an identity of one account (an account may hold several). idp_id names the
-- configured provider it came through; email is what the provider said when it was linked (shown
-- on the account's security page, never used to find an account).
CREATE TABLE idp_identities (
    id            TEXT PRIMARY KEY,
    idp_id        TEXT NOT NULL,
    issuer        TEXT NOT NULL,
    subject       TEXT NOT NULL,
    account_id    TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    email         TEXT,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT,
    UNIQUE (issuer, subject)
);
CREATE INDEX idp_identities_account ON idp_identities(account_id);

-- Sign-ins under way at a provider, by the SHA-256 of their state value: bound to the browser
-- session that started them (by digest), spent once when the provider sends the browser back,
-- a few minutes' life. Nothing secret is kept: the PKCE verifier and the nonce are derived from
-- the state with a server key.
CREATE TABLE idp_login_states (
    state_hash    BLOB PRIMARY KEY,
    idp_id        TEXT NOT NULL,
    browser_hash  BLOB NOT NULL,
    next_path     TEXT NOT NULL,
    link_account  TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX idp_login_states_expiry ON idp_login_states(expires_at);
