//! Signing keys (sealed private keys), and the other values sealed under the master key outside
//! connections (client secret copies), for re-sealing when the master key rotates.

use async_trait::async_trait;
use bk_domain::UnixTime;
use bk_domain::ids::KeyId;
use bk_domain::ports::{
    MasterSealedKind, MasterSealedStore, MasterSealedValue, Result, SigningKeyStore, StoredSigningKey,
};
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

    async fn retire_signing_keys(&self, except: &KeyId, retire_after: UnixTime) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE signing_keys SET retire_after = $2 WHERE kid <> $1 AND (retire_after IS NULL OR retire_after > $2)",
        )
        .bind(except.as_str())
        .bind(retire_after)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(r.rows_affected())
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
        };
        let r = sqlx::query(sql).bind(id).bind(old.to_vec()).bind(new.to_vec()).execute(&self.writer).await.db()?;
        Ok(r.rows_affected() == 1)
    }
}
