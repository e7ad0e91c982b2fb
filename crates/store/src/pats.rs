//! Personal access tokens (each owns a session of its own, and dies with the session of the token that
//! created it) and operator tokens, hashed at rest.

use async_trait::async_trait;
use bk_domain::UnixTime;
use bk_domain::grant::{Grant, RevocationReason};
use bk_domain::ids::{AccountId, SessionId, TenantId};
use bk_domain::ports::{OperatorTokenStore, PatCreation, PatStore, Result};
use bk_domain::token::{OperatorToken, PersonalAccessToken};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::clients::lock_account;
use crate::grants::{PatsCreatedBy, revoke_created_pats, revoke_session_query};
use crate::pool::Backend;
use crate::rows::{Db, GRANT_COLUMNS, grant_from_row};

const PAT_COLUMNS: &str = "p.id AS p_id, p.account_id AS p_account_id, p.session_id AS p_session_id, \
     p.parent_session_id AS p_parent_session_id, p.name AS p_name, \
     p.hash AS p_hash, p.created_at AS p_created_at, p.expires_at AS p_expires_at, p.revoked_at AS p_revoked_at";

fn pat_from_row(r: &AnyRow) -> Result<PersonalAccessToken> {
    Ok(PersonalAccessToken {
        id: r.try_get("p_id").db()?,
        account_id: AccountId::from_string(r.try_get::<String, _>("p_account_id").db()?),
        session_id: SessionId::from_string(r.try_get::<String, _>("p_session_id").db()?),
        parent_session_id: r.try_get::<Option<String>, _>("p_parent_session_id").db()?.map(SessionId::from_string),
        name: r.try_get("p_name").db()?,
        hash: r.try_get("p_hash").db()?,
        created_at: r.try_get("p_created_at").db()?,
        expires_at: r.try_get("p_expires_at").db()?,
        revoked_at: r.try_get("p_revoked_at").db()?,
    })
}

#[async_trait]
impl PatStore for SqlStore {
    async fn create_pat(&self, pat: &PersonalAccessToken, grant: &Grant, max_live: u32) -> Result<PatCreation> {
        let mut tx = self.begin_write().await?;
        // SQLite: BEGIN IMMEDIATE serialises writers. PostgreSQL: the account's row lock makes the count
        // below hold until commit, and the parent session's row lock makes a concurrent revocation of it
        // wait for this insert (and then revoke the new PAT too) or be seen here.
        lock_account(&mut tx, self.backend, &pat.account_id).await?;
        if let Some(parent) = &pat.parent_session_id {
            let lock = if self.backend == Backend::Postgres { " FOR UPDATE" } else { "" };
            let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT revoked_at FROM sessions WHERE id = $1{lock}")))
                .bind(parent.as_str().to_owned())
                .fetch_optional(&mut *tx)
                .await
                .db()?;
            let live = match row {
                Some(r) => r.try_get::<Option<i64>, _>("revoked_at").db()?.is_none(),
                None => false,
            };
            if !live {
                tx.rollback().await.db()?;
                return Ok(PatCreation::ParentRevoked);
            }
        }
        let live: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM personal_access_tokens WHERE account_id = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(pat.account_id.as_str())
        .bind(pat.created_at)
        .fetch_one(&mut *tx)
        .await
        .db()?;
        if live >= i64::from(max_live) {
            tx.rollback().await.db()?;
            return Ok(PatCreation::QuotaReached);
        }
        sqlx::query(
            "INSERT INTO sessions (id, account_id, client_id, scopes, resource, auth_time, created_at, revoked_at, restrictions, kind) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9)",
        )
        .bind(grant.id.as_str())
        .bind(grant.account_id.as_str())
        .bind(grant.client_id.as_str())
        .bind(grant.scopes.to_string())
        .bind(&grant.resource)
        .bind(grant.auth_time)
        .bind(grant.created_at)
        .bind(grant.restrictions.to_json())
        .bind(grant.kind.as_str())
        .execute(&mut *tx)
        .await.db()?;
        sqlx::query(
            "INSERT INTO personal_access_tokens (id, account_id, session_id, parent_session_id, name, hash, created_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)",
        )
        .bind(&pat.id)
        .bind(pat.account_id.as_str())
        .bind(pat.session_id.as_str())
        .bind(pat.parent_session_id.as_ref().map(|s| s.as_str().to_owned()))
        .bind(&pat.name)
        .bind(&pat.hash)
        .bind(pat.created_at)
        .bind(pat.expires_at)
        .execute(&mut *tx)
        .await.db()?;
        tx.commit().await.db()?;
        Ok(PatCreation::Created)
    }

