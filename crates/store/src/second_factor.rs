//! An account's second factor: the sealed TOTP secret with its last accepted step, and the
//! digests of its recovery codes.

use async_trait::async_trait;
use bk_domain::UnixTime;
use bk_domain::ids::AccountId;
use bk_domain::ports::{Result, SecondFactorStore, StoredTotp};
use sqlx::Row;

use crate::SqlStore;
use crate::rows::{Db, db_error, is_unique_violation};

#[async_trait]
impl SecondFactorStore for SqlStore {
    async fn totp(&self, account: &AccountId) -> Result<Option<StoredTotp>> {
        let row = sqlx::query(
            "SELECT account_id, secret_sealed, created_at, last_step FROM account_totp WHERE account_id = $1",
        )
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await
        .db()?;
        row.map(|r| {
            Ok(StoredTotp {
                account_id: AccountId::from_string(r.try_get::<String, _>("account_id").db()?),
                sealed_secret: r.try_get("secret_sealed").db()?,
                created_at: r.try_get("created_at").db()?,
                last_step: r.try_get("last_step").db()?,
            })
        })
        .transpose()
    }

    async fn enable_totp(&self, totp: &StoredTotp, recovery_code_hashes: &[Vec<u8>]) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO account_totp (account_id, secret_sealed, created_at, last_step) VALUES ($1, $2, $3, $4)",
        )
        .bind(totp.account_id.as_str())
        .bind(totp.sealed_secret.clone())
        .bind(totp.created_at)
        .bind(totp.last_step)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Ok(false),
            Err(e) => return Err(db_error(e)),
        }
        sqlx::query("DELETE FROM recovery_codes WHERE account_id = $1")
            .bind(totp.account_id.as_str())
            .execute(&mut *tx)
            .await
            .db()?;
        for hash in recovery_code_hashes {
            sqlx::query("INSERT INTO recovery_codes (account_id, code_hash, used_at) VALUES ($1, $2, NULL)")
                .bind(totp.account_id.as_str())
                .bind(hash.clone())
                .execute(&mut *tx)
                .await
                .db()?;
        }
        tx.commit().await.db()?;
        Ok(true)
    }

    async fn use_totp_step(&self, account: &AccountId, step: i64) -> Result<bool> {
        let r = sqlx::query("UPDATE account_totp SET last_step = $2 WHERE account_id = $1 AND last_step < $2")
            .bind(account.as_str())
            .bind(step)
            .execute(&self.writer)
            .await
            .db()?;
        Ok(r.rows_affected() == 1)
    }

    async fn use_recovery_code(&self, account: &AccountId, code_hash: &[u8], now: UnixTime) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE recovery_codes SET used_at = $3 WHERE account_id = $1 AND code_hash = $2 AND used_at IS NULL",
        )
        .bind(account.as_str())
        .bind(code_hash.to_vec())
        .bind(now)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(r.rows_affected() == 1)
    }

    async fn recovery_codes_left(&self, account: &AccountId) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM recovery_codes WHERE account_id = $1 AND used_at IS NULL")
            .bind(account.as_str())
            .fetch_one(&self.pool)
            .await
            .db()?;
        row.try_get("n").db()
    }

    async fn disable_totp(&self, account: &AccountId) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM recovery_codes WHERE account_id = $1")
            .bind(account.as_str())
            .execute(&mut *tx)
            .await
            .db()?;
        let r = sqlx::query("DELETE FROM account_totp WHERE account_id = $1")
            .bind(account.as_str())
            .execute(&mut *tx)
            .await
            .db()?;
        tx.commit().await.db()?;
        Ok(r.rows_affected() == 1)
    }
}
