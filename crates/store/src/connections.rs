//! Connections to upstream providers and their sealed credentials, and the connect flows under way. Every statement filters on the
//! tenant, so another tenant's id finds nothing; the credential column is read only by
//! `sealed_credential`, never by the listing.

use async_trait::async_trait;
use bk_domain::UnixTime;
use bk_domain::connection::{Connection, ConnectionFlow, ConnectionStatus, UpstreamRegistration};
use bk_domain::ids::{AccountId, ClientId, ConnectionId, TenantId};
use bk_domain::ports::{
    ConnectionFlowStore, ConnectionPage, ConnectionQuery, ConnectionSort, ConnectionStore, LeaseAttempt,
    MAX_CONNECTIONS_PAGE, RefreshLease, Result, SealedConnection, SealedRow, StoreError,
};
use bk_domain::restrictions::ProviderReach;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::clients::lock_account;
use crate::rows::{Db, json_col, to_json};

const COLUMNS: &str = "id, account_id, provider_id, provider_user_id, scopes, status, expires_at, can_refresh, \
     metadata, last_error, created_at, updated_at";

fn connection_from_row(r: &AnyRow) -> Result<Connection> {
    let status: String = r.try_get("status").db()?;
    Ok(Connection {
        id: ConnectionId::from_string(r.try_get::<String, _>("id").db()?),
        account_id: AccountId::from_string(r.try_get::<String, _>("account_id").db()?),
        provider_id: r.try_get("provider_id").db()?,
        provider_user_id: r.try_get("provider_user_id").db()?,
        scopes: json_col(r, "scopes")?,
        status: ConnectionStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("bad connection status {status:?}")))?,
        expires_at: r.try_get("expires_at").db()?,
        can_refresh: r.try_get::<i64, _>("can_refresh").db()? != 0,
        metadata: json_col(r, "metadata")?,
        last_error: r.try_get("last_error").db()?,
        created_at: r.try_get("created_at").db()?,
        updated_at: r.try_get("updated_at").db()?,
    })
}

/// The ORDER BY of a listing: fixed text per choice, the id last so pages never overlap.
fn order_by(sort: ConnectionSort, descending: bool) -> String {
    let column = match sort {
        ConnectionSort::CreatedAt => "created_at",
        ConnectionSort::UpdatedAt => "updated_at",
        ConnectionSort::ExpiresAt => "expires_at",
        ConnectionSort::ProviderId => "provider_id",
        ConnectionSort::Status => "status",
    };
    let dir = if descending { "DESC" } else { "ASC" };
    format!("{column} {dir}, id {dir}")
}