    async fn pat_by_hash(&self, hash: &[u8]) -> Result<Option<(PersonalAccessToken, Grant, String)>> {
        let sql = format!(
            "SELECT {PAT_COLUMNS}, {GRANT_COLUMNS}, a.email AS a_email FROM personal_access_tokens p \
             JOIN sessions s ON s.id = p.session_id JOIN accounts a ON a.id = p.account_id WHERE p.hash = $1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(hash).fetch_optional(&self.pool).await.db()?;
        row.map(|r| Ok((pat_from_row(&r)?, grant_from_row(&r)?, r.try_get("a_email").db()?))).transpose()
    }

    async fn list_pats(&self, tenant: &TenantId) -> Result<Vec<(PersonalAccessToken, Grant)>> {
        let sql = format!(
            "SELECT {PAT_COLUMNS}, {GRANT_COLUMNS} FROM personal_access_tokens p JOIN sessions s ON s.id = p.session_id \
             WHERE p.account_id = $1 AND p.revoked_at IS NULL ORDER BY p.created_at DESC, p.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant.as_str()).fetch_all(&self.pool).await.db()?;
        rows.iter().map(|r| Ok((pat_from_row(r)?, grant_from_row(r)?))).collect()
    }

    async fn revoke_pat(&self, tenant: &TenantId, id: &str, now: UnixTime) -> Result<Option<SessionId>> {
        // The token and the session it owns are revoked together or not at all.
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE personal_access_tokens SET revoked_at = $1 WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL \
             RETURNING session_id",
        )
        .bind(now)
        .bind(id)
        .bind(tenant.as_str())
        .fetch_optional(&mut *tx)
        .await.db()?;
        let Some(r) = row else { return Ok(None) };
        let sid = SessionId::from_string(r.try_get::<String, _>("session_id").db()?);
        revoke_session_query(&sid, RevocationReason::PatRevoked, now).execute(&mut *tx).await.db()?;
        revoke_created_pats(&mut tx, PatsCreatedBy::Session(&sid), now).await?;
        tx.commit().await.db()?;
        Ok(Some(sid))
    }
}

#[async_trait]
impl OperatorTokenStore for SqlStore {
    async fn create_operator_token(&self, t: &OperatorToken) -> Result<()> {
        sqlx::query(
            "INSERT INTO operator_tokens (id, name, hash, created_at, revoked_at) VALUES ($1, $2, $3, $4, NULL)",
        )
        .bind(&t.id)
        .bind(&t.name)
        .bind(&t.hash)
        .bind(t.created_at)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(())
    }

    async fn operator_token_by_hash(&self, hash: &[u8]) -> Result<Option<OperatorToken>> {
        let row = sqlx::query("SELECT id, name, hash, created_at, revoked_at FROM operator_tokens WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.map(|r| {
            Ok(OperatorToken {
                id: r.try_get("id").db()?,
                name: r.try_get("name").db()?,
                hash: r.try_get("hash").db()?,
                created_at: r.try_get("created_at").db()?,
                revoked_at: r.try_get("revoked_at").db()?,
            })
        })
        .transpose()
    }

    async fn revoke_operator_token(&self, id: &str, now: UnixTime) -> Result<bool> {
        let r = sqlx::query("UPDATE operator_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&self.writer)
            .await
            .db()?;
        Ok(r.rows_affected() == 1)
    }
}
