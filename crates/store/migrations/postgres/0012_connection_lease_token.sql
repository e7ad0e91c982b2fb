-- The holder of a connection's refresh lease, by a random token: finishing or releasing a refresh
-- is a compare-and-set on it, so a holder whose lease ran out (and was taken by another instance)
-- cannot overwrite what the new holder stored. Set while a refresh is under way; a token still set
-- when the lease is next taken means the previous holder stopped before finishing.
ALTER TABLE connections ADD COLUMN refresh_lease_token TEXT;
