//! Signed-in browser sessions, by the digest of the cookie's session id.

use async_trait::async_trait;
use bk_domain::UnixTime;
use bk_domain::browser_session::{BrowserSessionEnd, MAX_LISTED_BROWSER_SESSIONS, StoredBrowserSession};
use bk_domain::ids::{AccountId, TenantId};
use bk_domain::ports::{BrowserSessionStore, Result};
use sqlx::Row;

use crate::SqlStore;
use crate::rows::Db;

const COLUMNS: &str = "id_hash, account_id, created_at, expires_at, ended_at, user_agent, last_seen_at";

fn session_from_row(r: &sqlx::any::AnyRow) -> Result<StoredBrowserSession> {
    Ok(StoredBrowserSession {
        id_hash: r.try_get("id_hash").db()?,
        account_id: AccountId::from_string(r.try_get::<String, _>("account_id").db()?),
        created_at: r.try_get("created_at").db()?,
        expires_at: r.try_get("expires_at").db()?,
        ended_at: r.try_get("ended_at").db()?,
        user_agent: r.try_get("user_agent").db()?,
        last_seen_at: r.try_get("last_seen_at").db()?,
    })
}

#[async_trait]
impl BrowserSessionStore for SqlStore {
    async fn create_browser_session(&self, s: &StoredBrowserSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO browser_sessions (id_hash, account_id, created_at, expires_at, ended_at, end_reason, \
             user_agent, last_seen_at) VALUES ($1, $2, $3, $4, NULL, NULL, $5, $6)",
        )
        .bind(s.id_hash.clone())
        .bind(s.account_id.as_str())
        .bind(s.created_at)
        .bind(s.expires_at)
        .bind(s.user_agent.clone())
        .bind(s.last_seen_at)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(())
    }

    async fn browser_session(&self, id_hash: &[u8]) -> Result<Option<StoredBrowserSession>> {
        let sql = format!("SELECT {COLUMNS} FROM browser_sessions WHERE id_hash = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id_hash.to_vec()).fetch_optional(&self.pool).await.db()?;
        row.as_ref().map(session_from_row).transpose()
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

    async fn list_browser_sessions_of(&self, tenant: &TenantId, now: UnixTime) -> Result<Vec<StoredBrowserSession>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM browser_sessions WHERE account_id = $1 AND ended_at IS NULL AND expires_at > $2 \
             ORDER BY created_at DESC, id_hash LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(now)
            .bind(MAX_LISTED_BROWSER_SESSIONS)
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.iter().map(session_from_row).collect()
    }

    async fn end_browser_session_of(
        &self,
        tenant: &TenantId,
        id_hash: &[u8],
        why: BrowserSessionEnd,
        now: UnixTime,
    ) -> Result<bool> {
        // The account is part of the match: a digest of another account's session changes nothing.
        let r = sqlx::query(
            "UPDATE browser_sessions SET ended_at = $1, end_reason = $2 \
             WHERE account_id = $3 AND id_hash = $4 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(why.as_str())
        .bind(tenant.as_str())
        .bind(id_hash.to_vec())
        .execute(&self.writer)
        .await
        .db()?;
        Ok(r.rows_affected() == 1)
    }

    async fn touch_browser_session(&self, id_hash: &[u8], user_agent: Option<&str>, now: UnixTime) -> Result<()> {
        sqlx::query(
            "UPDATE browser_sessions SET last_seen_at = $1, user_agent = COALESCE(user_agent, $2) \
             WHERE id_hash = $3 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(user_agent.map(str::to_owned))
        .bind(id_hash.to_vec())
        .execute(&self.writer)
        .await
        .db()?;
        Ok(())
    }
}
