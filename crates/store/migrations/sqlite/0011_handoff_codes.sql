-- White-label handoff codes: found by the SHA-256 of the code, single use, 30 seconds; bound to
-- the white-label client, the account and the app's return URL.
CREATE TABLE handoff_codes (
    code_hash     BLOB PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id),
    client_id     TEXT NOT NULL,
    intent        TEXT NOT NULL,
    redirect_uri  TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    used_at       BIGINT
);
CREATE INDEX handoff_codes_expiry ON handoff_codes(expires_at);
