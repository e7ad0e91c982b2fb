-- Signed-in browser sessions, so that signing out (or a password change) ends a session for every
-- copy of its cookie. Keyed by the SHA-256 of the session id the cookie carries, never the id itself.
CREATE TABLE browser_sessions (
    id_hash    BLOB PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at   BIGINT,
    end_reason TEXT
);
CREATE INDEX browser_sessions_account ON browser_sessions(account_id);
CREATE INDEX browser_sessions_expires ON browser_sessions(expires_at);
