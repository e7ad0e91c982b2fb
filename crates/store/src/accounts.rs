//! Accounts (tenants), and the operator's list, disable, enable and delete: each of the last three one
//! transaction that takes the account's row first.

use async_trait::async_trait;
use bk_domain::UnixTime;
use bk_domain::account::{
    Account, AccountEnabling, AccountErasure, AccountOverview, AccountPage, AccountQuery, AccountRevocation,
    AccountStatus, deleted_email,
};
use bk_domain::browser_session::BrowserSessionEnd;
use bk_domain::grant::GrantKind;
use bk_domain::ids::{AccountId, SessionId};
use bk_domain::ports::{AccountStore, Result, StoreError};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::pool::Backend;
use crate::rows::{Db, db_error, is_unique_violation};

const COLUMNS: &str = "a.id, a.email, a.password_hash, a.created_at, a.email_verified_at, a.disabled_at, a.deleted_at";

/// Why a disabled account's sessions were revoked, as the `sessions.revoked_reason` column keeps it
/// (a column only written, never read back as a [`bk_domain::grant::RevocationReason`], which has
/// no variant for it yet).
const ACCOUNT_DISABLED: &str = "account_disabled";

/// How a disabled account's browser sessions are recorded as ended: signed out (the variant that
/// exists; none names an operator's disable).
const BROWSER_END: BrowserSessionEnd = BrowserSessionEnd::SignedOut;

/// What an overview adds to the account's columns: live grants, live PATs at `$1`, connections.
const COUNTS: &str = "(SELECT COUNT(*) FROM sessions s WHERE s.account_id = a.id AND s.kind = $2 AND s.revoked_at IS NULL) AS live_grants, \
     (SELECT COUNT(*) FROM personal_access_tokens p WHERE p.account_id = a.id AND p.revoked_at IS NULL \
        AND (p.expires_at IS NULL OR p.expires_at > $1)) AS live_pats, \
     (SELECT COUNT(*) FROM connections c WHERE c.account_id = a.id) AS connections";

/// The list's filter, its parameters numbered `$e` (a LIKE pattern on the email, escape `!`, or
/// NULL) and `$s` (a status, or NULL).
fn filter(e: u8, s: u8) -> String {
    format!(
        "(${e} IS NULL OR a.email LIKE ${e} ESCAPE '!') AND (${s} IS NULL \
         OR (${s} = 'active' AND a.disabled_at IS NULL AND a.deleted_at IS NULL) \
         OR (${s} = 'disabled' AND a.disabled_at IS NOT NULL AND a.deleted_at IS NULL) \
         OR (${s} = 'deleted' AND a.deleted_at IS NOT NULL))"
    )
}

