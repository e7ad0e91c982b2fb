//! Agents, their conversations and usage counters (`AgentStore`), tenant first on every query.

use async_trait::async_trait;
use bk_domain::agent::{Agent, BillingAccountType, ClientBilling, UsageLimits};
use bk_domain::ids::{AccountId, ClientId};
use bk_domain::ports::{AgentCreation, AgentStore, Result, StoreError};
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::clients::lock_account;
use crate::rows::{Db, db_error, is_unique_violation};

const COLUMNS: &str = "id, account_id, name, llm, personality, description, temperature, first_prompt, \
     enabled_built_in_tools, billing_account_type, billing_owner, created_by_client, usage_limits, is_default, \
     created_at, updated_at";

fn agent_from_row(r: &AnyRow) -> Result<Agent> {
    let tools: String = r.try_get("enabled_built_in_tools").db()?;
    let limits: String = r.try_get("usage_limits").db()?;
    let billing: String = r.try_get("billing_account_type").db()?;
    Ok(Agent {
        id: r.try_get("id").db()?,
        account_id: AccountId::from_string(r.try_get::<String, _>("account_id").db()?),
        name: r.try_get("name").db()?,
        llm: r.try_get("llm").db()?,
        personality: r.try_get("personality").db()?,
        description: r.try_get("description").db()?,
        temperature: r.try_get("temperature").db()?,
        first_prompt: r.try_get("first_prompt").db()?,
        enabled_built_in_tools: serde_json::from_str(&tools).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        billing_account_type: BillingAccountType::parse(&billing)
            .ok_or_else(|| StoreError::Corrupt(format!("billing account type {billing}")))?,
        billing_owner: r.try_get::<Option<String>, _>("billing_owner").db()?.map(AccountId::from_string),
        created_by_client: r.try_get::<Option<String>, _>("created_by_client").db()?.map(ClientId::from_string),
        usage_limits: serde_json::from_str::<UsageLimits>(&limits).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        is_default: r.try_get::<i64, _>("is_default").db()? != 0,
        created_at: r.try_get("created_at").db()?,
        updated_at: r.try_get("updated_at").db()?,
    })
}

fn json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

fn insert(a: &Agent) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(
        "INSERT INTO agents (id, account_id, name, llm, personality, description, temperature, first_prompt, \
         enabled_built_in_tools, billing_account_type, billing_owner, created_by_client, usage_limits, is_default, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(a.id.clone())
    .bind(a.account_id.as_str().to_owned())
    .bind(a.name.clone())
    .bind(a.llm.clone())
    .bind(a.personality.clone())
    .bind(a.description.clone())
    .bind(a.temperature)
    .bind(a.first_prompt.clone())
    .bind(json_text(&a.enabled_built_in_tools))
    .bind(a.billing_account_type.as_str())
    .bind(a.billing_owner.as_ref().map(|o| o.as_str().to_owned()))
    .bind(a.created_by_client.as_ref().map(|c| c.as_str().to_owned()))
    .bind(json_text(&a.usage_limits))
    .bind(i64::from(a.is_default))
    .bind(a.created_at)
    .bind(a.updated_at)
}

#[async_trait]
impl AgentStore for SqlStore {
    async fn create_agent(&self, agent: &Agent, max: u32) -> Result<AgentCreation> {
        let mut tx = self.begin_write().await?;
        // The account's row lock (PostgreSQL; SQLite: the write lock) makes the count hold until commit.
        lock_account(&mut tx, self.backend, &agent.account_id).await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agents WHERE account_id = $1")
            .bind(agent.account_id.as_str().to_owned())
            .fetch_one(&mut *tx)
            .await
            .db()?;
        if n >= i64::from(max) {
            tx.rollback().await.db()?;
            return Ok(AgentCreation::QuotaReached);
        }
        insert(agent).execute(&mut *tx).await.db()?;
        tx.commit().await.db()?;
        Ok(AgentCreation::Created)
    }

