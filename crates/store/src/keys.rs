//! Signing keys (sealed private keys), and the other values sealed under the master key outside
//! connections (client secret copies), for re-sealing when the master key rotates.

use async_trait::async_trait;
use bk_domain::UnixTime;
use bk_domain::ids::KeyId;
use bk_domain::ports::{
    MasterSealedKind, MasterSealedStore, MasterSealedValue, Result, SigningKeyRotation, SigningKeyStore,
    StoredSigningKey,
};
use sqlx::Row;

use crate::SqlStore;
use crate::rows::{Db, db_error, is_unique_violation};

const RETIRE_OTHERS: &str =
    "UPDATE signing_keys SET retire_after = $2 WHERE kid <> $1 AND (retire_after IS NULL OR retire_after > $2)";

#[async_trait]
impl SigningKeyStore for SqlStore {
    async fn signing_keys(&self, now: UnixTime) -> Result<Vec<StoredSigningKey>> {
        let rows = sqlx::query(
            "SELECT kid, alg, private_key, created_at, retire_after FROM signing_keys \
             WHERE retire_after IS NULL OR retire_after > $1 ORDER BY created_at DESC, kid DESC",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter()
            .map(|r| {
                Ok(StoredSigningKey {
                    kid: KeyId::from_string(r.try_get::<String, _>("kid").db()?),
                    alg: r.try_get("alg").db()?,
                    sealed_private_key: r.try_get("private_key").db()?,
                    created_at: r.try_get("created_at").db()?,
                    retire_after: r.try_get("retire_after").db()?,
                })
            })
            .collect()
    }

    async fn insert_signing_key(&self, k: &StoredSigningKey) -> Result<()> {
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_key, created_at, retire_after) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(k.kid.as_str())
        .bind(&k.alg)
        .bind(&k.sealed_private_key)
        .bind(k.created_at)
        .bind(k.retire_after)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(())
    }

    async fn retire_signing_keys(&self, except: &KeyId, retire_after: UnixTime) -> Result<u64> {
        let r = sqlx::query(RETIRE_OTHERS).bind(except.as_str()).bind(retire_after).execute(&self.writer).await.db()?;
        Ok(r.rows_affected())
    }

    async fn rotate_signing_key(
        &self,
        k: &StoredSigningKey,
        only_if_active_created_before: Option<UnixTime>,
        retire_after: UnixTime,
    ) -> Result<Option<SigningKeyRotation>> {
        // SQLite: BEGIN IMMEDIATE serialises writers, processes included. PostgreSQL: the unique index
        // on `replaces` does — of two transactions that read the same active key, the second's insert
        // waits for the first and then fails, whatever the isolation level.
        let mut tx = self.begin_write().await?;
        let active = sqlx::query("SELECT kid, created_at FROM signing_keys ORDER BY created_at DESC, kid DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        let active = match active {
            Some(r) => {
                Some((KeyId::from_string(r.try_get::<String, _>("kid").db()?), r.try_get::<i64, _>("created_at").db()?))
            }
            None => None,
        };
        if let (Some(before), Some((_, created_at))) = (only_if_active_created_before, &active)
            && *created_at >= before
        {
            tx.rollback().await.db()?;
            return Ok(None);
        }
        // Only a periodic rotation names its predecessor: an operator's `keys rotate` always happens.
        let replaces = only_if_active_created_before.and(active.as_ref().map(|(kid, _)| kid.as_str().to_owned()));
        let inserted = sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_key, created_at, retire_after, replaces) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(k.kid.as_str())
        .bind(&k.alg)
        .bind(&k.sealed_private_key)
        .bind(k.created_at)
        .bind(k.retire_after)
        .bind(replaces.clone())
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            // Another instance rotated this key away first.
            Err(e) if replaces.is_some() && is_unique_violation(&e) => {
                tx.rollback().await.db()?;
                return Ok(None);
            }
            Err(e) => return Err(db_error(e)),
        }
        let r = sqlx::query(RETIRE_OTHERS).bind(k.kid.as_str()).bind(retire_after).execute(&mut *tx).await.db()?;
        tx.commit().await.db()?;
        Ok(Some(SigningKeyRotation { replaced: active.map(|(kid, _)| kid), retired: r.rows_affected() }))
    }
}

