-- MCP (Streamable HTTP) sessions, shared by every instance: bound to the account that created them.
CREATE TABLE mcp_sessions (
    id               TEXT PRIMARY KEY,
    account_id       TEXT NOT NULL REFERENCES accounts(id),
    grant_id         TEXT NOT NULL,
    protocol_version TEXT NOT NULL,
    client_name      TEXT,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    ended_at         BIGINT
);
CREATE INDEX mcp_sessions_account ON mcp_sessions(account_id);
