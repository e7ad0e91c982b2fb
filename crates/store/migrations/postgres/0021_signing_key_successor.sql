-- The active key a periodic rotation (keys.rotate_every_days) replaced. A key has at most one such
-- successor, so when several instances find the active key due at once, exactly one creates a key
-- (the others' insert violates the index and their rotation is abandoned). `keys rotate` leaves it
-- empty: an operator's rotation always happens.
ALTER TABLE signing_keys ADD COLUMN replaces TEXT;
CREATE UNIQUE INDEX signing_keys_one_successor ON signing_keys (replaces);
