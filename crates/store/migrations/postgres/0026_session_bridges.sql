-- Bridge mode (reference 002): a company backend's scoped API token for one sign-in, sealed with the
-- vault envelope (account and row id as associated data). Held for the authorization code issued at
-- consent (code_hash), then for the session its redemption created (session_id, set in the
-- redemption's statement). An unredeemed code takes its row with it; a revoked session too (the
-- trigger below, so every way a session ends destroys its token in the same transaction).
CREATE TABLE session_bridges (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL,
    provider_id     TEXT NOT NULL,
    code_hash       BYTEA REFERENCES authorization_codes(hash) ON DELETE CASCADE,
    session_id      TEXT REFERENCES sessions(id) ON DELETE CASCADE,
    sealed          BYTEA NOT NULL,
    backend_user_id TEXT,
    reverify        BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX session_bridges_session ON session_bridges(session_id);
CREATE INDEX session_bridges_code ON session_bridges(code_hash);
CREATE FUNCTION session_bridges_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM session_bridges WHERE session_id = NEW.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER session_bridges_end AFTER UPDATE OF revoked_at ON sessions
FOR EACH ROW WHEN (NEW.revoked_at IS NOT NULL) EXECUTE FUNCTION session_bridges_end();
