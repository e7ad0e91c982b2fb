//! Grants: sessions, the authorization codes that create them (one compare-and-set) and the
//! refresh tokens that rotate under them (compare-and-set; group-committed on SQLite).

use async_trait::async_trait;
use bk_domain::UnixTime;
use bk_domain::code::AuthorizationCode;
use bk_domain::grant::{Grant, RevocationReason};
use bk_domain::ids::{AccountId, ClientId, RefreshTokenId, SessionId, TenantId};
use bk_domain::pkce::CodeChallenge;
use bk_domain::ports::{CodeStore, RefreshTokenStore, Result, SessionStatus, SessionStore, SessionSummary, StoreError};
use bk_domain::refresh::RefreshToken;
use bk_domain::restrictions::Restrictions;
use sqlx::Row;
use sqlx::any::AnyRow;
use tokio::sync::oneshot;

use crate::SqlStore;
use crate::pool::Backend;
use crate::rotation::Rotation;
use crate::rows::{Db, GRANT_COLUMNS, grant_from_row, opt_json_col, restrictions_of, scopes_of};

#[async_trait]
impl SessionStore for SqlStore {
    async fn session(&self, tenant: &TenantId, id: &SessionId) -> Result<Option<Grant>> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM sessions s WHERE s.id = $1 AND s.account_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.as_str())
            .bind(tenant.as_str())
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.map(|r| grant_from_row(&r)).transpose()
    }

    async fn session_status(&self, id: &SessionId) -> Result<Option<SessionStatus>> {
        let row = sqlx::query(
            "SELECT s.account_id, a.email, a.disabled_at, s.client_id, s.revoked_at, s.restrictions, \
             c.allowed_providers, s.grant_type \
             FROM sessions s JOIN accounts a ON a.id = s.account_id LEFT JOIN clients c ON c.id = s.client_id \
             WHERE s.id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .db()?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(SessionStatus {
            account_id: AccountId::from_string(r.try_get::<String, _>("account_id").db()?),
            email: r.try_get("email").db()?,
            client_id: ClientId::from_string(r.try_get::<String, _>("client_id").db()?),
            // A disabled account's sessions are revoked when it is disabled; one that slipped in while
            // the disable committed is not active either.
            active: r.try_get::<Option<i64>, _>("revoked_at").db()?.is_none()
                && r.try_get::<Option<i64>, _>("disabled_at").db()?.is_none(),
            restrictions: restrictions_of(&r, "restrictions")?,
            client_providers: opt_json_col(&r, "allowed_providers")?,
            machine: r.try_get::<Option<String>, _>("grant_type").db()?.as_deref()
                == Some(crate::clients::MACHINE_GRANT),
        }))
    }

    async fn list_sessions(&self, tenant: &TenantId) -> Result<Vec<SessionSummary>> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS}, c.name AS client_name FROM sessions s JOIN clients c ON c.id = s.client_id \
             WHERE s.account_id = $1 AND s.revoked_at IS NULL ORDER BY s.created_at DESC, s.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant.as_str()).fetch_all(&self.pool).await.db()?;
        rows.iter()
            .map(|r| Ok(SessionSummary { grant: grant_from_row(r)?, client_name: r.try_get("client_name").db()? }))
            .collect()
    }

    async fn revoke_session(&self, id: &SessionId, reason: RevocationReason, now: UnixTime) -> Result<bool> {
        // The session and every PAT its tokens created go together, or not at all.
        let mut tx = self.begin_write().await?;
        let r = revoke_session_query(id, reason, now).execute(&mut *tx).await.db()?;
        revoke_created_pats(&mut tx, PatsCreatedBy::Session(id), now).await?;
        tx.commit().await.db()?;
        Ok(r.rows_affected() == 1)
    }

    async fn narrow_restrictions(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        expected: &Restrictions,
        narrowed: &Restrictions,
    ) -> Result<bool> {
        // Compare what is stored, parsed, with `expected`; then swap on the exact stored text, so a
        // concurrent change between the read and the write makes the update match nothing.
        let stored: Option<String> = sqlx::query_scalar(
            "SELECT restrictions FROM sessions WHERE id = $1 AND account_id = $2 AND revoked_at IS NULL",
        )
        .bind(id.as_str())
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await
        .db()?;
        let Some(stored) = stored else { return Ok(false) };
        if Restrictions::from_json(&stored).as_ref() != Some(expected) {
            return Ok(false);
        }
        let r = sqlx::query(
            "UPDATE sessions SET restrictions = $1 \
             WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL AND restrictions = $4",
        )
        .bind(narrowed.to_json())
        .bind(id.as_str())
        .bind(tenant.as_str())
        .bind(stored)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(r.rows_affected() == 1)
    }
}

