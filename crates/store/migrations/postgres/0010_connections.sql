-- Connections to upstream providers. The credential (access and refresh tokens, or an API key) is
-- sealed with AES-256-GCM under the master key, bound to (account_id, id) as associated data, so a
-- ciphertext copied to another row or tenant does not decrypt; deleting the row erases it.
CREATE TABLE connections (
    id               TEXT PRIMARY KEY,
    account_id       TEXT NOT NULL REFERENCES accounts(id),
    provider_id      TEXT NOT NULL,
    provider_user_id TEXT,
    scopes           TEXT NOT NULL,
    status           TEXT NOT NULL,
    expires_at       BIGINT,
    can_refresh      BIGINT NOT NULL,
    metadata         TEXT NOT NULL,
    last_error       TEXT,
    credential       BYTEA NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    -- Refresh, exactly once: the instance holding this lease (until this time) refreshes; the
    -- others wait for its result. A failure that may pass is not retried before the cool-down.
    refresh_lease_until  BIGINT,
    refresh_failed_at    BIGINT,
    -- Bumped by every refresh outcome: a waiter that sees it move knows the refresh it waited for is done.
    refresh_generation   BIGINT NOT NULL DEFAULT 0
);
-- Every query is one tenant's; the list is sorted by creation by default.
CREATE INDEX connections_account_created ON connections(account_id, created_at);

-- Connect flows under way (initiate → the provider → callback), found by the SHA-256 of their
-- random state, single use, ten minutes; bound to the account, client and return URL.
CREATE TABLE connection_flows (
    state_hash    BYTEA PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id),
    client_id     TEXT,
    provider_id   TEXT NOT NULL,
    redirect_url  TEXT NOT NULL,
    code_verifier TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    used_at       BIGINT
);
CREATE INDEX connection_flows_expiry ON connection_flows(expires_at);
