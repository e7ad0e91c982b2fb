-- The audit log: append-only, hash-chained (each row's hash covers the previous row's hash).
CREATE TABLE audit_events (
    seq        BIGINT PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
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
CREATE INDEX audit_events_account ON audit_events(account_id, seq);
CREATE INDEX audit_events_at ON audit_events(at_ms);

-- The chain's head (last seq and hash) and its anchor (the last pruned row), one row.
CREATE TABLE audit_chain (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    head_seq    BIGINT NOT NULL,
    head_hash   TEXT NOT NULL,
    anchor_seq  BIGINT NOT NULL,
    anchor_hash TEXT NOT NULL
);
INSERT INTO audit_chain (id, head_seq, head_hash, anchor_seq, anchor_hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0, '0000000000000000000000000000000000000000000000000000000000000000');
