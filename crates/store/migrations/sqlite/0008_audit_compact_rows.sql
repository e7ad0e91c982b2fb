-- Audit rows without what they need not carry. `seq BIGINT PRIMARY KEY` was not SQLite's rowid, so each
-- row had a hidden rowid and `seq` a unique index of its own; `id` (a UUIDv7 made by the server) had a
-- unique index nothing looks rows up by. Rebuilt with `seq INTEGER PRIMARY KEY` (the rowid itself) and no
-- index on `id`: about 70 bytes less per event (measured: 594 -> 520 bytes on 327k events). Same columns,
-- same values, same order: the hash chain is unchanged.
CREATE TABLE audit_events_compact (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL,
    at_ms      BIGINT NOT NULL,
    account_id TEXT,
    actor      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    target     TEXT,
    outcome    TEXT NOT NULL,
    latency_ms BIGINT,
    request_id TEXT,
    ip         TEXT,
    details    TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
INSERT INTO audit_events_compact (seq, id, at_ms, account_id, actor, kind, target, outcome, latency_ms, request_id, ip, details, prev_hash, hash)
    SELECT seq, id, at_ms, account_id, actor, kind, target, outcome, latency_ms, request_id, ip, details, prev_hash, hash
    FROM audit_events ORDER BY seq;
DROP TABLE audit_events;
ALTER TABLE audit_events_compact RENAME TO audit_events;
CREATE INDEX audit_events_account ON audit_events(account_id, seq);
CREATE INDEX audit_events_at ON audit_events(at_ms);
