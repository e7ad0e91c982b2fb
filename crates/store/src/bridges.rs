//! Bridge mode's sealed scoped tokens (`session_bridges`): held for a code, moved onto its session
//! by the redemption (`grants.rs`), deleted with an unredeemed code (foreign key) and with a
//! revoked session (trigger). Every statement filters on the tenant; only live sessions' rows are
//! read.

use async_trait::async_trait;
use bk_domain::UnixTime;
use bk_domain::bridge::SealedBridge;
use bk_domain::ids::{SessionId, TenantId};
use bk_domain::ports::{BridgeStore, Result};
use sqlx::Row;

use crate::SqlStore;
use crate::rows::Db;

#[async_trait]
impl BridgeStore for SqlStore {
    async fn hold_bridges(
        &self,
        tenant: &TenantId,
        code_hash: &[u8],
        bridges: &[SealedBridge],
        now: UnixTime,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for b in bridges {
            sqlx::query(
                "INSERT INTO session_bridges (id, account_id, provider_id, code_hash, session_id, sealed, \
                 backend_user_id, reverify, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, NULL, $5, $6, 0, $7, $7)",
            )
            .bind(b.id.clone())
            .bind(tenant.as_str().to_owned())
            .bind(b.provider_id.clone())
            .bind(code_hash.to_vec())
            .bind(b.sealed.clone())
            .bind(b.backend_user_id.clone())
            .bind(now)
            .execute(&mut *tx)
            .await
            .db()?;
        }
        tx.commit().await.db()?;
        Ok(())
    }

    async fn session_bridges(&self, tenant: &TenantId, session: &SessionId) -> Result<Vec<SealedBridge>> {
        // Read on the writer: a token replaced or marked a moment ago (perhaps on this request's
        // own refresh) is the one seen.
        let rows = sqlx::query(
            "SELECT b.id, b.provider_id, b.sealed, b.backend_user_id, b.reverify FROM session_bridges b \
             JOIN sessions s ON s.id = b.session_id \
             WHERE b.session_id = $1 AND b.account_id = $2 AND s.account_id = $2 AND s.revoked_at IS NULL \
             ORDER BY b.provider_id",
        )
        .bind(session.as_str().to_owned())
        .bind(tenant.as_str().to_owned())
        .fetch_all(&self.writer)
        .await
        .db()?;
        rows.iter()
            .map(|r| {
                Ok(SealedBridge {
                    id: r.try_get("id").db()?,
                    provider_id: r.try_get("provider_id").db()?,
                    sealed: r.try_get("sealed").db()?,
                    backend_user_id: r.try_get("backend_user_id").db()?,
                    reverify: r.try_get::<i64, _>("reverify").db()? != 0,
                })
            })
            .collect()
    }

    async fn mark_bridge_reverify(&self, tenant: &TenantId, id: &str) -> Result<bool> {
        let r = sqlx::query("UPDATE session_bridges SET reverify = 1 WHERE id = $1 AND account_id = $2")
            .bind(id.to_owned())
            .bind(tenant.as_str().to_owned())
            .execute(&self.writer)
            .await
            .db()?;
        Ok(r.rows_affected() == 1)
    }

    async fn replace_bridge(
        &self,
        tenant: &TenantId,
        id: &str,
        sealed: &[u8],
        backend_user_id: Option<&str>,
        now: UnixTime,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE session_bridges SET sealed = $1, backend_user_id = $2, reverify = 0, updated_at = $3 \
             WHERE id = $4 AND account_id = $5 AND session_id IS NOT NULL",
        )
        .bind(sealed.to_vec())
        .bind(backend_user_id.map(str::to_owned))
        .bind(now)
        .bind(id.to_owned())
        .bind(tenant.as_str().to_owned())
        .execute(&self.writer)
        .await
        .db()?;
        Ok(r.rows_affected() == 1)
    }
}
