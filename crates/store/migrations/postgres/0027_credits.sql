-- Credits (issue 20): a balance per account that never goes negative, the holds of completions in
-- flight (reserved before the upstream is called, settled after), and the append-only ledger.
CREATE TABLE credit_balances (
    account_id TEXT PRIMARY KEY REFERENCES accounts(id),
    balance    BIGINT NOT NULL CHECK (balance >= 0),
    updated_at BIGINT NOT NULL
);

CREATE TABLE credit_holds (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    amount     BIGINT NOT NULL CHECK (amount >= 0),
    created_at BIGINT NOT NULL
);
CREATE INDEX credit_holds_account ON credit_holds(account_id, created_at);

CREATE TABLE credit_transactions (
    id                TEXT PRIMARY KEY,
    account_id        TEXT NOT NULL REFERENCES accounts(id),
    created_at        BIGINT NOT NULL,
    kind              TEXT NOT NULL,
    amount            BIGINT NOT NULL,
    balance_after     BIGINT NOT NULL CHECK (balance_after >= 0),
    model             TEXT,
    prompt_tokens     BIGINT,
    completion_tokens BIGINT,
    note              TEXT
);
CREATE INDEX credit_transactions_account ON credit_transactions(account_id, id);

-- Append-only: a row, once written, is never changed or removed.
CREATE FUNCTION credit_transactions_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'credit_transactions is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER credit_transactions_no_change BEFORE UPDATE OR DELETE ON credit_transactions
    FOR EACH ROW EXECUTE FUNCTION credit_transactions_append_only();
