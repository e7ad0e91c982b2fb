//! The credits ledger (`credit_balances`, `credit_holds`, `credit_transactions`). Every change runs
//! in one write transaction that first locks the account's balance row (PostgreSQL `FOR UPDATE`;
//! SQLite has a single writer), decides in Rust from what it read, and writes the balance and the
//! ledger row together — so the balance never goes negative and no two requests spend the same
//! credits, on one instance or many. The table's own `CHECK (balance >= 0)` is the last guard.

use async_trait::async_trait;
use bk_domain::credits::{CompletionUsage, CreditKind, CreditTransaction};
use bk_domain::ids::{AccountId, TenantId};
use bk_domain::ports::{CreditStore, MAX_CREDIT_PAGE, Reservation, Result, Settlement, StoreError};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::pool::Backend;
use crate::rows::Db;

type Tx = sqlx::Transaction<'static, sqlx::Any>;

const COLUMNS: &str =
    "id, account_id, created_at, kind, amount, balance_after, model, prompt_tokens, completion_tokens, note";

/// A ledger row about to be written.
struct Entry<'a> {
    kind: CreditKind,
    amount: i64,
    balance_after: i64,
    usage: Option<&'a CompletionUsage>,
    note: Option<&'a str>,
}

/// Opens the account's ledger if it has none (the signup grant, one row) and locks its balance
/// row. `None`: no such account.
async fn open_and_lock(
    tx: &mut Tx,
    backend: Backend,
    tenant: &TenantId,
    signup_grant: i64,
    now_ms: i64,
) -> Result<Option<i64>> {
    let grant = signup_grant.max(0);
    if open(tx, tenant, grant, now_ms).await?.is_none() {
        return Ok(None);
    }
    lock_balance(tx, backend, tenant).await
}

/// Locks the account's balance row if its ledger is open (settling and releasing never open one:
/// they do not know the signup grant, and a hold exists only once a reservation opened it).
async fn lock_balance(tx: &mut Tx, backend: Backend, tenant: &TenantId) -> Result<Option<i64>> {
    let sql = match backend {
        Backend::Sqlite => "SELECT balance FROM credit_balances WHERE account_id = $1",
        Backend::Postgres => "SELECT balance FROM credit_balances WHERE account_id = $1 FOR UPDATE",
    };
    let row = sqlx::query(sql).bind(tenant.as_str().to_owned()).fetch_optional(&mut **tx).await.db()?;
    row.map(|r| r.try_get("balance").db()).transpose()
}

/// Opens the ledger with the signup grant unless it is open. `None`: no such account.
async fn open(tx: &mut Tx, tenant: &TenantId, grant: i64, now_ms: i64) -> Result<Option<()>> {
    let exists = sqlx::query("SELECT 1 AS one FROM accounts WHERE id = $1")
        .bind(tenant.as_str().to_owned())
        .fetch_optional(&mut **tx)
        .await
        .db()?;
    if exists.is_none() {
        return Ok(None);
    }
    let opened = sqlx::query(
        "INSERT INTO credit_balances (account_id, balance, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (account_id) DO NOTHING",
    )
    .bind(tenant.as_str().to_owned())
    .bind(grant)
    .bind(now_ms)
    .execute(&mut **tx)
    .await
    .db()?;
    if opened.rows_affected() == 1 {
        let e = Entry { kind: CreditKind::SignupGrant, amount: grant, balance_after: grant, usage: None, note: None };
        append(tx, tenant, &e, now_ms).await?;
    }
    Ok(Some(()))
}

async fn set_balance(tx: &mut Tx, tenant: &TenantId, balance: i64, now_ms: i64) -> Result<()> {
    if balance < 0 {
        return Err(StoreError::Corrupt("a credit balance would go negative".into()));
    }
    sqlx::query("UPDATE credit_balances SET balance = $2, updated_at = $3 WHERE account_id = $1")
        .bind(tenant.as_str().to_owned())
        .bind(balance)
        .bind(now_ms)
        .execute(&mut **tx)
        .await
        .db()?;
    Ok(())
}

