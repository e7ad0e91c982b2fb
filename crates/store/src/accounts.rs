//! Accounts (tenants).

use async_trait::async_trait;
use bk_domain::UnixTime;
use bk_domain::account::Account;
use bk_domain::ids::AccountId;
use bk_domain::ports::{AccountStore, Result, StoreError};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::rows::{Db, db_error, is_unique_violation};

#[async_trait]
impl AccountStore for SqlStore {
    async fn create_account(&self, a: &Account) -> Result<()> {
        let r = sqlx::query("INSERT INTO accounts (id, email, password_hash, created_at, email_verified_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(a.id.as_str())
            .bind(&a.email)
            .bind(a.password_hash.clone())
            .bind(a.created_at)
            .bind(a.email_verified_at)
            .execute(&self.writer)
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict("an account with this email")),
            Err(e) => Err(db_error(e)),
        }
    }

    async fn account_by_email(&self, email: &str) -> Result<Option<Account>> {
        let row = sqlx::query(
            "SELECT id, email, password_hash, created_at, email_verified_at FROM accounts WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await
        .db()?;
        row.map(|r| account_from_row(&r)).transpose()
    }

    async fn account(&self, id: &AccountId) -> Result<Option<Account>> {
        let row =
            sqlx::query("SELECT id, email, password_hash, created_at, email_verified_at FROM accounts WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .db()?;
        row.map(|r| account_from_row(&r)).transpose()
    }

    async fn set_password(&self, id: &AccountId, password_hash: &str) -> Result<bool> {
        let r = sqlx::query("UPDATE accounts SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(id.as_str())
            .execute(&self.writer)
            .await
            .db()?;
        Ok(r.rows_affected() == 1)
    }

    async fn mark_email_verified(&self, id: &AccountId, email: &str, now: UnixTime) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE accounts SET email_verified_at = $1 WHERE id = $2 AND email = $3 AND email_verified_at IS NULL",
        )
        .bind(now)
        .bind(id.as_str())
        .bind(email)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(r.rows_affected() == 1)
    }
}

fn account_from_row(r: &AnyRow) -> Result<Account> {
    Ok(Account {
        id: AccountId::from_string(r.try_get::<String, _>("id").db()?),
        email: r.try_get("email").db()?,
        password_hash: r.try_get("password_hash").db()?,
        created_at: r.try_get("created_at").db()?,
        email_verified_at: r.try_get("email_verified_at").db()?,
    })
}
