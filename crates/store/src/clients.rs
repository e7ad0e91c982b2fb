//! OAuth clients (soft-deleted with every session they hold) and remembered consent.

use async_trait::async_trait;
use bk_domain::UnixTime;
use bk_domain::client::{
    Client, ClientCapabilities, ClientKeys, ClientOrigin, ClientRole, ClientType, GrantType, StoredSecret,
};
use bk_domain::grant::{Grant, RevocationReason};
use bk_domain::ids::{AccountId, ClientId, TenantId};
use bk_domain::ports::{ClientStore, ConsentStore, Result, StoreError};
use bk_domain::registration::{DynamicClient, Registration};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::grants::{PatsCreatedBy, revoke_created_pats};
use crate::pool::Backend;
use crate::rows::{Db, GRANT_COLUMNS, grant_from_row, json_col, opt_json_col, scopes_of, to_json};

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

/// The columns of a client's capabilities (migrations 24 and 31).
const CAPABILITY_COLUMNS: &str = "grant_types, jwks, jwks_uri, bound_account_id, billing_account_id";

fn capabilities_from_row(r: &AnyRow) -> Result<ClientCapabilities> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("client: bad {what}"));
    let grant_types = opt_json_col::<Vec<String>>(r, "grant_types")?
        .map(|list| list.iter().map(|g| GrantType::parse(g).ok_or_else(|| corrupt("grant type"))).collect())
        .transpose()?;
    let keys = match (opt_json_col::<serde_json::Value>(r, "jwks")?, r.try_get::<Option<String>, _>("jwks_uri").db()?) {
        (Some(jwks), None) => Some(ClientKeys::Jwks(jwks)),
        (None, Some(uri)) => Some(ClientKeys::JwksUri(uri)),
        (None, None) => None,
        (Some(_), Some(_)) => return Err(corrupt("keys (both jwks and jwks_uri)")),
    };
    Ok(ClientCapabilities {
        grant_types,
        keys,
        bound_account: r.try_get::<Option<String>, _>("bound_account_id").db()?.map(AccountId::from_string),
        billing_account: r.try_get::<Option<String>, _>("billing_account_id").db()?.map(AccountId::from_string),
    })
}

/// Stores a live client's capabilities.
fn set_capabilities_query(
    id: &ClientId,
    caps: &ClientCapabilities,
) -> Result<sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments>> {
    let grant_types =
        caps.grant_types.as_ref().map(|g| to_json(&g.iter().map(|g| g.as_str()).collect::<Vec<_>>())).transpose()?;
    let (jwks, jwks_uri) = match &caps.keys {
        Some(ClientKeys::Jwks(j)) => (Some(to_json(j)?), None),
        Some(ClientKeys::JwksUri(u)) => (None, Some(u.clone())),
        None => (None, None),
    };
    Ok(sqlx::query(
        "UPDATE clients SET grant_types = $2, jwks = $3, jwks_uri = $4, bound_account_id = $5, \
         billing_account_id = $6 WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id.as_str().to_owned())
    .bind(grant_types)
    .bind(jwks)
    .bind(jwks_uri)
    .bind(caps.bound_account.as_ref().map(|a| a.as_str().to_owned()))
    .bind(caps.billing_account.as_ref().map(|a| a.as_str().to_owned())))
}

/// What `sessions.grant_type` says of a session a `client_credentials` token hangs off.
pub(crate) const MACHINE_GRANT: &str = "client_credentials";

/// Ends the machine sessions of a client that its new capabilities no longer allow: all of them
/// when it may no longer use `client_credentials` or is bound to no account, else those of another
/// account than the one it is bound to now; and every PAT made with their tokens.
async fn end_disallowed_machine_sessions(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: &ClientId,
    caps: &ClientCapabilities,
    now: UnixTime,
) -> Result<()> {
    let keep = caps.bound_account.as_ref().filter(|_| caps.allows(GrantType::ClientCredentials));
    let doomed: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM sessions WHERE client_id = $1 AND grant_type = $2 AND revoked_at IS NULL \
         AND ($3 IS NULL OR account_id <> $3)",
    )
    .bind(id.as_str().to_owned())
    .bind(MACHINE_GRANT)
    .bind(keep.map(|a| a.as_str().to_owned()))
    .fetch_all(&mut **tx)
    .await
    .db()?;
    for sid in doomed {
        let sid = bk_domain::ids::SessionId::from_string(sid);
        sqlx::query("UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL")
            .bind(now)
            .bind("client_changed")
            .bind(sid.as_str().to_owned())
            .execute(&mut **tx)
            .await
            .db()?;
        revoke_created_pats(tx, PatsCreatedBy::Session(&sid), now).await?;
    }
    Ok(())
}

