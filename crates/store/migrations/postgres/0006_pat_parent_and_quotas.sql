-- A PAT made with a token records that token's session and is revoked with it.
ALTER TABLE personal_access_tokens ADD COLUMN parent_session_id TEXT REFERENCES sessions(id);
CREATE INDEX personal_access_tokens_parent ON personal_access_tokens(parent_session_id);
-- Per-account quotas count an owner's clients; deleting a client revokes its sessions.
CREATE INDEX clients_owner ON clients(owner_account_id);
CREATE INDEX sessions_client ON sessions(client_id);