/// Whose created PATs to revoke: those made with a token of one session, or of any session of a client.
pub(crate) enum PatsCreatedBy<'a> {
    Session(&'a SessionId),
    Client(&'a ClientId),
}

/// Revokes every PAT created with a token of the given session(s) — transitively, PATs created by
/// those PATs too — and each such PAT's own session, inside the caller's transaction.
///
/// Runs until a pass revokes nothing: on PostgreSQL a PAT committed while a pass waited on a row
/// lock (its creation locks the parent session's row) is invisible to that pass, and is caught by the next.
pub(crate) async fn revoke_created_pats(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    by: PatsCreatedBy<'_>,
    now: UnixTime,
) -> Result<()> {
    let (roots, root) = match by {
        PatsCreatedBy::Session(id) => ("$2", id.as_str()),
        PatsCreatedBy::Client(id) => ("SELECT id FROM sessions WHERE client_id = $2", id.as_str()),
    };
    let doomed = format!(
        "WITH RECURSIVE doomed(id) AS ( \
            SELECT p.session_id FROM personal_access_tokens p WHERE p.parent_session_id IN ({roots}) \
            UNION SELECT p.session_id FROM personal_access_tokens p JOIN doomed d ON p.parent_session_id = d.id)"
    );
    let pats = format!(
        "{doomed} UPDATE personal_access_tokens SET revoked_at = $1 \
         WHERE revoked_at IS NULL AND session_id IN (SELECT id FROM doomed)"
    );
    let sessions = format!(
        "{doomed} UPDATE sessions SET revoked_at = $1, revoked_reason = $3 \
         WHERE revoked_at IS NULL AND id IN (SELECT id FROM doomed)"
    );
    for _ in 0..64 {
        sqlx::query(sqlx::AssertSqlSafe(pats.clone())).bind(now).bind(root.to_owned()).execute(&mut **tx).await.db()?;
        let r = sqlx::query(sqlx::AssertSqlSafe(sessions.clone()))
            .bind(now)
            .bind(root.to_owned())
            .bind(RevocationReason::CreatorRevoked.as_str())
            .execute(&mut **tx)
            .await
            .db()?;
        if r.rows_affected() == 0 {
            return Ok(());
        }
    }
    Err(StoreError::Corrupt("revoking created PATs did not settle".into()))
}

/// Revokes one live session (a no-op for one already revoked: the first reason stays).
pub(crate) fn revoke_session_query(
    id: &SessionId,
    reason: RevocationReason,
    now: UnixTime,
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query("UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL")
        .bind(now)
        .bind(reason.as_str())
        .bind(id.as_str().to_owned())
}

#[async_trait]
impl CodeStore for SqlStore {
    async fn insert_code(&self, c: &AuthorizationCode) -> Result<()> {
        sqlx::query(
            "INSERT INTO authorization_codes (hash, client_id, account_id, redirect_uri, code_challenge, scopes, resource, nonce, auth_time, expires_at, used_at, session_id, restrictions) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL, $11)",
        )
        .bind(&c.hash)
        .bind(c.client_id.as_str())
        .bind(c.account_id.as_str())
        .bind(&c.redirect_uri)
        .bind(c.challenge.as_str())
        .bind(c.scopes.to_string())
        .bind(&c.resource)
        .bind(c.nonce.clone())
        .bind(c.auth_time)
        .bind(c.expires_at)
        .bind(c.restrictions.to_json())
        .execute(&self.writer)
        .await.db()?;
        Ok(())
    }

    async fn code(&self, hash: &[u8]) -> Result<Option<AuthorizationCode>> {
        let row = sqlx::query(
            "SELECT hash, client_id, account_id, redirect_uri, code_challenge, scopes, resource, nonce, auth_time, expires_at, used_at, session_id, restrictions \
             FROM authorization_codes WHERE hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await.db()?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(AuthorizationCode {
            hash: r.try_get("hash").db()?,
            client_id: ClientId::from_string(r.try_get::<String, _>("client_id").db()?),
            account_id: AccountId::from_string(r.try_get::<String, _>("account_id").db()?),
            redirect_uri: r.try_get("redirect_uri").db()?,
            challenge: CodeChallenge::from_stored(r.try_get("code_challenge").db()?),
            scopes: scopes_of(&r, "scopes")?,
            restrictions: restrictions_of(&r, "restrictions")?,
            resource: r.try_get("resource").db()?,
            nonce: r.try_get("nonce").db()?,
            auth_time: r.try_get("auth_time").db()?,
            expires_at: r.try_get("expires_at").db()?,
            used_at: r.try_get("used_at").db()?,
            session_id: r.try_get::<Option<String>, _>("session_id").db()?.map(SessionId::from_string),
        }))
    }

    async fn redeem_code(&self, hash: &[u8], grant: &Grant, refresh: &RefreshToken, now: UnixTime) -> Result<bool> {
        let sql = match self.backend {
            Backend::Sqlite => REDEEM_SQLITE,
            Backend::Postgres => REDEEM_POSTGRES,
        };
        let q = sqlx::query(sql)
            .bind(now)
            .bind(grant.id.as_str())
            .bind(hash)
            .bind(grant.account_id.as_str())
            .bind(grant.client_id.as_str())
            .bind(grant.scopes.to_string())
            .bind(&grant.resource)
            .bind(grant.auth_time)
            .bind(grant.created_at)
            .bind(refresh.id.as_str())
            .bind(&refresh.hash)
            .bind(refresh.scopes.to_string())
            .bind(refresh.expires_at)
            .bind(refresh.created_at)
            .bind(grant.restrictions.to_json())
            .bind(grant.kind.as_str())
            .bind(grant.dpop_jkt.as_deref());
        self.cas_write(q).await
    }
}

