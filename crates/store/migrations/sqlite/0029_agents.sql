-- Agents (issue 20): account-owned assistants, their conversations and usage counters.
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    llm TEXT NOT NULL,
    personality TEXT,
    description TEXT,
    temperature DOUBLE PRECISION,
    first_prompt TEXT,
    enabled_built_in_tools TEXT NOT NULL,
    billing_account_type TEXT NOT NULL,
    billing_owner TEXT,
    created_by_client TEXT,
    usage_limits TEXT NOT NULL,
    is_default INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX agents_account ON agents(account_id, created_at);
-- One default agent per account, however many first uses race.
CREATE UNIQUE INDEX agents_one_default ON agents(account_id) WHERE is_default = 1;
CREATE TABLE agent_conversations (
    id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    messages TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, agent_id, user_id, id)
);
CREATE TABLE agent_daily_messages (
    agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    messages BIGINT NOT NULL,
    PRIMARY KEY (agent_id, user_id, day)
);
CREATE TABLE agent_monthly_credits (
    agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    month BIGINT NOT NULL,
    credits BIGINT NOT NULL,
    PRIMARY KEY (agent_id, month)
);