fn registration_from_row(r: &AnyRow) -> Result<Registration> {
    let metadata: String = r.try_get("r_metadata").db()?;
    Ok(Registration {
        client_id: ClientId::from_string(r.try_get::<String, _>("r_client_id").db()?),
        source: r.try_get("r_source").db()?,
        fingerprint: r.try_get("r_fingerprint").db()?,
        metadata: serde_json::from_str(&metadata)
            .map_err(|_| StoreError::Corrupt("client registration: bad metadata".into()))?,
        token_hash: r.try_get("r_token_hash").db()?,
        created_at: r.try_get("r_created_at").db()?,
        updated_at: r.try_get("r_updated_at").db()?,
    })
}

const REGISTRATION_COLUMNS: &str = "r.client_id AS r_client_id, r.source AS r_source, r.fingerprint AS r_fingerprint, \
     r.metadata AS r_metadata, r.token_hash AS r_token_hash, r.created_at AS r_created_at, r.updated_at AS r_updated_at";

/// The client columns qualified by the alias `c`, for joins.
fn qualified_client_columns() -> String {
    CLIENT_COLUMNS.split(", ").map(|c| format!("c.{c}")).collect::<Vec<_>>().join(", ")
}

/// Dynamically registered clients that never completed an authorization, created before `$1`.
const UNUSED_DYNAMIC: &str = "SELECT c.id FROM clients c WHERE c.origin = 'dcr' AND c.created_at < $1 \
     AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.client_id = c.id)";

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

    async fn upsert_document_client(&self, c: &Client) -> Result<()> {
        sqlx::query(
            "INSERT INTO clients (id, name, client_type, role, origin, redirect_uris, allowed_scopes, allowed_providers, \
             domains, branding, secret_bcrypt, secret_sealed, owner_account_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, NULL, NULL, NULL, NULL, $9, $9) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, redirect_uris = excluded.redirect_uris, \
             allowed_scopes = excluded.allowed_scopes, updated_at = excluded.updated_at WHERE clients.origin = 'cimd'",
        )
        .bind(c.id.as_str())
        .bind(&c.name)
        .bind(c.client_type.as_str())
        .bind(c.role.as_str())
        .bind(c.origin.as_str())
        .bind(to_json(&c.redirect_uris)?)
        .bind(c.allowed_scopes.to_string())
        .bind(to_json(&c.domains)?)
        .bind(c.updated_at)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(())
    }

    async fn insert_registered_client(&self, c: &Client, reg: &Registration) -> Result<()> {
        let mut tx = self.begin_write().await?;
        insert_query(c)?.execute(&mut *tx).await.db()?;
        sqlx::query(
            "INSERT INTO client_registrations (client_id, source, fingerprint, metadata, token_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(reg.client_id.as_str())
        .bind(&reg.source)
        .bind(&reg.fingerprint)
        .bind(to_json(&reg.metadata)?)
        .bind(&reg.token_hash)
        .bind(reg.created_at)
        .bind(reg.updated_at)
        .execute(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        Ok(())
    }

    async fn reusable_registration(
        &self,
        source: &str,
        fingerprint: &str,
        since: UnixTime,
    ) -> Result<Option<ClientId>> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT r.client_id FROM client_registrations r JOIN clients c ON c.id = r.client_id \
             WHERE r.source = $1 AND r.fingerprint = $2 AND r.created_at >= $3 \
               AND c.deleted_at IS NULL AND c.client_type = 'public' AND c.origin = 'dcr' \
             ORDER BY r.created_at DESC, r.client_id LIMIT 1",
        )
        .bind(source)
        .bind(fingerprint)
        .bind(since)
        .fetch_optional(&self.pool)
        .await
        .db()?;
        Ok(id.map(ClientId::from_string))
    }

    async fn registration(&self, id: &ClientId) -> Result<Option<Registration>> {
        let sql = format!(
            "SELECT {REGISTRATION_COLUMNS} FROM client_registrations r JOIN clients c ON c.id = r.client_id \
             WHERE r.client_id = $1 AND c.deleted_at IS NULL"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.as_str()).fetch_optional(&self.pool).await.db()?;
        row.map(|r| registration_from_row(&r)).transpose()
    }

    async fn update_registration(&self, reg: &Registration, client: Option<&Client>) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        // Only a live client's registration changes: a deleted client's token manages nothing.
        let r = sqlx::query(
            "UPDATE client_registrations SET fingerprint = $2, metadata = $3, token_hash = $4, updated_at = $5 \
             WHERE client_id = $1 AND EXISTS (SELECT 1 FROM clients c WHERE c.id = $1 AND c.deleted_at IS NULL)",
        )
        .bind(reg.client_id.as_str())
        .bind(&reg.fingerprint)
        .bind(to_json(&reg.metadata)?)
        .bind(&reg.token_hash)
        .bind(reg.updated_at)
        .execute(&mut *tx)
        .await
        .db()?;
        if r.rows_affected() != 1 {
            tx.rollback().await.db()?;
            return Ok(false);
        }
        if let Some(c) = client {
            sqlx::query(
                "UPDATE clients SET name = $2, redirect_uris = $3, allowed_scopes = $4, updated_at = $5 \
                 WHERE id = $1 AND deleted_at IS NULL",
            )
            .bind(c.id.as_str())
            .bind(&c.name)
            .bind(to_json(&c.redirect_uris)?)
            .bind(c.allowed_scopes.to_string())
            .bind(c.updated_at)
            .execute(&mut *tx)
            .await
            .db()?;
        }
        tx.commit().await.db()?;
        Ok(true)
    }

    async fn purge_unused_registrations(&self, registered_before: UnixTime) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        for table in [
            "DELETE FROM client_registrations WHERE client_id IN",
            "DELETE FROM authorization_codes WHERE client_id IN",
            "DELETE FROM consents WHERE client_id IN",
        ] {
            let sql = format!("{table} ({UNUSED_DYNAMIC})");
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(registered_before).execute(&mut *tx).await.db()?;
        }
        let sql = format!("DELETE FROM clients WHERE id IN ({UNUSED_DYNAMIC})");
        let n = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(registered_before).execute(&mut *tx).await.db()?;
        tx.commit().await.db()?;
        Ok(n.rows_affected())
    }

    async fn dynamic_clients(&self) -> Result<Vec<DynamicClient>> {
        let sql = format!(
            "SELECT {}, {REGISTRATION_COLUMNS}, c.deleted_at AS c_deleted_at, \
             CAST(CASE WHEN EXISTS (SELECT 1 FROM sessions s WHERE s.client_id = c.id) THEN 1 ELSE 0 END AS BIGINT) AS used \
             FROM clients c LEFT JOIN client_registrations r ON r.client_id = c.id \
             WHERE c.origin = 'dcr' ORDER BY c.created_at, c.id",
            qualified_client_columns()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await.db()?;
        rows.iter()
            .map(|r| {
                let has_registration = r.try_get::<Option<String>, _>("r_client_id").db()?.is_some();
                Ok(DynamicClient {
                    client: client_from_row(r)?,
                    registration: if has_registration { Some(registration_from_row(r)?) } else { None },
                    used: r.try_get::<i64, _>("used").db()? != 0,
                    deleted: r.try_get::<Option<i64>, _>("c_deleted_at").db()?.is_some(),
                })
            })
            .collect()
    }

    async fn insert_capable_client(
        &self,
        c: &Client,
        caps: &ClientCapabilities,
        registration: Option<&Registration>,
        max_per_owner: u32,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        if let Some(owner) = &c.owner {
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
        }
        insert_query(c)?.execute(&mut *tx).await.db()?;
        set_capabilities_query(&c.id, caps)?.execute(&mut *tx).await.db()?;
        if let Some(reg) = registration {
            sqlx::query(
                "INSERT INTO client_registrations (client_id, source, fingerprint, metadata, token_hash, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(reg.client_id.as_str())
            .bind(&reg.source)
            .bind(&reg.fingerprint)
            .bind(to_json(&reg.metadata)?)
            .bind(&reg.token_hash)
            .bind(reg.created_at)
            .bind(reg.updated_at)
            .execute(&mut *tx)
            .await
            .db()?;
        }
        tx.commit().await.db()?;
        Ok(true)
    }

    async fn capable_client(&self, id: &ClientId) -> Result<Option<(Client, ClientCapabilities)>> {
        let sql =
            format!("SELECT {CLIENT_COLUMNS}, {CAPABILITY_COLUMNS} FROM clients WHERE id = $1 AND deleted_at IS NULL");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.as_str()).fetch_optional(&self.pool).await.db()?;
        row.map(|r| Ok((client_from_row(&r)?, capabilities_from_row(&r)?))).transpose()
    }

    async fn list_capable_clients(&self, owner: Option<&AccountId>) -> Result<Vec<(Client, ClientCapabilities)>> {
        let rows = match owner {
            Some(o) => {
                let sql = format!(
                    "SELECT {CLIENT_COLUMNS}, {CAPABILITY_COLUMNS} FROM clients WHERE owner_account_id = $1 \
                     AND deleted_at IS NULL ORDER BY created_at, id"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(o.as_str()).fetch_all(&self.pool).await.db()?
            }
            None => {
                let sql = format!(
                    "SELECT {CLIENT_COLUMNS}, {CAPABILITY_COLUMNS} FROM clients WHERE deleted_at IS NULL \
                     AND id <> 'cli_personal_access_token' ORDER BY created_at, id"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await.db()?
            }
        };
        rows.iter().map(|r| Ok((client_from_row(r)?, capabilities_from_row(r)?))).collect()
    }

    async fn update_capable_client(&self, c: &Client, caps: &ClientCapabilities, now: UnixTime) -> Result<bool> {
        let mut tx = self.begin_write().await?;
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
        .execute(&mut *tx)
        .await
        .db()?;
        if r.rows_affected() != 1 {
            tx.rollback().await.db()?;
            return Ok(false);
        }
        set_capabilities_query(&c.id, caps)?.execute(&mut *tx).await.db()?;
        end_disallowed_machine_sessions(&mut tx, &c.id, caps, now).await?;
        tx.commit().await.db()?;
        Ok(true)
    }

    async fn set_client_capabilities(&self, id: &ClientId, caps: &ClientCapabilities, now: UnixTime) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let r = set_capabilities_query(id, caps)?.execute(&mut *tx).await.db()?;
        if r.rows_affected() != 1 {
            tx.rollback().await.db()?;
            return Ok(false);
        }
        end_disallowed_machine_sessions(&mut tx, id, caps, now).await?;
        tx.commit().await.db()?;
        Ok(true)
    }

    async fn open_machine_grant(&self, grant: &Grant) -> Result<Option<Grant>> {
        let mut tx = self.begin_write().await?;
        // PostgreSQL: opens for one account are serialised on its row, so concurrent first requests
        // share one session (SQLite's write transactions are serial already).
        lock_account(&mut tx, self.backend, &grant.account_id).await?;
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM sessions s WHERE s.client_id = $1 AND s.account_id = $2 AND s.grant_type = $3 \
             AND s.revoked_at IS NULL ORDER BY s.created_at DESC, s.id LIMIT 1"
        );
        let open = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(grant.client_id.as_str())
            .bind(grant.account_id.as_str())
            .bind(MACHINE_GRANT)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        if let Some(row) = open {
            let found = grant_from_row(&row)?;
            tx.commit().await.db()?;
            return Ok(Some(found));
        }
        // Only while the client is still bound to this account and allowed the grant: a binding
        // changed since the caller looked (its view may be a second old) opens nothing.
        let r = sqlx::query(
            "INSERT INTO sessions (id, account_id, client_id, scopes, resource, auth_time, created_at, revoked_at, \
             restrictions, kind, dpop_jkt, grant_type) \
             SELECT $1, $2, $3, $4, $5, $6, $7, NULL, $8, $9, NULL, $10 FROM clients c \
             WHERE c.id = $3 AND c.deleted_at IS NULL AND c.bound_account_id = $2 AND c.grant_types LIKE $11",
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
        .bind(MACHINE_GRANT)
        .bind(format!("%\"{MACHINE_GRANT}\"%"))
        .execute(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        Ok((r.rows_affected() == 1).then(|| grant.clone()))
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