// A code redemption is one compare-and-set: mark the code used, create the session and its first
// refresh token — all or nothing. On SQLite it is one batch in one round trip to the database
// thread (each INSERT runs only if the statement before it changed a row); on PostgreSQL one statement.
// Bridge mode's tokens held for the code move onto the new session in the same step.
const REDEEM_SQLITE: &str = "BEGIN IMMEDIATE;
UPDATE authorization_codes SET used_at = $1, session_id = $2 WHERE hash = $3 AND used_at IS NULL;
INSERT INTO sessions (id, account_id, client_id, scopes, resource, auth_time, created_at, revoked_at, restrictions, kind, dpop_jkt)
    SELECT $2, $4, $5, $6, $7, $8, $9, NULL, $15, $16, $17 WHERE changes() = 1;
INSERT INTO refresh_tokens (id, hash, session_id, client_id, scopes, expires_at, used_at, parent_id, created_at)
    SELECT $10, $11, $2, $5, $12, $13, NULL, NULL, $14 WHERE changes() = 1;
SELECT changes() AS applied;
UPDATE session_bridges SET session_id = $2, code_hash = NULL
    WHERE code_hash = $3 AND EXISTS (SELECT 1 FROM sessions WHERE id = $2);
COMMIT;";

const REDEEM_POSTGRES: &str = "WITH c AS (
    UPDATE authorization_codes SET used_at = $1, session_id = $2 WHERE hash = $3 AND used_at IS NULL RETURNING 1
), s AS (
    INSERT INTO sessions (id, account_id, client_id, scopes, resource, auth_time, created_at, revoked_at, restrictions, kind, dpop_jkt)
    SELECT $2, $4, $5, $6, $7, $8, $9, NULL, $15, $16, $17 FROM c RETURNING id
), b AS (
    UPDATE session_bridges SET session_id = $2, code_hash = NULL WHERE code_hash = $3 AND EXISTS (SELECT 1 FROM s)
)
INSERT INTO refresh_tokens (id, hash, session_id, client_id, scopes, expires_at, used_at, parent_id, created_at)
SELECT $10, $11, s.id, $5, $12, $13, NULL, NULL, $14 FROM s";

