-- Upstream API keys of configured LLM models set by an operator (issue 20), sealed under the master key
-- with the model id as associated data. One row per model; no row: the configuration's key applies.
CREATE TABLE llm_api_keys (
    model_id TEXT PRIMARY KEY,
    sealed BLOB NOT NULL,
    updated_at BIGINT NOT NULL
);
