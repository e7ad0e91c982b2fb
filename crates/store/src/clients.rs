//! OAuth clients (soft-deleted with every session they hold) and remembered consent.

use async_trait::async_trait;
use bk_domain::UnixTime;
use bk_domain::client::{Client, ClientOrigin, ClientRole, ClientType, StoredSecret};
use bk_domain::grant::RevocationReason;
use bk_domain::ids::{AccountId, ClientId, TenantId};
use bk_domain::ports::{ClientStore, ConsentStore, Result, StoreError};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::grants::{PatsCreatedBy, revoke_created_pats};
use crate::pool::Backend;
use crate::rows::{Db, json_col, opt_json_col, scopes_of, to_json};

const CLIENT_COLUMNS: &str = "id, name, client_type, role, origin, redirect_uris, allowed_scopes, allowed_providers, \
     domains, branding, secret_bcrypt, secret_sealed, owner_account_id, created_at, updated_at";

fn client_from_row(r: &AnyRow) -> Result<Client> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("client: bad {what}"));
    let bcrypt: Option<String> = r.try_get("secret_bcrypt").db()?;
    let sealed: Option<Vec<u8>> = r.try_get("secret_sealed").db()?;
    Ok(Client {
        id: ClientId::from_string(r.try_get::<String, _>("id").db()?),
        name: r.try_get("name").db()?,
        client_type: ClientType::parse(&r.try_get::<String, _>("client_type").db()?).ok_or_else(|| corrupt("type"))?,
        role: ClientRole::parse(&r.try_get::<String, _>("role").db()?).ok_or_else(|| corrupt("role"))?,
        origin: ClientOrigin::parse(&r.try_get::<String, _>("origin").db()?).ok_or_else(|| corrupt("origin"))?,
        redirect_uris: json_col(r, "redirect_uris")?,
        allowed_scopes: scopes_of(r, "allowed_scopes")?,
        allowed_providers: opt_json_col(r, "allowed_providers")?,
        domains: json_col(r, "domains")?,
        branding: opt_json_col(r, "branding")?,
        secret: match (bcrypt, sealed) {
            (Some(bcrypt), Some(sealed)) => Some(StoredSecret { bcrypt, sealed }),
            _ => None,
        },
        owner: r.try_get::<Option<String>, _>("owner_account_id").db()?.map(AccountId::from_string),
        created_at: r.try_get("created_at").db()?,
        updated_at: r.try_get("updated_at").db()?,
    })
}

fn insert_query(c: &Client) -> Result<sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments>> {
    Ok(sqlx::query(
        "INSERT INTO clients (id, name, client_type, role, origin, redirect_uris, allowed_scopes, allowed_providers, \
         domains, branding, secret_bcrypt, secret_sealed, owner_account_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(c.id.as_str().to_owned())
    .bind(c.name.clone())
    .bind(c.client_type.as_str())
    .bind(c.role.as_str())
    .bind(c.origin.as_str())
    .bind(to_json(&c.redirect_uris)?)
    .bind(c.allowed_scopes.to_string())
    .bind(c.allowed_providers.as_ref().map(to_json).transpose()?)
    .bind(to_json(&c.domains)?)
    .bind(c.branding.as_ref().map(to_json).transpose()?)
    .bind(c.secret.as_ref().map(|s| s.bcrypt.clone()))
    .bind(c.secret.as_ref().map(|s| s.sealed.clone()))
    .bind(c.owner.as_ref().map(|o| o.as_str().to_owned()))
    .bind(c.created_at)
    .bind(c.updated_at))
}

/// Takes the account's row lock on PostgreSQL (a no-op on SQLite, whose write transactions are serial):
/// quota counts of one account are taken under it.
pub(crate) async fn lock_account(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    account: &AccountId,
) -> Result<()> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT id FROM accounts WHERE id = $1 FOR UPDATE")
            .bind(account.as_str().to_owned())
            .fetch_optional(&mut **tx)
            .await
            .db()?;
    }
    Ok(())
}

#[async_trait]
impl ClientStore for SqlStore {
    async fn insert_client(&self, c: &Client) -> Result<()> {
        insert_query(c)?.execute(&self.writer).await.db()?;
        Ok(())
    }

