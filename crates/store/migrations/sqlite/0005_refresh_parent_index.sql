-- Finding a refresh token's successor (reuse grace) and a session's chain.
CREATE INDEX refresh_tokens_parent ON refresh_tokens(parent_id);
