-- Accounts (tenants) and how they sign in.
CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    created_at    BIGINT NOT NULL
);

-- OAuth clients (DCR and manual).
CREATE TABLE clients (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    client_type      TEXT NOT NULL,
    role             TEXT NOT NULL,
    origin           TEXT NOT NULL,
    redirect_uris    TEXT NOT NULL,
    allowed_scopes   TEXT NOT NULL,
    secret_hash      BYTEA,
    owner_account_id TEXT REFERENCES accounts(id),
    created_at       BIGINT NOT NULL
);

-- Sessions (grants): everything issued hangs off one.
CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL REFERENCES accounts(id),
    client_id      TEXT NOT NULL REFERENCES clients(id),
    scopes         TEXT NOT NULL,
    resource       TEXT NOT NULL,
    auth_time      BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    revoked_at     BIGINT,
    revoked_reason TEXT
);
CREATE INDEX sessions_account ON sessions(account_id);

CREATE TABLE authorization_codes (
    hash           BYTEA PRIMARY KEY,
    client_id      TEXT NOT NULL,
    account_id     TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    resource       TEXT NOT NULL,
    nonce          TEXT,
    auth_time      BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT,
    session_id     TEXT
);

CREATE TABLE refresh_tokens (
    id         TEXT PRIMARY KEY,
    hash       BYTEA NOT NULL UNIQUE,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    client_id  TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    parent_id  TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_session ON refresh_tokens(session_id);

-- Remembered consent per (account, client, scopes).
CREATE TABLE consents (
    account_id TEXT NOT NULL REFERENCES accounts(id),
    client_id  TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, client_id, scopes)
);

-- Signing keys; the private key is sealed under the master key.
CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    private_key  BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    retire_after BIGINT
);