    async fn insert_owned_client(&self, c: &Client, max_per_owner: u32) -> Result<bool> {
        let Some(owner) = &c.owner else {
            return Err(StoreError::Corrupt("a client counted against a quota needs an owner".into()));
        };
        let mut tx = self.begin_write().await?;
        // SQLite: BEGIN IMMEDIATE already serialises writers. PostgreSQL: the owner's account row is the
        // lock every quota-counted creation of that account takes, so the count below stays true until commit.
        lock_account(&mut tx, self.backend, owner).await?;
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM clients WHERE owner_account_id = $1 AND deleted_at IS NULL")
                .bind(owner.as_str())
                .fetch_one(&mut *tx)
                .await
                .db()?;
        if n >= i64::from(max_per_owner) {
            tx.rollback().await.db()?;
            return Ok(false);
        }
        insert_query(c)?.execute(&mut *tx).await.db()?;
        tx.commit().await.db()?;
        Ok(true)
    }

    async fn client(&self, id: &ClientId) -> Result<Option<Client>> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE id = $1 AND deleted_at IS NULL");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.as_str()).fetch_optional(&self.pool).await.db()?;
        row.map(|r| client_from_row(&r)).transpose()
    }

    async fn list_clients(&self, owner: Option<&AccountId>) -> Result<Vec<Client>> {
        let rows = match owner {
            Some(o) => {
                let sql = format!(
                    "SELECT {CLIENT_COLUMNS} FROM clients WHERE owner_account_id = $1 AND deleted_at IS NULL ORDER BY created_at, id"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(o.as_str()).fetch_all(&self.pool).await.db()?
            }
            None => {
                let sql = format!(
                    "SELECT {CLIENT_COLUMNS} FROM clients WHERE deleted_at IS NULL AND id <> 'cli_personal_access_token' \
                     ORDER BY created_at, id"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await.db()?
            }
        };
        rows.iter().map(client_from_row).collect()
    }

    async fn update_client(&self, c: &Client) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE clients SET name = $2, redirect_uris = $3, allowed_scopes = $4, allowed_providers = $5, domains = $6, \
             branding = $7, secret_bcrypt = $8, secret_sealed = $9, updated_at = $10 WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(c.id.as_str())
        .bind(&c.name)
        .bind(to_json(&c.redirect_uris)?)
        .bind(c.allowed_scopes.to_string())
        .bind(c.allowed_providers.as_ref().map(to_json).transpose()?)
        .bind(to_json(&c.domains)?)
        .bind(c.branding.as_ref().map(to_json).transpose()?)
        .bind(c.secret.as_ref().map(|s| s.bcrypt.clone()))
        .bind(c.secret.as_ref().map(|s| s.sealed.clone()))
        .bind(c.updated_at)
        .execute(&self.writer)
        .await.db()?;
        Ok(r.rows_affected() == 1)
    }

    async fn delete_client(&self, id: &ClientId, now: UnixTime) -> Result<bool> {
        // Everything the client was granted goes with it, in the same transaction: a deleted client
        // never leaves a live session behind.
        let mut tx = self.begin_write().await?;
        let r = sqlx::query("UPDATE clients SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL")
            .bind(now)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .db()?;
        sqlx::query(
            "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE client_id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(RevocationReason::ClientDeleted.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .db()?;
        // … and so does every PAT created with one of its tokens.
        revoke_created_pats(&mut tx, PatsCreatedBy::Client(id), now).await?;
        tx.commit().await.db()?;
        Ok(r.rows_affected() == 1)
    }
}

#[async_trait]
impl ConsentStore for SqlStore {
    async fn has_consent(&self, tenant: &TenantId, client: &ClientId, grant: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 AS one FROM consents WHERE account_id = $1 AND client_id = $2 AND scopes = $3")
            .bind(tenant.as_str())
            .bind(client.as_str())
            .bind(grant)
            .fetch_optional(&self.pool)
            .await
            .db()?;
        Ok(row.is_some())
    }

    async fn remember_consent(&self, tenant: &TenantId, client: &ClientId, grant: &str, now: UnixTime) -> Result<()> {
        sqlx::query(
            "INSERT INTO consents (account_id, client_id, scopes, granted_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (account_id, client_id, scopes) DO UPDATE SET granted_at = excluded.granted_at",
        )
        .bind(tenant.as_str())
        .bind(client.as_str())
        .bind(grant)
        .bind(now)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(())
    }
}
