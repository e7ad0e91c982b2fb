//! Signing keys (sealed private keys).

use async_trait::async_trait;
use bk_domain::UnixTime;
use bk_domain::ids::KeyId;
use bk_domain::ports::{Result, SigningKeyStore, StoredSigningKey};
use sqlx::Row;

use crate::SqlStore;
use crate::rows::Db;

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
}
