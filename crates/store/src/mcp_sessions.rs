//! MCP Streamable-HTTP sessions, bound to the account that created them.

use async_trait::async_trait;
use bk_domain::UnixTime;
use bk_domain::ids::{AccountId, SessionId, TenantId};
use bk_domain::mcp_session::{ClientFeatures, McpSession};
use bk_domain::ports::{McpSessionStore, Result};
use sqlx::Row;

use crate::SqlStore;
use crate::rows::Db;

#[async_trait]
impl McpSessionStore for SqlStore {
    async fn create_mcp_session(&self, s: &McpSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO mcp_sessions (id, account_id, grant_id, client_id, protocol_version, client_name, client_features, created_at, expires_at, ended_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL)",
        )
        .bind(&s.id)
        .bind(s.account_id.as_str())
        .bind(s.grant_id.as_str())
        .bind(&s.client_id)
        .bind(&s.protocol_version)
        .bind(s.client_name.clone())
        .bind(s.client_features.to_text())
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(&self.writer)
        .await.db()?;
        Ok(())
    }

    async fn mcp_session(&self, tenant: &TenantId, id: &str) -> Result<Option<McpSession>> {
        let row = sqlx::query(
            "SELECT id, account_id, grant_id, client_id, protocol_version, client_name, client_features, log_level, created_at, expires_at, ended_at \
             FROM mcp_sessions WHERE id = $1 AND account_id = $2",
        )
        .bind(id)
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await
        .db()?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(McpSession {
            id: r.try_get("id").db()?,
            account_id: AccountId::from_string(r.try_get::<String, _>("account_id").db()?),
            grant_id: SessionId::from_string(r.try_get::<String, _>("grant_id").db()?),
            client_id: r.try_get("client_id").db()?,
            protocol_version: r.try_get("protocol_version").db()?,
            client_name: r.try_get("client_name").db()?,
            client_features: ClientFeatures::from_text(&r.try_get::<String, _>("client_features").db()?),
            log_level: r.try_get("log_level").db()?,
            created_at: r.try_get("created_at").db()?,
            expires_at: r.try_get("expires_at").db()?,
            ended_at: r.try_get("ended_at").db()?,
        }))
    }

    async fn set_mcp_session_log_level(&self, tenant: &TenantId, id: &str, level: &str) -> Result<()> {
        sqlx::query("UPDATE mcp_sessions SET log_level = $1 WHERE id = $2 AND account_id = $3")
            .bind(level)
            .bind(id)
            .bind(tenant.as_str())
            .execute(&self.writer)
            .await
            .db()?;
        Ok(())
    }

    async fn end_mcp_session(&self, tenant: &TenantId, id: &str, now: UnixTime) -> Result<bool> {
        let r =
            sqlx::query("UPDATE mcp_sessions SET ended_at = $1 WHERE id = $2 AND account_id = $3 AND ended_at IS NULL")
                .bind(now)
                .bind(id)
                .bind(tenant.as_str())
                .execute(&self.writer)
                .await
                .db()?;
        Ok(r.rows_affected() == 1)
    }
}
