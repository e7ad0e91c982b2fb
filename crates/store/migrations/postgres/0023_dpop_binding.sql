-- RFC 9449: a grant whose tokens were first asked for with a DPoP proof is bound to that key (the
-- RFC 7638 thumbprint): its refresh tokens are refused without a proof by the same key.
ALTER TABLE sessions ADD COLUMN dpop_jkt TEXT;