    async fn agents(&self, account: &AccountId) -> Result<Vec<Agent>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM agents WHERE account_id = $1 ORDER BY created_at, id"
        )))
        .bind(account.as_str().to_owned())
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(agent_from_row).collect()
    }

    async fn agent(&self, account: &AccountId, id: &str) -> Result<Option<Agent>> {
        let row =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM agents WHERE account_id = $1 AND id = $2")))
                .bind(account.as_str().to_owned())
                .bind(id.to_owned())
                .fetch_optional(&self.pool)
                .await
                .db()?;
        row.as_ref().map(agent_from_row).transpose()
    }

    async fn default_agent(&self, account: &AccountId, fresh: &Agent) -> Result<Agent> {
        let find = || {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM agents WHERE account_id = $1 AND is_default = 1"
            )))
            .bind(account.as_str().to_owned())
        };
        if let Some(r) = find().fetch_optional(&self.pool).await.db()? {
            return agent_from_row(&r);
        }
        // Two first uses race: the unique index keeps one; the loser reads the winner's.
        match insert(fresh).execute(&self.writer).await {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {}
            Err(e) => return Err(db_error(e)),
        }
        match find().fetch_optional(&self.writer).await.db()? {
            Some(r) => agent_from_row(&r),
            None => Err(StoreError::Corrupt("the default agent vanished".into())),
        }
    }

    async fn update_agent(&self, account: &AccountId, a: &Agent) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE agents SET name = $3, llm = $4, personality = $5, description = $6, temperature = $7, \
             first_prompt = $8, enabled_built_in_tools = $9, billing_account_type = $10, usage_limits = $11, \
             updated_at = $12, billing_owner = $13, created_by_client = $14 WHERE account_id = $1 AND id = $2",
        )
        .bind(account.as_str().to_owned())
        .bind(a.id.clone())
        .bind(a.name.clone())
        .bind(a.llm.clone())
        .bind(a.personality.clone())
        .bind(a.description.clone())
        .bind(a.temperature)
        .bind(a.first_prompt.clone())
        .bind(json_text(&a.enabled_built_in_tools))
        .bind(a.billing_account_type.as_str())
        .bind(json_text(&a.usage_limits))
        .bind(a.updated_at)
        .bind(a.billing_owner.as_ref().map(|o| o.as_str().to_owned()))
        .bind(a.created_by_client.as_ref().map(|c| c.as_str().to_owned()))
        .execute(&self.writer)
        .await
        .db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_agent(&self, account: &AccountId, id: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let found: Option<String> =
            sqlx::query_scalar("SELECT id FROM agents WHERE account_id = $1 AND id = $2 AND is_default = 0")
                .bind(account.as_str().to_owned())
                .bind(id.to_owned())
                .fetch_optional(&mut *tx)
                .await
                .db()?;
        if found.is_none() {
            tx.rollback().await.db()?;
            return Ok(false);
        }
        for sql in [
            "DELETE FROM agent_conversations WHERE agent_id = $1",
            "DELETE FROM agent_daily_messages WHERE agent_id = $1",
            "DELETE FROM agent_monthly_credits WHERE agent_id = $1",
            "DELETE FROM agents WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id.to_owned()).execute(&mut *tx).await.db()?;
        }
        tx.commit().await.db()?;
        Ok(true)
    }

    async fn count_agent_message(
        &self,
        account: &AccountId,
        agent_id: &str,
        user: &AccountId,
        day: i64,
        limit: Option<u32>,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        // The agent must be the account's (a counter never lands on another tenant's agent).
        let owned: Option<String> = sqlx::query_scalar("SELECT id FROM agents WHERE account_id = $1 AND id = $2")
            .bind(account.as_str().to_owned())
            .bind(agent_id.to_owned())
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        if owned.is_none() {
            tx.rollback().await.db()?;
            return Ok(false);
        }
        // The upsert takes the row's lock, so the count read after it is this message's own.
        sqlx::query(
            "INSERT INTO agent_daily_messages (agent_id, user_id, day, messages) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (agent_id, user_id, day) DO UPDATE SET messages = agent_daily_messages.messages + 1",
        )
        .bind(agent_id.to_owned())
        .bind(user.as_str().to_owned())
        .bind(day)
        .execute(&mut *tx)
        .await
        .db()?;
        let n: i64 = sqlx::query_scalar(
            "SELECT messages FROM agent_daily_messages WHERE agent_id = $1 AND user_id = $2 AND day = $3",
        )
        .bind(agent_id.to_owned())
        .bind(user.as_str().to_owned())
        .bind(day)
        .fetch_one(&mut *tx)
        .await
        .db()?;
        if limit.is_some_and(|l| n > i64::from(l)) {
            tx.rollback().await.db()?;
            return Ok(false);
        }
        tx.commit().await.db()?;
        Ok(true)
    }

    async fn add_agent_credits(&self, account: &AccountId, agent_id: &str, month: i64, credits: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO agent_monthly_credits (agent_id, month, credits) \
             SELECT id, $3, $4 FROM agents WHERE account_id = $1 AND id = $2 \
             ON CONFLICT (agent_id, month) DO UPDATE SET credits = agent_monthly_credits.credits + excluded.credits",
        )
        .bind(account.as_str().to_owned())
        .bind(agent_id.to_owned())
        .bind(month)
        .bind(credits)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(())
    }

    async fn agent_credits(&self, account: &AccountId, agent_id: &str, month: i64) -> Result<i64> {
        let n: Option<i64> = sqlx::query_scalar(
            "SELECT c.credits FROM agent_monthly_credits c JOIN agents a ON a.id = c.agent_id \
             WHERE a.account_id = $1 AND c.agent_id = $2 AND c.month = $3",
        )
        .bind(account.as_str().to_owned())
        .bind(agent_id.to_owned())
        .bind(month)
        .fetch_optional(&self.pool)
        .await
        .db()?;
        Ok(n.unwrap_or(0))
    }

    async fn conversation(
        &self,
        account: &AccountId,
        agent_id: &str,
        user: &AccountId,
        id: &str,
    ) -> Result<Option<Vec<Value>>> {
        let text: Option<String> = sqlx::query_scalar(
            "SELECT messages FROM agent_conversations WHERE account_id = $1 AND agent_id = $2 AND user_id = $3 AND id = $4",
        )
        .bind(account.as_str().to_owned())
        .bind(agent_id.to_owned())
        .bind(user.as_str().to_owned())
        .bind(id.to_owned())
        .fetch_optional(&self.pool)
        .await
        .db()?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(e.to_string()))).transpose()
    }

    async fn save_conversation(
        &self,
        account: &AccountId,
        agent_id: &str,
        user: &AccountId,
        id: &str,
        messages: &[Value],
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO agent_conversations (id, account_id, agent_id, user_id, messages, created_at, updated_at) \
             VALUES ($4, $1, $2, $3, $5, $6, $6) ON CONFLICT (account_id, agent_id, user_id, id) \
             DO UPDATE SET messages = excluded.messages, updated_at = excluded.updated_at",
        )
        .bind(account.as_str().to_owned())
        .bind(agent_id.to_owned())
        .bind(user.as_str().to_owned())
        .bind(id.to_owned())
        .bind(json_text(&messages))
        .bind(now)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(())
    }

    async fn client_billing(&self, client: &ClientId) -> Result<Option<ClientBilling>> {
        let row = sqlx::query(
            "SELECT c.billing_account_id, c.deleted_at AS client_deleted_at, a.id AS account_id, \
             a.disabled_at, a.deleted_at AS account_deleted_at \
             FROM clients c LEFT JOIN accounts a ON a.id = c.billing_account_id \
             WHERE c.id = $1 AND c.billing_account_id IS NOT NULL",
        )
        .bind(client.as_str().to_owned())
        .fetch_optional(&self.pool)
        .await
        .db()?;
        let Some(r) = row else { return Ok(None) };
        let gone = |col: &str| -> Result<bool> { Ok(r.try_get::<Option<i64>, _>(col).db()?.is_some()) };
        let usable = r.try_get::<Option<String>, _>("account_id").db()?.is_some()
            && !gone("client_deleted_at")?
            && !gone("disabled_at")?
            && !gone("account_deleted_at")?;
        let account = AccountId::from_string(r.try_get::<String, _>("billing_account_id").db()?);
        Ok(Some(ClientBilling { account, usable }))
    }
}
