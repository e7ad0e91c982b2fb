//! White-label handoff codes, by the digest of the code.

use async_trait::async_trait;
use bk_domain::UnixTime;
use bk_domain::handoff::{HandoffCode, HandoffIntent};
use bk_domain::ids::{AccountId, ClientId, TenantId};
use bk_domain::ports::{HandoffCodeStore, Result, StoreError};
use sqlx::Row;

use crate::SqlStore;
use crate::rows::Db;

#[async_trait]
impl HandoffCodeStore for SqlStore {
    async fn insert_handoff_code(&self, tenant: &TenantId, c: &HandoffCode) -> Result<()> {
        if &c.account_id != tenant {
            return Err(StoreError::Corrupt("a handoff code must belong to the tenant storing it".into()));
        }
        sqlx::query(
            "INSERT INTO handoff_codes (code_hash, account_id, client_id, intent, redirect_uri, created_at, expires_at, \
             used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
        )
        .bind(c.code_hash.clone())
        .bind(tenant.as_str())
        .bind(c.client_id.as_str())
        .bind(c.intent.as_str())
        .bind(&c.redirect_uri)
        .bind(c.created_at)
        .bind(c.expires_at)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(())
    }

    async fn take_handoff_code(&self, code_hash: &[u8], now: UnixTime) -> Result<Option<HandoffCode>> {
        // One statement: of two takes of the same code, only one finds it unused.
        let row = sqlx::query(
            "UPDATE handoff_codes SET used_at = $2 WHERE code_hash = $1 AND used_at IS NULL \
             RETURNING code_hash, account_id, client_id, intent, redirect_uri, created_at, expires_at",
        )
        .bind(code_hash.to_vec())
        .bind(now)
        .fetch_optional(&self.writer)
        .await
        .db()?;
        row.map(|r| {
            let intent: String = r.try_get("intent").db()?;
            Ok(HandoffCode {
                code_hash: r.try_get("code_hash").db()?,
                account_id: AccountId::from_string(r.try_get::<String, _>("account_id").db()?),
                client_id: ClientId::from_string(r.try_get::<String, _>("client_id").db()?),
                intent: HandoffIntent::parse(&intent)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown handoff intent {intent:?}")))?,
                redirect_uri: r.try_get("redirect_uri").db()?,
                created_at: r.try_get("created_at").db()?,
                expires_at: r.try_get("expires_at").db()?,
            })
        })
        .transpose()
    }
}
