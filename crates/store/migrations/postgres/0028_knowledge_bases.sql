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

-- `search`: title (weight A) and content (weight B) as an English tsvector, kept by the database,
-- searched through the GIN index and ranked with ts_rank.
CREATE TABLE knowledge_documents (
    id                TEXT PRIMARY KEY,
    account_id        TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    knowledge_base_id TEXT NOT NULL REFERENCES knowledge_bases(id) ON DELETE CASCADE,
    title             TEXT NOT NULL,
    source_type       TEXT NOT NULL,
    url               TEXT,
    content           TEXT NOT NULL,
    size_bytes        BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    search            tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', title), 'A') || setweight(to_tsvector('english', content), 'B')
    ) STORED
);
CREATE INDEX knowledge_documents_base ON knowledge_documents(account_id, knowledge_base_id, created_at);
CREATE INDEX knowledge_documents_search ON knowledge_documents USING GIN (search);
