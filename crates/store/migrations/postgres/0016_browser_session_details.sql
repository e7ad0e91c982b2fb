-- What the account's security page shows of each signed-in browser: its User-Agent as first seen
-- (bounded, printable) and when a page last saw the session (updated at most every few minutes).
ALTER TABLE browser_sessions ADD COLUMN user_agent TEXT;
ALTER TABLE browser_sessions ADD COLUMN last_seen_at BIGINT;