#[async_trait]
impl ConnectionStore for SqlStore {
    async fn insert_connection(
        &self,
        tenant: &TenantId,
        c: &Connection,
        sealed: &[u8],
        max_per_account: u32,
    ) -> Result<bool> {
        if &c.account_id != tenant {
            return Err(StoreError::Corrupt("a connection must belong to the tenant storing it".into()));
        }
        let mut tx = self.begin_write().await?;
        // SQLite: BEGIN IMMEDIATE serialises writers. PostgreSQL: the account's row lock holds the
        // count until commit.
        lock_account(&mut tx, self.backend, tenant).await?;
        let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM connections WHERE account_id = $1")
            .bind(tenant.as_str())
            .fetch_one(&mut *tx)
            .await
            .db()?;
        if held >= i64::from(max_per_account) {
            tx.rollback().await.db()?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO connections (id, account_id, provider_id, provider_user_id, scopes, status, expires_at, \
             can_refresh, metadata, last_error, credential, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(c.id.as_str())
        .bind(tenant.as_str())
        .bind(&c.provider_id)
        .bind(&c.provider_user_id)
        .bind(to_json(&c.scopes)?)
        .bind(c.status.as_str())
        .bind(c.expires_at)
        .bind(i64::from(c.can_refresh))
        .bind(to_json(&c.metadata)?)
        .bind(&c.last_error)
        .bind(sealed)
        .bind(c.created_at)
        .bind(c.updated_at)
        .execute(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        Ok(true)
    }

    async fn connection(&self, tenant: &TenantId, id: &ConnectionId) -> Result<Option<Connection>> {
        let sql = format!("SELECT {COLUMNS} FROM connections WHERE account_id = $1 AND id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.as_ref().map(connection_from_row).transpose()
    }

    async fn list_connections(&self, tenant: &TenantId, q: &ConnectionQuery) -> Result<ConnectionPage> {
        let limit = q.limit.clamp(1, MAX_CONNECTIONS_PAGE);
        let offset = i64::from(q.page.max(1) - 1) * i64::from(limit);
        // One statement for every filter combination: unused filters compare against NULL. The
        // providers the caller may reach are bound one placeholder each, numbered after `first`.
        let filter = |first: usize| {
            let base = "account_id = $1 AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR provider_id = $3) \
                 AND ($4 IS NULL OR created_at >= $4) AND ($5 IS NULL OR created_at < $5)";
            let (list, negate) = match &q.providers {
                ProviderReach::Only(p) => (p, false),
                ProviderReach::Except(p) => (p, true),
            };
            let marks: Vec<String> = (0..list.len()).map(|i| format!("${}", first + i)).collect();
            match (list.is_empty(), negate) {
                (true, true) => base.to_owned(),
                (true, false) => format!("{base} AND 1 = 0"),
                (false, negate) => {
                    format!("{base} AND provider_id {}IN ({})", if negate { "NOT " } else { "" }, marks.join(", "))
                }
            }
        };
        let providers = match &q.providers {
            ProviderReach::Only(p) | ProviderReach::Except(p) => p.clone(),
        };
        let status = q.status.map(|s| s.as_str().to_owned());
        let mut count =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM connections WHERE {}", filter(6))))
                .bind(tenant.as_str())
                .bind(status.clone())
                .bind(q.provider_id.clone())
                .bind(q.created_after)
                .bind(q.created_before);
        for p in &providers {
            count = count.bind(p.clone());
        }
        let total: i64 = count.fetch_one(&self.pool).await.db()?;
        let sql = format!(
            "SELECT {COLUMNS} FROM connections WHERE {} ORDER BY {} LIMIT $6 OFFSET $7",
            filter(8),
            order_by(q.sort_by, q.descending)
        );
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(status)
            .bind(q.provider_id.clone())
            .bind(q.created_after)
            .bind(q.created_before)
            .bind(i64::from(limit))
            .bind(offset);
        for p in &providers {
            rows = rows.bind(p.clone());
        }
        let rows = rows.fetch_all(&self.pool).await.db()?;
        Ok(ConnectionPage {
            items: rows.iter().map(connection_from_row).collect::<Result<_>>()?,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn sealed_credential(&self, tenant: &TenantId, id: &ConnectionId) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT credential FROM connections WHERE account_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.map(|r| r.try_get::<Vec<u8>, _>("credential").db()).transpose()
    }

    async fn sealed_connection(&self, tenant: &TenantId, id: &ConnectionId) -> Result<Option<SealedConnection>> {
        let sql = format!(
            "SELECT {COLUMNS}, credential, refresh_generation FROM connections WHERE account_id = $1 AND id = $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .db()?;
        row.map(|r| {
            Ok(SealedConnection {
                connection: connection_from_row(&r)?,
                sealed: r.try_get("credential").db()?,
                generation: r.try_get("refresh_generation").db()?,
            })
        })
        .transpose()
    }

    async fn update_connection(&self, tenant: &TenantId, c: &Connection, sealed: Option<&[u8]>) -> Result<bool> {
        // The credential is replaced only when given: COALESCE keeps the stored one otherwise.
        let r = sqlx::query(
            "UPDATE connections SET provider_user_id = $3, scopes = $4, status = $5, expires_at = $6, \
             can_refresh = $7, metadata = $8, last_error = $9, credential = COALESCE($10, credential), updated_at = $11 \
             WHERE account_id = $1 AND id = $2",
        )
        .bind(tenant.as_str())
        .bind(c.id.as_str())
        .bind(&c.provider_user_id)
        .bind(to_json(&c.scopes)?)
        .bind(c.status.as_str())
        .bind(c.expires_at)
        .bind(i64::from(c.can_refresh))
        .bind(to_json(&c.metadata)?)
        .bind(&c.last_error)
        .bind(sealed.map(<[u8]>::to_vec))
        .bind(c.updated_at)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(r.rows_affected() == 1)
    }

    async fn acquire_refresh_lease(
        &self,
        tenant: &TenantId,
        id: &ConnectionId,
        now: UnixTime,
        until: UnixTime,
        lease_token: &str,
    ) -> Result<LeaseAttempt> {
        // One statement: of many callers on any instance, one finds the lease free (or run out).
        // The RETURNING clause sees the row after the update, so whether the previous holder
        // finished is read first, under the same compare-and-set (the token it left behind).
        let mut tx = self.begin_write().await?;
        let previous: Option<Option<String>> = sqlx::query_scalar(
            "SELECT refresh_lease_token FROM connections WHERE account_id = $1 AND id = $2 \
             AND (refresh_lease_until IS NULL OR refresh_lease_until <= $3)",
        )
        .bind(tenant.as_str())
        .bind(id.as_str())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        let sql = format!(
            "UPDATE connections SET refresh_lease_until = $4, refresh_lease_token = $5 \
             WHERE account_id = $1 AND id = $2 \
             AND (refresh_lease_until IS NULL OR refresh_lease_until <= $3) \
             RETURNING {COLUMNS}, credential, refresh_generation, refresh_failed_at"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(id.as_str())
            .bind(now)
            .bind(until)
            .bind(lease_token)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        if let Some(r) = row {
            let lease = RefreshLease {
                connection: connection_from_row(&r)?,
                sealed: r.try_get("credential").db()?,
                generation: r.try_get("refresh_generation").db()?,
                failed_at: r.try_get("refresh_failed_at").db()?,
                interrupted: matches!(previous, Some(Some(_))),
            };
            tx.commit().await.db()?;
            return Ok(LeaseAttempt::Acquired(Box::new(lease)));
        }
        let held: Option<i64> =
            sqlx::query_scalar("SELECT refresh_generation FROM connections WHERE account_id = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .db()?;
        tx.commit().await.db()?;
        Ok(held.map_or(LeaseAttempt::Missing, |generation| LeaseAttempt::Held { generation }))
    }

    async fn finish_refresh(
        &self,
        tenant: &TenantId,
        c: &Connection,
        sealed: Option<&[u8]>,
        failed_at: Option<UnixTime>,
        lease_token: &str,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE connections SET scopes = $3, status = $4, expires_at = $5, can_refresh = $6, last_error = $7, \
             credential = COALESCE($8, credential), updated_at = $9, refresh_failed_at = $10, metadata = $12, \
             refresh_generation = refresh_generation + 1, refresh_lease_until = NULL, refresh_lease_token = NULL \
             WHERE account_id = $1 AND id = $2 AND refresh_lease_token = $11",
        )
        .bind(tenant.as_str())
        .bind(c.id.as_str())
        .bind(to_json(&c.scopes)?)
        .bind(c.status.as_str())
        .bind(c.expires_at)
        .bind(i64::from(c.can_refresh))
        .bind(&c.last_error)
        .bind(sealed.map(<[u8]>::to_vec))
        .bind(c.updated_at)
        .bind(failed_at)
        .bind(lease_token)
        .bind(to_json(&c.metadata)?)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(r.rows_affected() == 1)
    }

    async fn release_refresh_lease(&self, tenant: &TenantId, id: &ConnectionId, lease_token: &str) -> Result<()> {
        sqlx::query(
            "UPDATE connections SET refresh_lease_until = NULL, refresh_lease_token = NULL \
             WHERE account_id = $1 AND id = $2 AND refresh_lease_token = $3",
        )
        .bind(tenant.as_str())
        .bind(id.as_str())
        .bind(lease_token)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(())
    }

    async fn sealed_credentials_page(&self, after: Option<&ConnectionId>, limit: u32) -> Result<Vec<SealedRow>> {
        let rows = sqlx::query(
            "SELECT id, account_id, credential FROM connections WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2",
        )
        .bind(after.map(|a| a.as_str().to_owned()))
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.iter()
            .map(|r| {
                Ok(SealedRow {
                    account_id: AccountId::from_string(r.try_get::<String, _>("account_id").db()?),
                    id: ConnectionId::from_string(r.try_get::<String, _>("id").db()?),
                    sealed: r.try_get("credential").db()?,
                })
            })
            .collect()
    }

    async fn reseal_credential(&self, tenant: &TenantId, id: &ConnectionId, old: &[u8], new: &[u8]) -> Result<bool> {
        let r =
            sqlx::query("UPDATE connections SET credential = $4 WHERE account_id = $1 AND id = $2 AND credential = $3")
                .bind(tenant.as_str())
                .bind(id.as_str())
                .bind(old.to_vec())
                .bind(new.to_vec())
                .execute(&self.writer)
                .await
                .db()?;
        Ok(r.rows_affected() == 1)
    }

    async fn delete_connection(&self, tenant: &TenantId, id: &ConnectionId) -> Result<bool> {
        let r = sqlx::query("DELETE FROM connections WHERE account_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id.as_str())
            .execute(&self.writer)
            .await
            .db()?;
        Ok(r.rows_affected() == 1)
    }
}

#[async_trait]
impl ConnectionFlowStore for SqlStore {
    async fn insert_connection_flow(&self, tenant: &TenantId, f: &ConnectionFlow) -> Result<()> {
        if &f.account_id != tenant {
            return Err(StoreError::Corrupt("a connect flow must belong to the tenant storing it".into()));
        }
        sqlx::query(
            "INSERT INTO connection_flows (state_hash, account_id, client_id, provider_id, redirect_url, upstream, \
             created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)",
        )
        .bind(f.state_hash.clone())
        .bind(tenant.as_str())
        .bind(f.client_id.as_ref().map(|c| c.as_str().to_owned()))
        .bind(&f.provider_id)
        .bind(&f.redirect_url)
        .bind(&f.upstream)
        .bind(f.created_at)
        .bind(f.expires_at)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(())
    }

    async fn take_connection_flow(&self, state_hash: &[u8], now: UnixTime) -> Result<Option<ConnectionFlow>> {
        // One statement: of two takes of the same state, only one finds it unused.
        let row = sqlx::query(
            "UPDATE connection_flows SET used_at = $2 WHERE state_hash = $1 AND used_at IS NULL \
             RETURNING state_hash, account_id, client_id, provider_id, redirect_url, upstream, created_at, expires_at",
        )
        .bind(state_hash.to_vec())
        .bind(now)
        .fetch_optional(&self.writer)
        .await
        .db()?;
        row.map(|r| {
            Ok(ConnectionFlow {
                state_hash: r.try_get("state_hash").db()?,
                account_id: AccountId::from_string(r.try_get::<String, _>("account_id").db()?),
                client_id: r.try_get::<Option<String>, _>("client_id").db()?.map(ClientId::from_string),
                provider_id: r.try_get("provider_id").db()?,
                redirect_url: r.try_get("redirect_url").db()?,
                upstream: r.try_get("upstream").db()?,
                created_at: r.try_get("created_at").db()?,
                expires_at: r.try_get("expires_at").db()?,
            })
        })
        .transpose()
    }

    async fn upstream_registration(&self, issuer: &str, redirect_uri: &str) -> Result<Option<UpstreamRegistration>> {
        let row = sqlx::query(
            "SELECT issuer, redirect_uri, client_id, secret_sealed, token_auth, created_at, secret_expires_at \
             FROM upstream_registrations WHERE id = $1",
        )
        .bind(bk_domain::connection::upstream_registration_id(issuer, redirect_uri))
        .fetch_optional(&self.pool)
        .await
        .db()?;
        row.map(|r| {
            Ok(UpstreamRegistration {
                issuer: r.try_get("issuer").db()?,
                redirect_uri: r.try_get("redirect_uri").db()?,
                client_id: r.try_get("client_id").db()?,
                secret_sealed: r.try_get("secret_sealed").db()?,
                token_auth: r.try_get("token_auth").db()?,
                created_at: r.try_get("created_at").db()?,
                secret_expires_at: r.try_get("secret_expires_at").db()?,
            })
        })
        .transpose()
    }

    async fn save_upstream_registration(&self, u: &UpstreamRegistration) -> Result<()> {
        sqlx::query(
            "INSERT INTO upstream_registrations (id, issuer, redirect_uri, client_id, secret_sealed, token_auth, \
             created_at, secret_expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(u.id())
        .bind(&u.issuer)
        .bind(&u.redirect_uri)
        .bind(&u.client_id)
        .bind(u.secret_sealed.clone())
        .bind(&u.token_auth)
        .bind(u.created_at)
        .bind(u.secret_expires_at)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(())
    }

    async fn forget_upstream_registration(&self, issuer: &str, redirect_uri: &str, client_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM upstream_registrations WHERE id = $1 AND client_id = $2")
            .bind(bk_domain::connection::upstream_registration_id(issuer, redirect_uri))
            .bind(client_id)
            .execute(&self.writer)
            .await
            .db()?;
        Ok(())
    }
}