async fn append(tx: &mut Tx, tenant: &TenantId, e: &Entry<'_>, now_ms: i64) -> Result<CreditTransaction> {
    let t = CreditTransaction {
        id: CreditTransaction::new_id(),
        account_id: tenant.clone(),
        created_at_ms: now_ms,
        kind: e.kind,
        amount: e.amount,
        balance_after: e.balance_after,
        model: e.usage.map(|u| u.model.clone()),
        prompt_tokens: e.usage.map(|u| i64::try_from(u.prompt_tokens).unwrap_or(i64::MAX)),
        completion_tokens: e.usage.map(|u| i64::try_from(u.completion_tokens).unwrap_or(i64::MAX)),
        note: e.note.map(str::to_owned),
    };
    sqlx::query(
        "INSERT INTO credit_transactions (id, account_id, created_at, kind, amount, balance_after, model, \
         prompt_tokens, completion_tokens, note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(t.id.clone())
    .bind(tenant.as_str().to_owned())
    .bind(t.created_at_ms)
    .bind(t.kind.as_str())
    .bind(t.amount)
    .bind(t.balance_after)
    .bind(t.model.clone())
    .bind(t.prompt_tokens)
    .bind(t.completion_tokens)
    .bind(t.note.clone())
    .execute(&mut **tx)
    .await
    .db()?;
    Ok(t)
}

/// Deletes a hold of this account, returning its amount (`None`: no such hold, e.g. given back as stale).
async fn take_hold(tx: &mut Tx, tenant: &TenantId, hold_id: &str) -> Result<Option<i64>> {
    let row = sqlx::query("DELETE FROM credit_holds WHERE id = $1 AND account_id = $2 RETURNING amount")
        .bind(hold_id.to_owned())
        .bind(tenant.as_str().to_owned())
        .fetch_optional(&mut **tx)
        .await
        .db()?;
    row.map(|r| r.try_get::<i64, _>("amount").db()).transpose()
}

fn transaction_of(r: &AnyRow) -> Result<CreditTransaction> {
    let kind: String = r.try_get("kind").db()?;
    Ok(CreditTransaction {
        id: r.try_get("id").db()?,
        account_id: AccountId::from_string(r.try_get::<String, _>("account_id").db()?),
        created_at_ms: r.try_get("created_at").db()?,
        kind: CreditKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("unknown credit kind {kind:?}")))?,
        amount: r.try_get("amount").db()?,
        balance_after: r.try_get("balance_after").db()?,
        model: r.try_get("model").db()?,
        prompt_tokens: r.try_get("prompt_tokens").db()?,
        completion_tokens: r.try_get("completion_tokens").db()?,
        note: r.try_get("note").db()?,
    })
}

fn unknown_account() -> StoreError {
    StoreError::Corrupt("credits for an account that does not exist".into())
}

#[async_trait]
impl CreditStore for SqlStore {
    async fn credit_balance(&self, tenant: &TenantId, signup_grant: i64, now_ms: i64) -> Result<i64> {
        // Fast path: an opened ledger is read without a write transaction.
        let row = sqlx::query("SELECT balance FROM credit_balances WHERE account_id = $1")
            .bind(tenant.as_str().to_owned())
            .fetch_optional(&self.pool)
            .await
            .db()?;
        if let Some(r) = row {
            return r.try_get("balance").db();
        }
        let mut tx = self.begin_write().await?;
        let balance = open_and_lock(&mut tx, self.backend, tenant, signup_grant, now_ms).await?;
        tx.commit().await.db()?;
        balance.ok_or_else(unknown_account)
    }

    async fn reserve_credits(
        &self,
        tenant: &TenantId,
        amount: i64,
        signup_grant: i64,
        now_ms: i64,
        stale_before_ms: i64,
    ) -> Result<Reservation> {
        if amount < 0 {
            return Err(StoreError::Corrupt("a negative reservation".into()));
        }
        let mut tx = self.begin_write().await?;
        let Some(mut balance) = open_and_lock(&mut tx, self.backend, tenant, signup_grant, now_ms).await? else {
            tx.rollback().await.db()?;
            return Err(unknown_account());
        };
        // Holds of requests that died without settling go back first.
        let stale = sqlx::query("DELETE FROM credit_holds WHERE account_id = $1 AND created_at < $2 RETURNING amount")
            .bind(tenant.as_str().to_owned())
            .bind(stale_before_ms)
            .fetch_all(&mut *tx)
            .await
            .db()?;
        let mut returned = 0i64;
        for r in &stale {
            returned = returned.saturating_add(r.try_get::<i64, _>("amount").db()?);
        }
        if returned > 0 {
            tracing::warn!(account = %tenant, credits = returned, holds = stale.len(), "stale credit holds given back");
            balance = balance.saturating_add(returned);
        }
        if balance < amount {
            if returned > 0 {
                set_balance(&mut tx, tenant, balance, now_ms).await?;
            }
            tx.commit().await.db()?;
            return Ok(Reservation::Insufficient { balance });
        }
        let hold_id = CreditTransaction::new_hold_id();
        sqlx::query("INSERT INTO credit_holds (id, account_id, amount, created_at) VALUES ($1, $2, $3, $4)")
            .bind(hold_id.clone())
            .bind(tenant.as_str().to_owned())
            .bind(amount)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .db()?;
        let balance_after = balance - amount;
        set_balance(&mut tx, tenant, balance_after, now_ms).await?;
        tx.commit().await.db()?;
        Ok(Reservation::Held { hold_id, balance_after })
    }