const ROTATE_POSTGRES: &str = "WITH u AS (
    UPDATE refresh_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL RETURNING id
)
INSERT INTO refresh_tokens (id, hash, session_id, client_id, scopes, expires_at, used_at, parent_id, created_at)
SELECT $3, $4, $5, $6, $7, $8, NULL, u.id, $9 FROM u";

fn refresh_from_row(r: &AnyRow) -> Result<RefreshToken> {
    Ok(RefreshToken {
        id: RefreshTokenId::from_string(r.try_get::<String, _>("id").db()?),
        hash: r.try_get("hash").db()?,
        session_id: SessionId::from_string(r.try_get::<String, _>("session_id").db()?),
        client_id: ClientId::from_string(r.try_get::<String, _>("client_id").db()?),
        scopes: scopes_of(r, "scopes")?,
        expires_at: r.try_get("expires_at").db()?,
        used_at: r.try_get("used_at").db()?,
        parent_id: r.try_get::<Option<String>, _>("parent_id").db()?.map(RefreshTokenId::from_string),
        created_at: r.try_get("created_at").db()?,
    })
}

#[async_trait]
impl RefreshTokenStore for SqlStore {
    async fn refresh_token(&self, hash: &[u8]) -> Result<Option<(RefreshToken, Grant)>> {
        let sql = format!(
            "SELECT r.id, r.hash, r.session_id, r.client_id, r.scopes, r.expires_at, r.used_at, r.parent_id, r.created_at, {GRANT_COLUMNS} \
             FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.hash = $1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(hash).fetch_optional(&self.pool).await.db()?;
        let Some(r) = row else { return Ok(None) };
        let token = refresh_from_row(&r)?;
        Ok(Some((token, grant_from_row(&r)?)))
    }

    async fn refresh_successor(&self, parent: &RefreshTokenId) -> Result<Option<RefreshToken>> {
        let row = sqlx::query(
            "SELECT id, hash, session_id, client_id, scopes, expires_at, used_at, parent_id, created_at \
             FROM refresh_tokens WHERE parent_id = $1",
        )
        .bind(parent.as_str())
        .fetch_optional(&self.writer)
        .await
        .db()?;
        row.map(|r| refresh_from_row(&r)).transpose()
    }

    async fn bind_session_dpop(&self, session: &SessionId, jkt: &str) -> Result<Option<String>> {
        sqlx::query("UPDATE sessions SET dpop_jkt = $1 WHERE id = $2 AND dpop_jkt IS NULL")
            .bind(jkt)
            .bind(session.as_str())
            .execute(&self.writer)
            .await
            .db()?;
        let bound: Option<Option<String>> = sqlx::query_scalar("SELECT dpop_jkt FROM sessions WHERE id = $1")
            .bind(session.as_str())
            .fetch_optional(&self.writer)
            .await
            .db()?;
        Ok(bound.flatten())
    }

    async fn rotate_refresh_token(&self, old: &RefreshTokenId, new: &RefreshToken, now: UnixTime) -> Result<bool> {
        if new.parent_id.as_ref() != Some(old) {
            return Err(StoreError::Corrupt("a rotated refresh token must name its parent".into()));
        }
        if let Some(rotations) = &self.rotations {
            let (done, outcome) = oneshot::channel();
            let r = Rotation { old: old.clone(), new: new.clone(), now, done };
            rotations.send(r).await.map_err(|_| StoreError::Corrupt("the rotation committer stopped".into()))?;
            return outcome.await.map_err(|_| StoreError::Corrupt("the rotation committer stopped".into()))?;
        }
        let q = sqlx::query(ROTATE_POSTGRES)
            .bind(now)
            .bind(old.as_str())
            .bind(new.id.as_str())
            .bind(&new.hash)
            .bind(new.session_id.as_str())
            .bind(new.client_id.as_str())
            .bind(new.scopes.to_string())
            .bind(new.expires_at)
            .bind(new.created_at);
        self.cas_write(q).await
    }
}
