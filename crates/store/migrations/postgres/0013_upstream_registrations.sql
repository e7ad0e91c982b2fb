-- The mcp connect kind: what discovery found for a flow under way (the upstream authorization
-- server, its endpoints, the client id Bridgekeeper is known by there, the resource), as JSON with
-- no secret in it. The PKCE verifier is no longer stored: it is derived from the state under a
-- server key, so the old column is left empty.
ALTER TABLE connection_flows ADD COLUMN upstream TEXT;

-- Bridgekeeper's own registrations (RFC 7591) at upstream authorization servers, one per issuer
-- and redirect URI, reused by every connect flow; a secret, when one was issued, is sealed under
-- the master key (re-sealed by keys rotate-master).
CREATE TABLE upstream_registrations (
    id                TEXT PRIMARY KEY,
    issuer            TEXT NOT NULL,
    redirect_uri      TEXT NOT NULL,
    client_id         TEXT NOT NULL,
    secret_sealed     BYTEA,
    token_auth        TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    secret_expires_at BIGINT
);