    async fn settle_credits(
        &self,
        tenant: &TenantId,
        hold_id: &str,
        usage: &CompletionUsage,
        now_ms: i64,
    ) -> Result<Settlement> {
        let mut tx = self.begin_write().await?;
        let Some(balance) = lock_balance(&mut tx, self.backend, tenant).await? else {
            tx.rollback().await.db()?;
            return Err(StoreError::Corrupt("a settlement for an account whose ledger is not open".into()));
        };
        let held = take_hold(&mut tx, tenant, hold_id).await?.unwrap_or(0);
        let cost = usage.cost.max(0);
        let available = balance.saturating_add(held);
        let charged = cost.min(available);
        let after = available - charged;
        let note =
            (charged < cost).then(|| format!("{} credits of this completion could not be billed", cost - charged));
        if charged < cost {
            tracing::warn!(account = %tenant, cost, charged, "a completion cost more than was reserved and the balance covers");
        }
        set_balance(&mut tx, tenant, after, now_ms).await?;
        let e = Entry {
            kind: CreditKind::Completion,
            amount: -charged,
            balance_after: after,
            usage: Some(usage),
            note: note.as_deref(),
        };
        append(&mut tx, tenant, &e, now_ms).await?;
        tx.commit().await.db()?;
        Ok(Settlement { charged, balance: after })
    }

    async fn release_credits(&self, tenant: &TenantId, hold_id: &str, now_ms: i64) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        let Some(balance) = lock_balance(&mut tx, self.backend, tenant).await? else {
            // No ledger: no hold either.
            tx.rollback().await.db()?;
            return Ok(0);
        };
        let after = match take_hold(&mut tx, tenant, hold_id).await? {
            Some(held) => {
                let after = balance.saturating_add(held);
                set_balance(&mut tx, tenant, after, now_ms).await?;
                after
            }
            None => balance,
        };
        tx.commit().await.db()?;
        Ok(after)
    }

    async fn grant_credits(
        &self,
        tenant: &TenantId,
        amount: i64,
        note: Option<&str>,
        signup_grant: i64,
        now_ms: i64,
    ) -> Result<Option<CreditTransaction>> {
        if amount <= 0 {
            return Err(StoreError::Corrupt("a grant must be positive".into()));
        }
        let mut tx = self.begin_write().await?;
        let Some(balance) = open_and_lock(&mut tx, self.backend, tenant, signup_grant, now_ms).await? else {
            tx.rollback().await.db()?;
            return Ok(None);
        };
        let after = balance.checked_add(amount).ok_or_else(|| StoreError::Corrupt("credit balance overflow".into()))?;
        set_balance(&mut tx, tenant, after, now_ms).await?;
        let e = Entry { kind: CreditKind::Grant, amount, balance_after: after, usage: None, note };
        let t = append(&mut tx, tenant, &e, now_ms).await?;
        tx.commit().await.db()?;
        Ok(Some(t))
    }

    async fn credit_transactions(
        &self,
        tenant: &TenantId,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CreditTransaction>> {
        let limit = i64::from(limit.clamp(1, MAX_CREDIT_PAGE));
        let rows = match before {
            Some(b) => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM credit_transactions WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant.as_str().to_owned())
                    .bind(b.to_owned())
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
            }
            None => {
                let sql =
                    format!("SELECT {COLUMNS} FROM credit_transactions WHERE account_id = $1 ORDER BY id DESC LIMIT $2");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant.as_str().to_owned())
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .db()?;
        rows.iter().map(transaction_of).collect()
    }
}
