-- Dynamic registrations (RFC 7591/7592): where each came from and what it registered, so that an
-- identical registration from the same source reuses its client, and the digest of the registration
-- access token with which the client manages it (the token itself is never stored).
CREATE TABLE client_registrations (
    client_id   TEXT PRIMARY KEY REFERENCES clients(id),
    source      TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    metadata    TEXT NOT NULL,
    token_hash  BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX client_registrations_reuse ON client_registrations(source, fingerprint, created_at);
-- The purge of never-used dynamic clients walks them by age.
CREATE INDEX clients_origin_created ON clients(origin, created_at);