#[async_trait]
impl AccountStore for SqlStore {
    async fn create_account(&self, a: &Account) -> Result<()> {
        let r = sqlx::query(
            "INSERT INTO accounts (id, email, password_hash, created_at, email_verified_at, disabled_at, deleted_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(a.id.as_str())
        .bind(&a.email)
        .bind(a.password_hash.clone())
        .bind(a.created_at)
        .bind(a.email_verified_at)
        .bind(a.disabled_at)
        .bind(a.deleted_at)
        .execute(&self.writer)
        .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict("an account with this email")),
            Err(e) => Err(db_error(e)),
        }
    }

    async fn account_by_email(&self, email: &str) -> Result<Option<Account>> {
        let sql = format!("SELECT {COLUMNS} FROM accounts a WHERE a.email = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(email).fetch_optional(&self.pool).await.db()?;
        row.map(|r| account_from_row(&r)).transpose()
    }

    async fn account(&self, id: &AccountId) -> Result<Option<Account>> {
        let sql = format!("SELECT {COLUMNS} FROM accounts a WHERE a.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.as_str()).fetch_optional(&self.pool).await.db()?;
        row.map(|r| account_from_row(&r)).transpose()
    }

    async fn set_password(&self, id: &AccountId, password_hash: &str) -> Result<bool> {
        // A deleted account never gets a password back.
        let r = sqlx::query("UPDATE accounts SET password_hash = $1 WHERE id = $2 AND deleted_at IS NULL")
            .bind(password_hash)
            .bind(id.as_str())
            .execute(&self.writer)
            .await
            .db()?;
        Ok(r.rows_affected() == 1)
    }

    async fn mark_email_verified(&self, id: &AccountId, email: &str, now: UnixTime) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE accounts SET email_verified_at = $1 WHERE id = $2 AND email = $3 AND email_verified_at IS NULL",
        )
        .bind(now)
        .bind(id.as_str())
        .bind(email)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(r.rows_affected() == 1)
    }

    async fn list_accounts(&self, q: &AccountQuery, now: UnixTime) -> Result<AccountPage> {
        let pattern = q.email_contains.as_deref().map(like_pattern);
        let status = q.status.map(AccountStatus::as_str);
        let limit = i64::from(q.limit.max(1));
        let offset = i64::from(q.page.max(1) - 1) * limit;
        let total_sql = format!("SELECT COUNT(*) AS n FROM accounts a WHERE {}", filter(1, 2));
        let total: i64 = sqlx::query(sqlx::AssertSqlSafe(total_sql))
            .bind(pattern.clone())
            .bind(status)
            .fetch_one(&self.pool)
            .await
            .db()?
            .try_get("n")
            .db()?;
        let sql = format!(
            "SELECT {COLUMNS}, {COUNTS} FROM accounts a WHERE {} \
             ORDER BY a.created_at DESC, a.id DESC LIMIT $5 OFFSET $6",
            filter(3, 4)
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(GrantKind::OAuth.as_str())
            .bind(pattern)
            .bind(status)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await
            .db()?;
        let items = rows.iter().map(overview_from_row).collect::<Result<Vec<_>>>()?;
        Ok(AccountPage { items, total: total.max(0) as u64 })
    }

    async fn account_overview(&self, id: &AccountId, now: UnixTime) -> Result<Option<AccountOverview>> {
        let sql = format!("SELECT {COLUMNS}, {COUNTS} FROM accounts a WHERE a.id = $3");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(GrantKind::OAuth.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.as_ref().map(overview_from_row).transpose()
    }

    async fn disable_account(&self, id: &AccountId, now: UnixTime) -> Result<Option<AccountRevocation>> {
        let mut tx = self.begin_write().await?;
        if lock(&mut tx, self.backend, id).await?.is_none() {
            tx.rollback().await.db()?;
            return Ok(None);
        }
        let revoked = revoke_everything(&mut tx, id, now).await?;
        tx.commit().await.db()?;
        Ok(Some(revoked))
    }

    async fn enable_account(&self, id: &AccountId) -> Result<Option<AccountEnabling>> {
        let mut tx = self.begin_write().await?;
        let Some(state) = lock(&mut tx, self.backend, id).await? else {
            tx.rollback().await.db()?;
            return Ok(None);
        };
        let outcome = if state.deleted_at.is_some() {
            AccountEnabling::Deleted
        } else if state.disabled_at.is_none() {
            AccountEnabling::AlreadyActive
        } else {
            sqlx::query("UPDATE accounts SET disabled_at = NULL WHERE id = $1 AND deleted_at IS NULL")
                .bind(id.as_str().to_owned())
                .execute(&mut *tx)
                .await
                .db()?;
            AccountEnabling::Enabled
        };
        tx.commit().await.db()?;
        Ok(Some(outcome))
    }

    async fn delete_account(&self, id: &AccountId, now: UnixTime) -> Result<Option<AccountErasure>> {
        let mut tx = self.begin_write().await?;
        let Some(state) = lock(&mut tx, self.backend, id).await? else {
            tx.rollback().await.db()?;
            return Ok(None);
        };
        let revoked = revoke_everything(&mut tx, id, now).await?;
        let account = id.as_str().to_owned();
        let delete = |sql: &'static str| sqlx::query(sql).bind(account.clone());
        // Hashed credentials that can no longer be used (their sessions are revoked) go too.
        delete("DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE account_id = $1)")
            .execute(&mut *tx)
            .await
            .db()?;
        delete("DELETE FROM authorization_codes WHERE account_id = $1").execute(&mut *tx).await.db()?;
        let pats = delete("DELETE FROM personal_access_tokens WHERE account_id = $1").execute(&mut *tx).await.db()?;
        // The rows hold the sealed upstream credentials: deleting them erases the ciphertexts.
        let connections = delete("DELETE FROM connections WHERE account_id = $1").execute(&mut *tx).await.db()?;
        delete("DELETE FROM connection_flows WHERE account_id = $1").execute(&mut *tx).await.db()?;
        let email_links = delete("DELETE FROM email_tokens WHERE account_id = $1").execute(&mut *tx).await.db()?;
        let browser = delete("DELETE FROM browser_sessions WHERE account_id = $1").execute(&mut *tx).await.db()?;
        delete("DELETE FROM handoff_codes WHERE account_id = $1").execute(&mut *tx).await.db()?;
        delete("DELETE FROM mcp_sessions WHERE account_id = $1").execute(&mut *tx).await.db()?;
        delete("DELETE FROM consents WHERE account_id = $1").execute(&mut *tx).await.db()?;
        // Its knowledge bases and their documents (and so their full-text index entries).
        delete("DELETE FROM knowledge_documents WHERE account_id = $1").execute(&mut *tx).await.db()?;
        delete("DELETE FROM knowledge_bases WHERE account_id = $1").execute(&mut *tx).await.db()?;
        // Its audit rows stay (until retention prunes them), without its email: replaced by the
        // placeholder in their details and target, marked redacted (verification accepts their
        // changed content because the chain records the account's deletion).
        let email: Option<String> = sqlx::query_scalar("SELECT email FROM accounts WHERE id = $1")
            .bind(account.clone())
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        let audit_rows_redacted = match email.filter(|e| *e != deleted_email(id)) {
            Some(email) => redact_audit_rows(&mut tx, id, &email, &deleted_email(id), now).await?,
            None => 0,
        };
        // Its sign-in methods: the sealed TOTP secret, recovery codes, passkeys, ceremonies, and its
        // Ethereum addresses (free to sign up again, like its email).
        delete("DELETE FROM recovery_codes WHERE account_id = $1").execute(&mut *tx).await.db()?;
        delete("DELETE FROM account_totp WHERE account_id = $1").execute(&mut *tx).await.db()?;
        delete("DELETE FROM passkeys WHERE account_id = $1").execute(&mut *tx).await.db()?;
        delete("DELETE FROM webauthn_ceremonies WHERE account_id = $1").execute(&mut *tx).await.db()?;
        delete("DELETE FROM wallet_identities WHERE account_id = $1").execute(&mut *tx).await.db()?;
        delete("DELETE FROM idp_identities WHERE account_id = $1").execute(&mut *tx).await.db()?;
        // Its agents, their conversations and usage counters.
        for sql in [
            "DELETE FROM agent_conversations WHERE account_id = $1",
            "DELETE FROM agent_daily_messages WHERE agent_id IN (SELECT id FROM agents WHERE account_id = $1)",
            "DELETE FROM agent_monthly_credits WHERE agent_id IN (SELECT id FROM agents WHERE account_id = $1)",
            "DELETE FROM agents WHERE account_id = $1",
        ] {
            delete(sql).execute(&mut *tx).await.db()?;
        }
        sqlx::query(
            "UPDATE accounts SET email = $1, password_hash = NULL, email_verified_at = NULL, \
             disabled_at = COALESCE(disabled_at, $2), deleted_at = COALESCE(deleted_at, $2) WHERE id = $3",
        )
        .bind(deleted_email(id))
        .bind(now)
        .bind(account.clone())
        .execute(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        Ok(Some(AccountErasure {
            revoked,
            newly_deleted: state.deleted_at.is_none(),
            connections: connections.rows_affected(),
            pats: pats.rows_affected(),
            email_links: email_links.rows_affected(),
            browser_sessions: browser.rows_affected(),
            audit_rows_redacted,
        }))
    }
}

/// Replaces `email` with `placeholder` in the account's audit rows (details and target) and marks
/// the rows it changed redacted; how many.
async fn redact_audit_rows(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: &AccountId,
    email: &str,
    placeholder: &str,
    now: UnixTime,
) -> Result<u64> {
    let rows = sqlx::query("SELECT seq, target, details FROM audit_events WHERE account_id = $1 ORDER BY seq")
        .bind(id.as_str().to_owned())
        .fetch_all(&mut **tx)
        .await
        .db()?;
    let mut redacted = 0;
    for r in &rows {
        let seq: i64 = r.try_get("seq").db()?;
        let target: Option<String> = r.try_get("target").db()?;
        let mut details: serde_json::Value = crate::rows::json_col(r, "details")?;
        let details_changed = bk_domain::audit::redact_value(&mut details, email, placeholder);
        let new_target = target.as_ref().filter(|t| t.contains(email)).map(|t| t.replace(email, placeholder));
        if !details_changed && new_target.is_none() {
            continue;
        }
        sqlx::query("UPDATE audit_events SET details = $1, target = $2, redacted_at = $3 WHERE seq = $4")
            .bind(crate::rows::to_json(&details)?)
            .bind(new_target.or(target))
            .bind(now.saturating_mul(1000))
            .bind(seq)
            .execute(&mut **tx)
            .await
            .db()?;
        redacted += 1;
    }
    Ok(redacted)
}

/// An account's disable and delete times, read under its row lock.
struct AccountState {
    disabled_at: Option<UnixTime>,
    deleted_at: Option<UnixTime>,
}

/// Reads the account inside the transaction, taking its row lock on PostgreSQL (SQLite's write
/// transactions are serial already): a PAT or client created at the same moment (which takes the
/// same row `FOR UPDATE`) is either seen by what follows or waits for the commit. `FOR NO KEY UPDATE`,
/// not `FOR UPDATE`: the foreign-key checks of rows inserted for the account (a code redeemed into a
/// session) take `FOR KEY SHARE`, and must not wait behind us while holding a row we delete next.
async fn lock(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    id: &AccountId,
) -> Result<Option<AccountState>> {
    let sql = match backend {
        Backend::Sqlite => "SELECT disabled_at, deleted_at FROM accounts WHERE id = $1",
        Backend::Postgres => "SELECT disabled_at, deleted_at FROM accounts WHERE id = $1 FOR NO KEY UPDATE",
    };
    let row = sqlx::query(sql).bind(id.as_str().to_owned()).fetch_optional(&mut **tx).await.db()?;
    row.map(|r| {
        Ok(AccountState { disabled_at: r.try_get("disabled_at").db()?, deleted_at: r.try_get("deleted_at").db()? })
    })
    .transpose()
}

/// Disables the (locked) account and revokes everything it holds, inside the caller's transaction.
/// What could still turn into a credential goes first — unused authorization codes (deleted), handoff
/// codes and connect flows (spent) — so nothing redeemed concurrently outlives the revocations below.
async fn revoke_everything(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: &AccountId,
    now: UnixTime,
) -> Result<AccountRevocation> {
    let account = id.as_str().to_owned();
    let disabled = sqlx::query("UPDATE accounts SET disabled_at = $1 WHERE id = $2 AND disabled_at IS NULL")
        .bind(now)
        .bind(account.clone())
        .execute(&mut **tx)
        .await
        .db()?;
    sqlx::query("DELETE FROM authorization_codes WHERE account_id = $1 AND used_at IS NULL")
        .bind(account.clone())
        .execute(&mut **tx)
        .await
        .db()?;
    for table in ["handoff_codes", "connection_flows"] {
        let sql = format!("UPDATE {table} SET used_at = $1 WHERE account_id = $2 AND used_at IS NULL");
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(account.clone()).execute(&mut **tx).await.db()?;
    }
    // Every session of the account: OAuth grants and the PATs' own sessions (PATs made by PATs too,
    // as they all belong to this account).
    let sessions = sqlx::query(
        "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE account_id = $3 AND revoked_at IS NULL RETURNING id",
    )
    .bind(now)
    .bind(ACCOUNT_DISABLED)
    .bind(account.clone())
    .fetch_all(&mut **tx)
    .await
    .db()?
    .iter()
    .map(|r| r.try_get::<String, _>("id").map(SessionId::from_string))
    .collect::<std::result::Result<Vec<_>, _>>()
    .db()?;
    let pats =
        sqlx::query("UPDATE personal_access_tokens SET revoked_at = $1 WHERE account_id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(account.clone())
            .execute(&mut **tx)
            .await
            .db()?;
    let browser = sqlx::query(
        "UPDATE browser_sessions SET ended_at = $1, end_reason = $2 WHERE account_id = $3 AND ended_at IS NULL",
    )
    .bind(now)
    .bind(BROWSER_END.as_str())
    .bind(account.clone())
    .execute(&mut **tx)
    .await
    .db()?;
    sqlx::query("UPDATE mcp_sessions SET ended_at = $1 WHERE account_id = $2 AND ended_at IS NULL")
        .bind(now)
        .bind(account)
        .execute(&mut **tx)
        .await
        .db()?;
    Ok(AccountRevocation {
        newly_disabled: disabled.rows_affected() == 1,
        sessions,
        pats: pats.rows_affected(),
        browser_sessions: browser.rows_affected(),
    })
}

/// `%…%` for `LIKE … ESCAPE '!'`, lower case (emails are stored so), the filter's own `%`, `_` and
/// `!` taken literally.
fn like_pattern(contains: &str) -> String {
    let mut p = String::with_capacity(contains.len() + 2);
    p.push('%');
    for c in contains.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '!') {
            p.push('!');
        }
        p.push(c);
    }
    p.push('%');
    p
}

fn account_from_row(r: &AnyRow) -> Result<Account> {
    Ok(Account {
        id: AccountId::from_string(r.try_get::<String, _>("id").db()?),
        email: r.try_get("email").db()?,
        password_hash: r.try_get("password_hash").db()?,
        created_at: r.try_get("created_at").db()?,
        email_verified_at: r.try_get("email_verified_at").db()?,
        disabled_at: r.try_get("disabled_at").db()?,
        deleted_at: r.try_get("deleted_at").db()?,
    })
}

fn overview_from_row(r: &AnyRow) -> Result<AccountOverview> {
    let count = |col: &str| -> Result<u64> { Ok(r.try_get::<i64, _>(col).db()?.max(0) as u64) };
    Ok(AccountOverview {
        account: account_from_row(r)?,
        live_grants: count("live_grants")?,
        live_pats: count("live_pats")?,
        connections: count("connections")?,
    })
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn email_filters_match_their_text_literally() {
        assert_eq!(like_pattern("Bob"), "%bob%");
        assert_eq!(like_pattern("a_b%c!d"), "%a!_b!%c!!d%");
        assert_eq!(like_pattern(""), "%%");
    }
}
