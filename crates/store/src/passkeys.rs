//! Passkeys, and WebAuthn ceremonies between their two requests.

use async_trait::async_trait;
use bk_domain::UnixTime;
use bk_domain::ids::AccountId;
use bk_domain::passkey::{CeremonyPurpose, StoredCeremony, StoredPasskey};
use bk_domain::ports::{PasskeyRemoval, PasskeyStore, Result, StoreError};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::clients::lock_account;
use crate::rows::{Db, db_error, is_unique_violation};

const PASSKEY_COLUMNS: &str = "credential_id, account_id, name, credential, created_at, last_used_at";

#[async_trait]
impl PasskeyStore for SqlStore {
    async fn add_passkey(&self, p: &StoredPasskey, max: i64) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        lock_account(&mut tx, self.backend, &p.account_id).await?;
        let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM passkeys WHERE account_id = $1")
            .bind(p.account_id.as_str())
            .fetch_one(&mut *tx)
            .await
            .db()?;
        if held >= max {
            tx.rollback().await.db()?;
            return Ok(false);
        }
        let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO passkeys ({PASSKEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        )))
        .bind(&p.credential_id)
        .bind(p.account_id.as_str())
        .bind(&p.name)
        .bind(&p.credential)
        .bind(p.created_at)
        .bind(p.last_used_at)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {
                tx.commit().await.db()?;
                Ok(true)
            }
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict("a passkey with this credential id")),
            Err(e) => Err(db_error(e)),
        }
    }

    async fn passkeys_of(&self, account: &AccountId) -> Result<Vec<StoredPasskey>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE account_id = $1 ORDER BY created_at, credential_id"
        )))
        .bind(account.as_str())
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter().map(passkey_from_row).collect()
    }

    async fn passkey(&self, credential_id: &str) -> Result<Option<StoredPasskey>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = $1"
        )))
        .bind(credential_id)
        .fetch_optional(&self.pool)
        .await
        .db()?;
        row.as_ref().map(passkey_from_row).transpose()
    }

    async fn passkey_used(
        &self,
        account: &AccountId,
        credential_id: &str,
        credential: &str,
        now: UnixTime,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE passkeys SET credential = $1, last_used_at = $2 WHERE account_id = $3 AND credential_id = $4",
        )
        .bind(credential)
        .bind(now)
        .bind(account.as_str())
        .bind(credential_id)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(r.rows_affected() == 1)
    }

    async fn delete_passkey(&self, account: &AccountId, credential_id: &str) -> Result<PasskeyRemoval> {
        let mut tx = self.begin_write().await?;
        // Two removals of an account's last two passkeys at once: the second sees the first's.
        lock_account(&mut tx, self.backend, account).await?;
        let id = account.as_str().to_owned();
        let r = sqlx::query("DELETE FROM passkeys WHERE account_id = $1 AND credential_id = $2")
            .bind(id.clone())
            .bind(credential_id)
            .execute(&mut *tx)
            .await
            .db()?;
        if r.rows_affected() != 1 {
            tx.rollback().await.db()?;
            return Ok(PasskeyRemoval::NotFound);
        }
        let password: Option<String> = sqlx::query_scalar("SELECT password_hash FROM accounts WHERE id = $1")
            .bind(id.clone())
            .fetch_optional(&mut *tx)
            .await
            .db()?
            .flatten();
        let others: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM passkeys WHERE account_id = $1) \
                  + (SELECT COUNT(*) FROM wallet_identities WHERE account_id = $1) \
                  + (SELECT COUNT(*) FROM idp_identities WHERE account_id = $1)",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .db()?;
        if password.is_none() && others == 0 {
            tx.rollback().await.db()?;
            return Ok(PasskeyRemoval::LastSignInMethod);
        }
        tx.commit().await.db()?;
        Ok(PasskeyRemoval::Removed)
    }

    async fn create_ceremony(&self, c: &StoredCeremony) -> Result<()> {
        sqlx::query(
            "INSERT INTO webauthn_ceremonies (id_hash, account_id, purpose, state, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(c.id_hash.clone())
        .bind(c.account_id.as_ref().map(|a| a.as_str().to_owned()))
        .bind(c.purpose.as_str())
        .bind(&c.state)
        .bind(c.created_at)
        .bind(c.expires_at)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(())
    }

    async fn take_ceremony(
        &self,
        id_hash: &[u8],
        purpose: CeremonyPurpose,
        now: UnixTime,
    ) -> Result<Option<StoredCeremony>> {
        // Deleted as it is read: of two answers to one challenge, one finds it.
        let row = sqlx::query(
            "DELETE FROM webauthn_ceremonies WHERE id_hash = $1 AND purpose = $2 AND expires_at > $3 \
             RETURNING id_hash, account_id, purpose, state, created_at, expires_at",
        )
        .bind(id_hash.to_vec())
        .bind(purpose.as_str())
        .bind(now)
        .fetch_optional(&self.writer)
        .await
        .db()?;
        row.map(|r| {
            let purpose: String = r.try_get("purpose").db()?;
            Ok(StoredCeremony {
                id_hash: r.try_get("id_hash").db()?,
                account_id: r.try_get::<Option<String>, _>("account_id").db()?.map(AccountId::from_string),
                purpose: CeremonyPurpose::parse(&purpose)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown ceremony purpose {purpose:?}")))?,
                state: r.try_get("state").db()?,
                created_at: r.try_get("created_at").db()?,
                expires_at: r.try_get("expires_at").db()?,
            })
        })
        .transpose()
    }
}

fn passkey_from_row(r: &AnyRow) -> Result<StoredPasskey> {
    Ok(StoredPasskey {
        credential_id: r.try_get("credential_id").db()?,
        account_id: AccountId::from_string(r.try_get::<String, _>("account_id").db()?),
        name: r.try_get("name").db()?,
        credential: r.try_get("credential").db()?,
        created_at: r.try_get("created_at").db()?,
        last_used_at: r.try_get("last_used_at").db()?,
    })
}
