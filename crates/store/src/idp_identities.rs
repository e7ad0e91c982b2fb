//! Upstream OpenID Connect identities and the sign-ins under way at their providers. A state is
//! spent by deleting it (so of two uses one gets it); creating an account for a new identity and
//! linking one happen in one transaction each, so a concurrent sign-in cannot split them.

use async_trait::async_trait;
use bk_domain::UnixTime;
use bk_domain::account::Account;
use bk_domain::ids::AccountId;
use bk_domain::ports::Result;
use bk_domain::ports::idp_identities::IdpIdentityStore;
use bk_domain::upstream_identity::{IdpIdentity, IdpLink, IdpLoginState, IdpSignUp, IdpUnlink};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::clients::lock_account;
use crate::rows::{Db, db_error, is_unique_violation};

const COLUMNS: &str = "id, idp_id, issuer, subject, account_id, email, created_at, last_used_at";

type Tx = sqlx::Transaction<'static, sqlx::Any>;

#[async_trait]
impl IdpIdentityStore for SqlStore {
    async fn create_idp_login_state(&self, s: &IdpLoginState) -> Result<()> {
        sqlx::query(
            "INSERT INTO idp_login_states (state_hash, idp_id, browser_hash, next_path, link_account, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(s.state_hash.clone())
        .bind(s.idp_id.clone())
        .bind(s.browser_hash.clone())
        .bind(s.next.clone())
        .bind(s.link_account.as_ref().map(|a| a.as_str().to_owned()))
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(())
    }

    async fn take_idp_login_state(&self, state_hash: &[u8], now: UnixTime) -> Result<Option<IdpLoginState>> {
        let row = sqlx::query(
            "DELETE FROM idp_login_states WHERE state_hash = $1 \
             RETURNING state_hash, idp_id, browser_hash, next_path, link_account, created_at, expires_at",
        )
        .bind(state_hash.to_vec())
        .fetch_optional(&self.writer)
        .await
        .db()?;
        let Some(r) = row else { return Ok(None) };
        let state = IdpLoginState {
            state_hash: r.try_get("state_hash").db()?,
            idp_id: r.try_get("idp_id").db()?,
            browser_hash: r.try_get("browser_hash").db()?,
            next: r.try_get("next_path").db()?,
            link_account: r.try_get::<Option<String>, _>("link_account").db()?.map(AccountId::from_string),
            created_at: r.try_get("created_at").db()?,
            expires_at: r.try_get("expires_at").db()?,
        };
        // An expired state is spent all the same (it is worth nothing).
        Ok((state.expires_at > now).then_some(state))
    }

    async fn idp_identity(&self, issuer: &str, subject: &str) -> Result<Option<IdpIdentity>> {
        let sql = format!("SELECT {COLUMNS} FROM idp_identities WHERE issuer = $1 AND subject = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(issuer.to_owned())
            .bind(subject.to_owned())
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.as_ref().map(identity_from_row).transpose()
    }

    async fn idp_identities_of(&self, account: &AccountId) -> Result<Vec<IdpIdentity>> {
        let sql = format!("SELECT {COLUMNS} FROM idp_identities WHERE account_id = $1 ORDER BY created_at, id");
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account.as_str().to_owned()).fetch_all(&self.pool).await.db()?;
        rows.iter().map(identity_from_row).collect()
    }

    async fn touch_idp_identity(&self, id: &str, now: UnixTime) -> Result<()> {
        sqlx::query("UPDATE idp_identities SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id.to_owned())
            .execute(&self.writer)
            .await
            .db()?;
        Ok(())
    }

    async fn sign_up_with_idp(&self, account: &Account, identity: &IdpIdentity) -> Result<IdpSignUp> {
        let mut tx = self.begin_write().await?;
        let created = sqlx::query(
            "INSERT INTO accounts (id, email, password_hash, created_at, email_verified_at, disabled_at, deleted_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(account.id.as_str().to_owned())
        .bind(account.email.clone())
        .bind(account.password_hash.clone())
        .bind(account.created_at)
        .bind(account.email_verified_at)
        .bind(account.disabled_at)
        .bind(account.deleted_at)
        .execute(&mut *tx)
        .await;
        match created {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                tx.rollback().await.db()?;
                return Ok(IdpSignUp::EmailTaken);
            }
            Err(e) => return Err(db_error(e)),
        }
        if !insert_identity(&mut tx, identity).await? {
            tx.rollback().await.db()?;
            return Ok(IdpSignUp::IdentityTaken);
        }
        tx.commit().await.db()?;
        Ok(IdpSignUp::Created)
    }

    async fn link_idp_identity(&self, identity: &IdpIdentity, now: UnixTime) -> Result<IdpLink> {
        let mut tx = self.begin_write().await?;
        lock_account(&mut tx, self.backend, &identity.account_id).await?;
        let owner: Option<String> =
            sqlx::query_scalar("SELECT account_id FROM idp_identities WHERE issuer = $1 AND subject = $2")
                .bind(identity.issuer.clone())
                .bind(identity.subject.clone())
                .fetch_optional(&mut *tx)
                .await
                .db()?;
        let outcome = match owner {
            Some(o) if o == identity.account_id.as_str() => {
                sqlx::query("UPDATE idp_identities SET last_used_at = $1 WHERE issuer = $2 AND subject = $3")
                    .bind(now)
                    .bind(identity.issuer.clone())
                    .bind(identity.subject.clone())
                    .execute(&mut *tx)
                    .await
                    .db()?;
                IdpLink::AlreadyLinked
            }
            Some(_) => IdpLink::HeldByAnother,
            None => {
                if insert_identity(&mut tx, identity).await? {
                    IdpLink::Linked
                } else {
                    IdpLink::HeldByAnother
                }
            }
        };
        match outcome {
            IdpLink::HeldByAnother => tx.rollback().await.db()?,
            _ => tx.commit().await.db()?,
        }
        Ok(outcome)
    }

    async fn unlink_idp_identity(&self, account: &AccountId, id: &str) -> Result<(IdpUnlink, Option<IdpIdentity>)> {
        let mut tx = self.begin_write().await?;
        // Two unlinks of one account's last two ways in at once: the second sees the first's.
        lock_account(&mut tx, self.backend, account).await?;
        let acc = account.as_str().to_owned();
        let sql = format!("SELECT {COLUMNS} FROM idp_identities WHERE id = $1 AND account_id = $2");
        let held = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_owned())
            .bind(acc.clone())
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        let Some(held) = held.as_ref().map(identity_from_row).transpose()? else {
            tx.rollback().await.db()?;
            return Ok((IdpUnlink::NotFound, None));
        };
        let password: Option<String> = sqlx::query_scalar("SELECT password_hash FROM accounts WHERE id = $1")
            .bind(acc.clone())
            .fetch_optional(&mut *tx)
            .await
            .db()?
            .flatten();
        let others: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM passkeys WHERE account_id = $1) \
                  + (SELECT COUNT(*) FROM wallet_identities WHERE account_id = $1) \
                  + (SELECT COUNT(*) FROM idp_identities WHERE account_id = $1 AND id <> $2)",
        )
        .bind(acc.clone())
        .bind(id.to_owned())
        .fetch_one(&mut *tx)
        .await
        .db()?;
        if password.is_none() && others == 0 {
            tx.rollback().await.db()?;
            return Ok((IdpUnlink::LastSignInMethod, Some(held)));
        }
        sqlx::query("DELETE FROM idp_identities WHERE id = $1 AND account_id = $2")
            .bind(id.to_owned())
            .bind(acc)
            .execute(&mut *tx)
            .await
            .db()?;
        tx.commit().await.db()?;
        Ok((IdpUnlink::Unlinked, Some(held)))
    }
}

/// Inserts the identity; `false` if (issuer, subject) is held already (a concurrent link included).
async fn insert_identity(tx: &mut Tx, i: &IdpIdentity) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO idp_identities (id, idp_id, issuer, subject, account_id, email, created_at, last_used_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(i.id.clone())
    .bind(i.idp_id.clone())
    .bind(i.issuer.clone())
    .bind(i.subject.clone())
    .bind(i.account_id.as_str().to_owned())
    .bind(i.email.clone())
    .bind(i.created_at)
    .bind(i.last_used_at)
    .execute(&mut **tx)
    .await;
    match inserted {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(db_error(e)),
    }
}

fn identity_from_row(r: &AnyRow) -> Result<IdpIdentity> {
    Ok(IdpIdentity {
        id: r.try_get("id").db()?,
        idp_id: r.try_get("idp_id").db()?,
        issuer: r.try_get("issuer").db()?,
        subject: r.try_get("subject").db()?,
        account_id: AccountId::from_string(r.try_get::<String, _>("account_id").db()?),
        email: r.try_get("email").db()?,
        created_at: r.try_get("created_at").db()?,
        last_used_at: r.try_get("last_used_at").db()?,
    })
}
