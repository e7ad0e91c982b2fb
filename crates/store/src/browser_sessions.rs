//! Signed-in browser sessions, by the digest of the cookie's session id.

use async_trait::async_trait;
use bk_domain::UnixTime;
use bk_domain::browser_session::{BrowserSessionEnd, StoredBrowserSession};
use bk_domain::ids::{AccountId, TenantId};
use bk_domain::ports::{BrowserSessionStore, Result};
use sqlx::Row;

use crate::SqlStore;
use crate::rows::Db;

#[async_trait]
impl BrowserSessionStore for SqlStore {
    async fn create_browser_session(&self, s: &StoredBrowserSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO browser_sessions (id_hash, account_id, created_at, expires_at, ended_at, end_reason) \
             VALUES ($1, $2, $3, $4, NULL, NULL)",
        )
        .bind(s.id_hash.clone())
        .bind(s.account_id.as_str())
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(())
    }

    async fn browser_session(&self, id_hash: &[u8]) -> Result<Option<StoredBrowserSession>> {
        let row = sqlx::query(
            "SELECT id_hash, account_id, created_at, expires_at, ended_at FROM browser_sessions WHERE id_hash = $1",
        )
        .bind(id_hash.to_vec())
        .fetch_optional(&self.pool)
        .await
        .db()?;
        row.map(|r| {
            Ok(StoredBrowserSession {
                id_hash: r.try_get("id_hash").db()?,
                account_id: AccountId::from_string(r.try_get::<String, _>("account_id").db()?),
                created_at: r.try_get("created_at").db()?,
                expires_at: r.try_get("expires_at").db()?,
                ended_at: r.try_get("ended_at").db()?,
            })
        })
        .transpose()
    }

    async fn end_browser_session(&self, id_hash: &[u8], why: BrowserSessionEnd, now: UnixTime) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE browser_sessions SET ended_at = $1, end_reason = $2 WHERE id_hash = $3 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(why.as_str())
        .bind(id_hash.to_vec())
        .execute(&self.writer)
        .await
        .db()?;
        Ok(r.rows_affected() == 1)
    }

    async fn end_browser_sessions_of(&self, tenant: &TenantId, why: BrowserSessionEnd, now: UnixTime) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE browser_sessions SET ended_at = $1, end_reason = $2 \
             WHERE account_id = $3 AND ended_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(why.as_str())
        .bind(tenant.as_str())
        .execute(&self.writer)
        .await
        .db()?;
        Ok(r.rows_affected())
    }
}
