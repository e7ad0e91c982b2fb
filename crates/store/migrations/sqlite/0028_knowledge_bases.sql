-- Knowledge bases and their documents (account-owned). A name is unique per account without case
-- (`name_key` is its lower-cased form); at most one default per account (the partial index).
CREATE TABLE knowledge_bases (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    name_key    TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    is_default  BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX knowledge_bases_account_name ON knowledge_bases(account_id, name_key);
CREATE UNIQUE INDEX knowledge_bases_one_default ON knowledge_bases(account_id) WHERE is_default = 1;

-- `seq` is the full-text index's row id: an INTEGER PRIMARY KEY, so VACUUM never renumbers it.
CREATE TABLE knowledge_documents (
    seq               INTEGER PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    account_id        TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    knowledge_base_id TEXT NOT NULL REFERENCES knowledge_bases(id) ON DELETE CASCADE,
    title             TEXT NOT NULL,
    source_type       TEXT NOT NULL,
    url               TEXT,
    content           TEXT NOT NULL,
    size_bytes        BIGINT NOT NULL,
    created_at        BIGINT NOT NULL
);
CREATE INDEX knowledge_documents_base ON knowledge_documents(account_id, knowledge_base_id, created_at);

-- FTS5 over title and content, an external-content index kept in step by triggers; ranked with
-- bm25(), English stemming (porter) over Unicode words.
CREATE VIRTUAL TABLE knowledge_documents_fts USING fts5(
    title, content, content='knowledge_documents', content_rowid='seq', tokenize='porter unicode61'
);
CREATE TRIGGER knowledge_documents_ai AFTER INSERT ON knowledge_documents BEGIN
    INSERT INTO knowledge_documents_fts(rowid, title, content) VALUES (new.seq, new.title, new.content);
END;
CREATE TRIGGER knowledge_documents_ad AFTER DELETE ON knowledge_documents BEGIN
    INSERT INTO knowledge_documents_fts(knowledge_documents_fts, rowid, title, content)
        VALUES ('delete', old.seq, old.title, old.content);
END;
CREATE TRIGGER knowledge_documents_au AFTER UPDATE ON knowledge_documents BEGIN
    INSERT INTO knowledge_documents_fts(knowledge_documents_fts, rowid, title, content)
        VALUES ('delete', old.seq, old.title, old.content);
    INSERT INTO knowledge_documents_fts(rowid, title, content) VALUES (new.seq, new.title, new.content);
END;