#[async_trait]
impl MasterSealedStore for SqlStore {
    async fn master_sealed_values(&self) -> Result<Vec<MasterSealedValue>> {
        let mut out = Vec::new();
        let rows = sqlx::query("SELECT id, secret_sealed FROM clients WHERE secret_sealed IS NOT NULL ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .db()?;
        for r in &rows {
            out.push(MasterSealedValue {
                kind: MasterSealedKind::ClientSecret,
                id: r.try_get("id").db()?,
                sealed: r.try_get("secret_sealed").db()?,
            });
        }
        let rows =
            sqlx::query("SELECT kid, private_key FROM signing_keys ORDER BY kid").fetch_all(&self.pool).await.db()?;
        for r in &rows {
            out.push(MasterSealedValue {
                kind: MasterSealedKind::SigningKey,
                id: r.try_get("kid").db()?,
                sealed: r.try_get("private_key").db()?,
            });
        }
        let rows = sqlx::query(
            "SELECT id, secret_sealed FROM upstream_registrations WHERE secret_sealed IS NOT NULL ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .db()?;
        for r in &rows {
            out.push(MasterSealedValue {
                kind: MasterSealedKind::UpstreamClientSecret,
                id: r.try_get("id").db()?,
                sealed: r.try_get("secret_sealed").db()?,
            });
        }
        let rows = sqlx::query("SELECT account_id, secret_sealed FROM account_totp ORDER BY account_id")
            .fetch_all(&self.pool)
            .await
            .db()?;
        for r in &rows {
            out.push(MasterSealedValue {
                kind: MasterSealedKind::TotpSecret,
                id: r.try_get("account_id").db()?,
                sealed: r.try_get("secret_sealed").db()?,
            });
        }
        let rows = sqlx::query("SELECT id, account_id, sealed FROM session_bridges ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .db()?;
        for r in &rows {
            out.push(MasterSealedValue {
                kind: MasterSealedKind::SessionBridge,
                id: format!("{}:{}", r.try_get::<String, _>("account_id").db()?, r.try_get::<String, _>("id").db()?),
                sealed: r.try_get("sealed").db()?,
            });
        }
        let rows = sqlx::query("SELECT model_id, sealed FROM llm_api_keys ORDER BY model_id")
            .fetch_all(&self.pool)
            .await
            .db()?;
        for r in &rows {
            out.push(MasterSealedValue {
                kind: MasterSealedKind::LlmApiKey,
                id: r.try_get("model_id").db()?,
                sealed: r.try_get("sealed").db()?,
            });
        }
        Ok(out)
    }

    async fn reseal_value(&self, kind: MasterSealedKind, id: &str, old: &[u8], new: &[u8]) -> Result<bool> {
        let sql = match kind {
            MasterSealedKind::ClientSecret => {
                "UPDATE clients SET secret_sealed = $3 WHERE id = $1 AND secret_sealed = $2"
            }
            MasterSealedKind::SigningKey => {
                "UPDATE signing_keys SET private_key = $3 WHERE kid = $1 AND private_key = $2"
            }
            MasterSealedKind::UpstreamClientSecret => {
                "UPDATE upstream_registrations SET secret_sealed = $3 WHERE id = $1 AND secret_sealed = $2"
            }
            MasterSealedKind::TotpSecret => {
                "UPDATE account_totp SET secret_sealed = $3 WHERE account_id = $1 AND secret_sealed = $2"
            }
            MasterSealedKind::SessionBridge => "UPDATE session_bridges SET sealed = $3 WHERE id = $1 AND sealed = $2",
            MasterSealedKind::LlmApiKey => "UPDATE llm_api_keys SET sealed = $3 WHERE model_id = $1 AND sealed = $2",
        };
        // A bridge token's id is `{account}:{row}`: the row is the key.
        let id = match kind {
            MasterSealedKind::SessionBridge => id.split_once(':').map_or(id, |(_, row)| row),
            _ => id,
        };
        let r = sqlx::query(sql).bind(id).bind(old.to_vec()).bind(new.to_vec()).execute(&self.writer).await.db()?;
        Ok(r.rows_affected() == 1)
    }
}
