-- White-label and third-party clients: domains, provider allow-list, branding, bcrypt + sealed secret.
ALTER TABLE clients ADD COLUMN domains TEXT NOT NULL DEFAULT '[]';
ALTER TABLE clients ADD COLUMN allowed_providers TEXT;
ALTER TABLE clients ADD COLUMN branding TEXT;
ALTER TABLE clients ADD COLUMN secret_bcrypt TEXT;
ALTER TABLE clients ADD COLUMN secret_sealed BYTEA;
ALTER TABLE clients ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN deleted_at BIGINT;

-- Restrictions carried by codes and sessions; what kind of grant a session is.
ALTER TABLE authorization_codes ADD COLUMN restrictions TEXT NOT NULL DEFAULT '{}';
ALTER TABLE sessions ADD COLUMN restrictions TEXT NOT NULL DEFAULT '{}';
ALTER TABLE sessions ADD COLUMN kind TEXT NOT NULL DEFAULT 'oauth';

-- The pseudo-client that personal access tokens' sessions belong to.
INSERT INTO clients (id, name, client_type, role, origin, redirect_uris, allowed_scopes, created_at, updated_at)
VALUES ('cli_personal_access_token', 'Personal access token', 'confidential', 'THIRD_PARTY', 'manual', '[]', '', 0, 0);

CREATE TABLE personal_access_tokens (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    session_id TEXT NOT NULL REFERENCES sessions(id),
    name       TEXT NOT NULL,
    hash       BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX personal_access_tokens_account ON personal_access_tokens(account_id);

-- Operator API tokens (bridgekeeper admin token create).
CREATE TABLE operator_tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    hash       BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
