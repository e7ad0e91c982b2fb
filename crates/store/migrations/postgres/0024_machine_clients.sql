-- Machine clients (issue 19): what a client may do besides the authorization-code flow. Its grant
-- types (a JSON array; NULL: authorization_code and refresh_token, as every client before), the
-- public keys it signs client assertions with (private_key_jwt: an inline JWK Set or a jwks_uri),
-- and the account an operator bound a client_credentials client to.
ALTER TABLE clients ADD COLUMN grant_types TEXT;
ALTER TABLE clients ADD COLUMN jwks TEXT;
ALTER TABLE clients ADD COLUMN jwks_uri TEXT;
ALTER TABLE clients ADD COLUMN bound_account_id TEXT;
-- Sessions opened by the client_credentials grant (a bound machine client's) say so, so that
-- changing the client's binding or grant types ends them.
ALTER TABLE sessions ADD COLUMN grant_type TEXT;
CREATE INDEX sessions_machine ON sessions(client_id, account_id) WHERE grant_type IS NOT NULL;
