//! Emailed links (address verification, password reset), by the digest of the token.

use async_trait::async_trait;
use bk_domain::UnixTime;
use bk_domain::email_token::{EmailChange, EmailPurpose, StoredEmailToken};
use bk_domain::ids::AccountId;
use bk_domain::ports::{EmailTokenStore, Result, StoreError};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::rows::{Db, db_error, is_unique_violation};

/// The columns read and written (a constant: the only text formatted into these statements).
const COLUMNS: &str = "token_hash, account_id, purpose, email, created_at, expires_at, used_at";

#[async_trait]
impl EmailTokenStore for SqlStore {
    async fn create_email_token(&self, t: &StoredEmailToken) -> Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO email_tokens ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )))
        .bind(t.token_hash.clone())
        .bind(t.account_id.as_str())
        .bind(t.purpose.as_str())
        .bind(&t.email)
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(t.used_at)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(())
    }

    async fn email_token(&self, token_hash: &[u8]) -> Result<Option<StoredEmailToken>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM email_tokens WHERE token_hash = $1")))
            .bind(token_hash.to_vec())
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.map(|r| token_from_row(&r)).transpose()
    }

    async fn use_email_token(
        &self,
        token_hash: &[u8],
        purpose: EmailPurpose,
        now: UnixTime,
    ) -> Result<Option<StoredEmailToken>> {
        // One statement: of two uses of the same link, only one finds it unused.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE email_tokens SET used_at = $1 \
             WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1 RETURNING {COLUMNS}"
        )))
        .bind(now)
        .bind(token_hash.to_vec())
        .bind(purpose.as_str())
        .fetch_optional(&self.writer)
        .await
        .db()?;
        row.map(|r| token_from_row(&r)).transpose()
    }

    async fn use_email_change(&self, token_hash: &[u8], now: UnixTime) -> Result<EmailChange> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE email_tokens SET used_at = $1 \
             WHERE token_hash = $2 AND purpose = 'change_email' AND used_at IS NULL AND expires_at > $1 \
             RETURNING {COLUMNS}"
        )))
        .bind(now)
        .bind(token_hash.to_vec())
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        let Some(t) = row.map(|r| token_from_row(&r)).transpose()? else { return Ok(EmailChange::Dead) };
        let old: Option<String> = sqlx::query_scalar("SELECT email FROM accounts WHERE id = $1")
            .bind(t.account_id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        let Some(old_email) = old else { return Ok(EmailChange::Dead) };
        let changed = sqlx::query("UPDATE accounts SET email = $1, email_verified_at = $2 WHERE id = $3")
            .bind(&t.email)
            .bind(now)
            .bind(t.account_id.as_str())
            .execute(&mut *tx)
            .await;
        match changed {
            Ok(_) => {
                tx.commit().await.db()?;
                Ok(EmailChange::Changed { account_id: t.account_id, old_email, new_email: t.email })
            }
            Err(e) if is_unique_violation(&e) => {
                // The link is spent all the same: roll back the address, keep the use.
                drop(tx);
                sqlx::query("UPDATE email_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL")
                    .bind(now)
                    .bind(token_hash.to_vec())
                    .execute(&self.writer)
                    .await
                    .db()?;
                Ok(EmailChange::Taken { account_id: t.account_id, new_email: t.email })
            }
            Err(e) => Err(db_error(e)),
        }
    }

    async fn void_email_tokens(&self, account: &AccountId, purpose: EmailPurpose, now: UnixTime) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE email_tokens SET used_at = $1 WHERE account_id = $2 AND purpose = $3 AND used_at IS NULL",
        )
        .bind(now)
        .bind(account.as_str())
        .bind(purpose.as_str())
        .execute(&self.writer)
        .await
        .db()?;
        Ok(r.rows_affected())
    }
}

fn token_from_row(r: &AnyRow) -> Result<StoredEmailToken> {
    let purpose: String = r.try_get("purpose").db()?;
    Ok(StoredEmailToken {
        token_hash: r.try_get("token_hash").db()?,
        account_id: AccountId::from_string(r.try_get::<String, _>("account_id").db()?),
        purpose: EmailPurpose::parse(&purpose)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown emailed-link purpose {purpose:?}")))?,
        email: r.try_get("email").db()?,
        created_at: r.try_get("created_at").db()?,
        expires_at: r.try_get("expires_at").db()?,
        used_at: r.try_get("used_at").db()?,
    })
}
