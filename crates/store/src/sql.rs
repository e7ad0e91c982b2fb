//! The SQL store over sqlx's `Any` driver: one set of queries (`$1…$n` placeholders, portable types:
//! TEXT, BIGINT, BLOB/BYTEA) for SQLite and PostgreSQL; each backend has its own migrations.

use std::borrow::Cow;

use async_trait::async_trait;
use bk_domain::UnixTime;
use bk_domain::audit::{AuditEvent, Outcome, StoredAuditEvent};
use bk_domain::client::{Client, ClientOrigin, ClientRole, ClientType, StoredSecret};
use bk_domain::code::AuthorizationCode;
use bk_domain::grant::{Grant, GrantKind, RevocationReason};
use bk_domain::ids::{AccountId, ClientId, KeyId, RefreshTokenId, SessionId, TenantId};
use bk_domain::pkce::CodeChallenge;
use bk_domain::refresh::RefreshToken;
use bk_domain::restrictions::Restrictions;
use bk_domain::scope::ScopeSet;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, Row, SqlSafeStr};
use tokio::sync::{mpsc, oneshot};

use crate::{
    Account, AccountStore, AuditQuery, AuditStore, ChainLink, ChainPosition, ChainState, ClientStore, CodeStore,
    ConsentStore, McpSession, McpSessionStore, OperatorToken, OperatorTokenStore, PatStore, PersonalAccessToken,
    RefreshTokenStore, Result, SessionStatus, SessionStore, SessionSummary, SigningKeyStore, Store, StoreError,
    StoredSigningKey,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct SqlStore {
    /// Reads (several connections).
    pool: AnyPool,
    /// Writes: the same pool on PostgreSQL, a single connection on SQLite.
    writer: AnyPool,
    backend: Backend,
    /// SQLite: refresh-token rotations waiting for the group committer (see `rotation_committer`).
    rotations: Option<mpsc::Sender<Rotation>>,
}

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/sqlite/0001_init.sql")),
    (2, "mcp sessions", include_str!("../migrations/sqlite/0002_mcp_sessions.sql")),
    (3, "clients, restrictions, tokens", include_str!("../migrations/sqlite/0003_clients_restrictions_tokens.sql")),
    (4, "audit", include_str!("../migrations/sqlite/0004_audit.sql")),
    (5, "refresh parent index", include_str!("../migrations/sqlite/0005_refresh_parent_index.sql")),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/postgres/0001_init.sql")),
    (2, "mcp sessions", include_str!("../migrations/postgres/0002_mcp_sessions.sql")),
    (3, "clients, restrictions, tokens", include_str!("../migrations/postgres/0003_clients_restrictions_tokens.sql")),
    (4, "audit", include_str!("../migrations/postgres/0004_audit.sql")),
    (5, "refresh parent index", include_str!("../migrations/postgres/0005_refresh_parent_index.sql")),
];

fn migrator(backend: Backend) -> Migrator {
    let list = match backend {
        Backend::Sqlite => SQLITE_MIGRATIONS,
        Backend::Postgres => POSTGRES_MIGRATIONS,
    };
    Migrator::with_migrations(
        list.iter()
            .map(|(v, d, sql)| Migration::new(*v, Cow::Borrowed(*d), MigrationType::Simple, sql.into_sql_str(), false))
            .collect(),
    )
}

/// Connection settings beyond the URL.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// PostgreSQL `statement_timeout` (0 = none).
    pub statement_timeout_ms: u64,
    /// How long to wait for a connection from the pool.
    pub acquire_timeout_secs: u64,
}

impl PoolSettings {
    pub fn with_max(max_connections: u32) -> Self {
        Self { max_connections, statement_timeout_ms: 0, acquire_timeout_secs: 30 }
    }
}

/// Which SQLite connection a pool holds: the writer checkpoints nothing itself (see `checkpointer`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Reader,
    Writer,
}

fn pool_options(backend: Backend, settings: &PoolSettings, max_connections: u32, role: Role) -> AnyPoolOptions {
    let statement_timeout = settings.statement_timeout_ms;
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(settings.acquire_timeout_secs.max(1)))
        // A broken connection surfaces as an error on use; a ping before every acquire would cost a
        // round trip on every query.
        .test_before_acquire(false)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // WAL lets readers run beside the single writer; NORMAL sync is durable across
                    // process crashes (not power loss) in WAL mode; wait for the write lock instead of failing.
                    conn.execute(
                        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON; \
                         PRAGMA journal_size_limit=67108864;",
                    )
                    .await?;
                    if role == Role::Writer {
                        // A checkpoint inside a commit fsyncs the database file while every writer
                        // waits; the checkpointer task does it beside the writer instead.
                        conn.execute("PRAGMA wal_autocheckpoint=0;").await?;
                    }
                }
                if backend == Backend::Postgres && statement_timeout > 0 {
                    conn.execute(sqlx::AssertSqlSafe(format!("SET statement_timeout = {statement_timeout}"))).await?;
                }
                Ok(())
            })
        })
}

impl SqlStore {
    /// Connects (creating an SQLite file if needed) without migrating.
    pub async fn connect(url: &str, max_connections: u32) -> Result<SqlStore> {
        Self::connect_with(url, &PoolSettings::with_max(max_connections)).await
    }

    /// Connects with explicit pool settings.
    pub async fn connect_with(url: &str, settings: &PoolSettings) -> Result<SqlStore> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            let mut u = format!("sqlite:{rest}");
            if !u.contains("mode=") {
                u.push_str(if u.contains('?') { "&mode=rwc" } else { "?mode=rwc" });
            }
            (Backend::Sqlite, u)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let pool = pool_options(backend, settings, settings.max_connections.max(1), Role::Reader).connect(&url).await?;
        // SQLite allows one writer at a time. Writes go through a pool of exactly one connection, so
        // they queue in the pool (cheap) instead of in SQLite's busy handler (sleep-and-retry).
        let (writer, rotations) = match backend {
            Backend::Sqlite => {
                let writer = pool_options(backend, settings, 1, Role::Writer).connect(&url).await?;
                tokio::spawn(checkpointer(pool.clone()));
                let (tx, rx) = mpsc::channel(4096);
                tokio::spawn(rotation_committer(writer.clone(), rx));
                (writer, Some(tx))
            }
            Backend::Postgres => (pool.clone(), None),
        };
        Ok(SqlStore { pool, writer, backend, rotations })
    }

    /// Applies pending migrations (versioned, recorded in `_sqlx_migrations`).
    pub async fn migrate(&self) -> Result<()> {
        migrator(self.backend).run(&self.writer).await?;
        Ok(())
    }

    /// Runs one administrative statement (test set-up: schemas).
    pub async fn execute_ddl(&self, sql: &str) -> Result<()> {
        self.writer.execute(sqlx::AssertSqlSafe(sql.to_owned())).await?;
        Ok(())
    }

    /// A write transaction on the writer. SQLite takes the write lock up front, so two writers
    /// queue instead of failing on a lock upgrade.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.writer.begin().await?,
        })
    }

    /// Runs one atomic compare-and-set write in one round trip and says whether it applied: on SQLite
    /// a `BEGIN IMMEDIATE … COMMIT` batch whose `SELECT changes() AS applied` row reports the last
    /// insert (rolled back if any statement fails); on PostgreSQL one statement's row count.
    ///
    /// It runs in a task of its own, so a request dropped half-way (a client hanging up) cannot leave
    /// the batch half-executed on a pooled connection: the outcome is decided once it starts.
    async fn cas_write(&self, q: sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments>) -> Result<bool> {
        let (writer, backend) = (self.writer.clone(), self.backend);
        let task = tokio::spawn(async move {
            let mut conn = writer.acquire().await?;
            match backend {
                Backend::Postgres => Ok(q.execute(&mut *conn).await?.rows_affected() > 0),
                // fetch_all, not fetch_optional: the stream must run to the end so COMMIT executes.
                Backend::Sqlite => match q.fetch_all(&mut *conn).await {
                    Ok(rows) => Ok(rows.first().map(|r| r.try_get::<i64, _>("applied")).transpose()?.unwrap_or(0) > 0),
                    Err(e) => {
                        let _ = conn.execute("ROLLBACK").await;
                        Err(StoreError::from(e))
                    }
                },
            }
        });
        task.await.map_err(|e| StoreError::Corrupt(format!("write task failed: {e}")))?
    }
}

/// Copies committed pages from SQLite's write-ahead log into the database file, on a reader
/// connection, a few times a second. A PASSIVE checkpoint never takes the write lock, so the writer
/// keeps committing while the file is synced; the next write after a complete checkpoint starts the
/// log from its beginning again, and `journal_size_limit` trims a log a burst made large.
async fn checkpointer(pool: AnyPool) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            break;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_all(&pool).await {
            tracing::debug!(error = %e, "SQLite checkpoint failed; retrying");
        }
    }
}

fn scopes_of(row: &AnyRow, col: &str) -> Result<ScopeSet> {
    Ok(ScopeSet::parse_lenient(&row.try_get::<String, _>(col)?))
}

fn grant_from_row(row: &AnyRow) -> Result<Grant> {
    Ok(Grant {
        id: SessionId::from_string(row.try_get::<String, _>("s_id")?),
        account_id: AccountId::from_string(row.try_get::<String, _>("s_account_id")?),
        client_id: ClientId::from_string(row.try_get::<String, _>("s_client_id")?),
        scopes: scopes_of(row, "s_scopes")?,
        restrictions: restrictions_of(row, "s_restrictions")?,
        kind: GrantKind::parse(&row.try_get::<String, _>("s_kind")?)
            .ok_or_else(|| StoreError::Corrupt("bad session kind".into()))?,
        resource: row.try_get("s_resource")?,
        auth_time: row.try_get("s_auth_time")?,
        created_at: row.try_get("s_created_at")?,
        revoked_at: row.try_get("s_revoked_at")?,
    })
}

const GRANT_COLUMNS: &str = "s.id AS s_id, s.account_id AS s_account_id, s.client_id AS s_client_id, \
     s.scopes AS s_scopes, s.resource AS s_resource, s.auth_time AS s_auth_time, \
     s.created_at AS s_created_at, s.revoked_at AS s_revoked_at, s.restrictions AS s_restrictions, s.kind AS s_kind";

fn restrictions_of(row: &AnyRow, col: &str) -> Result<Restrictions> {
    Restrictions::from_json(&row.try_get::<String, _>(col)?).ok_or_else(|| StoreError::Corrupt(format!("bad {col}")))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[async_trait]
impl AccountStore for SqlStore {
    async fn create_account(&self, a: &Account) -> Result<()> {
        let r = sqlx::query("INSERT INTO accounts (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(a.id.as_str())
            .bind(&a.email)
            .bind(a.password_hash.clone())
            .bind(a.created_at)
            .execute(&self.writer)
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict("an account with this email")),
            Err(e) => Err(e.into()),
        }
    }

    async fn account_by_email(&self, email: &str) -> Result<Option<Account>> {
        let row = sqlx::query("SELECT id, email, password_hash, created_at FROM accounts WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| account_from_row(&r)).transpose()
    }

    async fn account(&self, id: &AccountId) -> Result<Option<Account>> {
        let row = sqlx::query("SELECT id, email, password_hash, created_at FROM accounts WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| account_from_row(&r)).transpose()
    }
}

fn account_from_row(r: &AnyRow) -> Result<Account> {
    Ok(Account {
        id: AccountId::from_string(r.try_get::<String, _>("id")?),
        email: r.try_get("email")?,
        password_hash: r.try_get("password_hash")?,
        created_at: r.try_get("created_at")?,
    })
}

const CLIENT_COLUMNS: &str = "id, name, client_type, role, origin, redirect_uris, allowed_scopes, allowed_providers, \
     domains, branding, secret_bcrypt, secret_sealed, owner_account_id, created_at, updated_at";

fn json_col<T: serde::de::DeserializeOwned>(r: &AnyRow, col: &str) -> Result<T> {
    serde_json::from_str(&r.try_get::<String, _>(col)?).map_err(|_| StoreError::Corrupt(format!("bad JSON in {col}")))
}

fn opt_json_col<T: serde::de::DeserializeOwned>(r: &AnyRow, col: &str) -> Result<Option<T>> {
    match r.try_get::<Option<String>, _>(col)? {
        Some(s) => serde_json::from_str(&s).map(Some).map_err(|_| StoreError::Corrupt(format!("bad JSON in {col}"))),
        None => Ok(None),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn client_from_row(r: &AnyRow) -> Result<Client> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("client: bad {what}"));
    let bcrypt: Option<String> = r.try_get("secret_bcrypt")?;
    let sealed: Option<Vec<u8>> = r.try_get("secret_sealed")?;
    Ok(Client {
        id: ClientId::from_string(r.try_get::<String, _>("id")?),
        name: r.try_get("name")?,
        client_type: ClientType::parse(&r.try_get::<String, _>("client_type")?).ok_or_else(|| corrupt("type"))?,
        role: ClientRole::parse(&r.try_get::<String, _>("role")?).ok_or_else(|| corrupt("role"))?,
        origin: ClientOrigin::parse(&r.try_get::<String, _>("origin")?).ok_or_else(|| corrupt("origin"))?,
        redirect_uris: json_col(r, "redirect_uris")?,
        allowed_scopes: scopes_of(r, "allowed_scopes")?,
        allowed_providers: opt_json_col(r, "allowed_providers")?,
        domains: json_col(r, "domains")?,
        branding: opt_json_col(r, "branding")?,
        secret: match (bcrypt, sealed) {
            (Some(bcrypt), Some(sealed)) => Some(StoredSecret { bcrypt, sealed }),
            _ => None,
        },
        owner: r.try_get::<Option<String>, _>("owner_account_id")?.map(AccountId::from_string),
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

#[async_trait]
impl ClientStore for SqlStore {
    async fn insert_client(&self, c: &Client) -> Result<()> {
        sqlx::query(
            "INSERT INTO clients (id, name, client_type, role, origin, redirect_uris, allowed_scopes, allowed_providers, \
             domains, branding, secret_bcrypt, secret_sealed, owner_account_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(c.id.as_str())
        .bind(&c.name)
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
        .bind(c.updated_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn client(&self, id: &ClientId) -> Result<Option<Client>> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE id = $1 AND deleted_at IS NULL");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.as_str()).fetch_optional(&self.pool).await?;
        row.map(|r| client_from_row(&r)).transpose()
    }

    async fn list_clients(&self, owner: Option<&AccountId>) -> Result<Vec<Client>> {
        let rows = match owner {
            Some(o) => {
                let sql = format!(
                    "SELECT {CLIENT_COLUMNS} FROM clients WHERE owner_account_id = $1 AND deleted_at IS NULL ORDER BY created_at, id"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(o.as_str()).fetch_all(&self.pool).await?
            }
            None => {
                let sql = format!(
                    "SELECT {CLIENT_COLUMNS} FROM clients WHERE deleted_at IS NULL AND id <> 'cli_personal_access_token' \
                     ORDER BY created_at, id"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?
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
        .await?;
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
            .await?;
        sqlx::query(
            "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE client_id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(RevocationReason::ClientDeleted.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn session(&self, tenant: &TenantId, id: &SessionId) -> Result<Option<Grant>> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM sessions s WHERE s.id = $1 AND s.account_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.as_str())
            .bind(tenant.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| grant_from_row(&r)).transpose()
    }

    async fn session_status(&self, id: &SessionId) -> Result<Option<SessionStatus>> {
        let row = sqlx::query(
            "SELECT s.account_id, a.email, s.client_id, s.revoked_at, s.restrictions FROM sessions s \
             JOIN accounts a ON a.id = s.account_id WHERE s.id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(SessionStatus {
            account_id: AccountId::from_string(r.try_get::<String, _>("account_id")?),
            email: r.try_get("email")?,
            client_id: ClientId::from_string(r.try_get::<String, _>("client_id")?),
            active: r.try_get::<Option<i64>, _>("revoked_at")?.is_none(),
            restrictions: restrictions_of(&r, "restrictions")?,
        }))
    }

    async fn list_sessions(&self, tenant: &TenantId) -> Result<Vec<SessionSummary>> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS}, c.name AS client_name FROM sessions s JOIN clients c ON c.id = s.client_id \
             WHERE s.account_id = $1 AND s.revoked_at IS NULL ORDER BY s.created_at DESC, s.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant.as_str()).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok(SessionSummary { grant: grant_from_row(r)?, client_name: r.try_get("client_name")? }))
            .collect()
    }

    async fn revoke_session(&self, id: &SessionId, reason: RevocationReason, now: UnixTime) -> Result<bool> {
        let r = revoke_session_query(id, reason, now).execute(&self.writer).await?;
        Ok(r.rows_affected() == 1)
    }
}

/// Revokes one live session (a no-op for one already revoked: the first reason stays).
fn revoke_session_query(
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
        .await?;
        Ok(())
    }

    async fn code(&self, hash: &[u8]) -> Result<Option<AuthorizationCode>> {
        let row = sqlx::query(
            "SELECT hash, client_id, account_id, redirect_uri, code_challenge, scopes, resource, nonce, auth_time, expires_at, used_at, session_id, restrictions \
             FROM authorization_codes WHERE hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(AuthorizationCode {
            hash: r.try_get("hash")?,
            client_id: ClientId::from_string(r.try_get::<String, _>("client_id")?),
            account_id: AccountId::from_string(r.try_get::<String, _>("account_id")?),
            redirect_uri: r.try_get("redirect_uri")?,
            challenge: CodeChallenge::from_stored(r.try_get("code_challenge")?),
            scopes: scopes_of(&r, "scopes")?,
            restrictions: restrictions_of(&r, "restrictions")?,
            resource: r.try_get("resource")?,
            nonce: r.try_get("nonce")?,
            auth_time: r.try_get("auth_time")?,
            expires_at: r.try_get("expires_at")?,
            used_at: r.try_get("used_at")?,
            session_id: r.try_get::<Option<String>, _>("session_id")?.map(SessionId::from_string),
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
            .bind(grant.kind.as_str());
        self.cas_write(q).await
    }
}

// A code redemption is one compare-and-set: mark the code used, create the session and its first
// refresh token — all or nothing. On SQLite it is one batch in one round trip to the database
// thread (each INSERT runs only if the statement before it changed a row); on PostgreSQL one statement.
const REDEEM_SQLITE: &str = "BEGIN IMMEDIATE;
UPDATE authorization_codes SET used_at = $1, session_id = $2 WHERE hash = $3 AND used_at IS NULL;
INSERT INTO sessions (id, account_id, client_id, scopes, resource, auth_time, created_at, revoked_at, restrictions, kind)
    SELECT $2, $4, $5, $6, $7, $8, $9, NULL, $15, $16 WHERE changes() = 1;
INSERT INTO refresh_tokens (id, hash, session_id, client_id, scopes, expires_at, used_at, parent_id, created_at)
    SELECT $10, $11, $2, $5, $12, $13, NULL, NULL, $14 WHERE changes() = 1;
SELECT changes() AS applied;
COMMIT;";

const REDEEM_POSTGRES: &str = "WITH c AS (
    UPDATE authorization_codes SET used_at = $1, session_id = $2 WHERE hash = $3 AND used_at IS NULL RETURNING 1
), s AS (
    INSERT INTO sessions (id, account_id, client_id, scopes, resource, auth_time, created_at, revoked_at, restrictions, kind)
    SELECT $2, $4, $5, $6, $7, $8, $9, NULL, $15, $16 FROM c RETURNING id
)
INSERT INTO refresh_tokens (id, hash, session_id, client_id, scopes, expires_at, used_at, parent_id, created_at)
SELECT $10, $11, s.id, $5, $12, $13, NULL, NULL, $14 FROM s";

// Rotation: mark the old token used and store its successor, only if the old one was unused.
/// One rotation in SQLite: marks the old token used if nobody has, inserts its successor only then,
/// and reports whether it applied. Ten anonymous parameters: now, old id, the new token's id, hash,
/// session, client, scopes, expiry, old id again (the parent), creation time.
const ROTATE_SQLITE_ONE: &str = "UPDATE refresh_tokens SET used_at = ? WHERE id = ? AND used_at IS NULL;
INSERT INTO refresh_tokens (id, hash, session_id, client_id, scopes, expires_at, used_at, parent_id, created_at)
    SELECT ?, ?, ?, ?, ?, ?, NULL, ?, ? WHERE changes() = 1;
SELECT changes() AS applied;
";

/// A rotation waiting for the group committer, with where its outcome goes.
struct Rotation {
    old: RefreshTokenId,
    new: RefreshToken,
    now: UnixTime,
    done: oneshot::Sender<Result<bool>>,
}

/// At most this many rotations share a transaction (each distinct size is one cached statement).
const ROTATIONS_PER_COMMIT: usize = 16;

/// Group commit for refresh-token rotations on SQLite. Rotations that arrive while a transaction is
/// being written wait and then go together into the next one: one `BEGIN IMMEDIATE … COMMIT`
/// round trip to the single writer for many exchanges instead of one each. Each rotation keeps its
/// own compare-and-set (two exchanges of one token in the same batch: the second finds it used).
/// If a batch fails, its rotations are retried one by one, so one bad row cannot fail the others.
/// It runs as a task of its own: a request that hangs up cannot leave a batch half-done.
async fn rotation_committer(writer: AnyPool, mut rx: mpsc::Receiver<Rotation>) {
    let mut batch = Vec::with_capacity(ROTATIONS_PER_COMMIT);
    while rx.recv_many(&mut batch, ROTATIONS_PER_COMMIT).await > 0 {
        match rotate_batch(&writer, &batch).await {
            Ok(applied) => {
                for (r, a) in batch.drain(..).zip(applied) {
                    let _ = r.done.send(Ok(a));
                }
            }
            Err(e) if batch.len() == 1 => {
                let _ = batch.remove(0).done.send(Err(e));
            }
            Err(_) => {
                for r in batch.drain(..) {
                    let outcome = rotate_batch(&writer, std::slice::from_ref(&r)).await.map(|a| a[0]);
                    let _ = r.done.send(outcome);
                }
            }
        }
    }
}

/// Runs rotations in one transaction; says for each whether it applied.
async fn rotate_batch(writer: &AnyPool, batch: &[Rotation]) -> Result<Vec<bool>> {
    let mut sql = String::with_capacity(16 + batch.len() * ROTATE_SQLITE_ONE.len() + 8);
    sql.push_str("BEGIN IMMEDIATE;\n");
    for _ in batch {
        sql.push_str(ROTATE_SQLITE_ONE);
    }
    sql.push_str("COMMIT;");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for r in batch {
        q = q
            .bind(r.now)
            .bind(r.old.as_str().to_owned())
            .bind(r.new.id.as_str().to_owned())
            .bind(r.new.hash.clone())
            .bind(r.new.session_id.as_str().to_owned())
            .bind(r.new.client_id.as_str().to_owned())
            .bind(r.new.scopes.to_string())
            .bind(r.new.expires_at)
            .bind(r.old.as_str().to_owned())
            .bind(r.new.created_at);
    }
    let mut conn = writer.acquire().await?;
    // fetch_all, not fetch_optional: the stream must run to the end so COMMIT executes.
    match q.fetch_all(&mut *conn).await {
        Ok(rows) if rows.len() == batch.len() => rows.iter().map(|r| Ok(r.try_get::<i64, _>("applied")? > 0)).collect(),
        Ok(rows) => Err(StoreError::Corrupt(format!("{} rotation results for {} rotations", rows.len(), batch.len()))),
        Err(e) => {
            let _ = conn.execute("ROLLBACK").await;
            Err(StoreError::from(e))
        }
    }
}

const ROTATE_POSTGRES: &str = "WITH u AS (
    UPDATE refresh_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL RETURNING id
)
INSERT INTO refresh_tokens (id, hash, session_id, client_id, scopes, expires_at, used_at, parent_id, created_at)
SELECT $3, $4, $5, $6, $7, $8, NULL, u.id, $9 FROM u";

fn refresh_from_row(r: &AnyRow) -> Result<RefreshToken> {
    Ok(RefreshToken {
        id: RefreshTokenId::from_string(r.try_get::<String, _>("id")?),
        hash: r.try_get("hash")?,
        session_id: SessionId::from_string(r.try_get::<String, _>("session_id")?),
        client_id: ClientId::from_string(r.try_get::<String, _>("client_id")?),
        scopes: scopes_of(r, "scopes")?,
        expires_at: r.try_get("expires_at")?,
        used_at: r.try_get("used_at")?,
        parent_id: r.try_get::<Option<String>, _>("parent_id")?.map(RefreshTokenId::from_string),
        created_at: r.try_get("created_at")?,
    })
}

#[async_trait]
impl RefreshTokenStore for SqlStore {
    async fn refresh_token(&self, hash: &[u8]) -> Result<Option<(RefreshToken, Grant)>> {
        let sql = format!(
            "SELECT r.id, r.hash, r.session_id, r.client_id, r.scopes, r.expires_at, r.used_at, r.parent_id, r.created_at, {GRANT_COLUMNS} \
             FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.hash = $1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(hash).fetch_optional(&self.pool).await?;
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
        .await?;
        row.map(|r| refresh_from_row(&r)).transpose()
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

#[async_trait]
impl ConsentStore for SqlStore {
    async fn has_consent(&self, tenant: &TenantId, client: &ClientId, grant: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 AS one FROM consents WHERE account_id = $1 AND client_id = $2 AND scopes = $3")
            .bind(tenant.as_str())
            .bind(client.as_str())
            .bind(grant)
            .fetch_optional(&self.pool)
            .await?;
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
        .await?;
        Ok(())
    }
}

#[async_trait]
impl SigningKeyStore for SqlStore {
    async fn signing_keys(&self, now: UnixTime) -> Result<Vec<StoredSigningKey>> {
        let rows = sqlx::query(
            "SELECT kid, alg, private_key, created_at, retire_after FROM signing_keys \
             WHERE retire_after IS NULL OR retire_after > $1 ORDER BY created_at DESC, kid DESC",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredSigningKey {
                    kid: KeyId::from_string(r.try_get::<String, _>("kid")?),
                    alg: r.try_get("alg")?,
                    sealed_private_key: r.try_get("private_key")?,
                    created_at: r.try_get("created_at")?,
                    retire_after: r.try_get("retire_after")?,
                })
            })
            .collect()
    }

    async fn insert_signing_key(&self, k: &StoredSigningKey) -> Result<()> {
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_key, created_at, retire_after) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(k.kid.as_str())
        .bind(&k.alg)
        .bind(&k.sealed_private_key)
        .bind(k.created_at)
        .bind(k.retire_after)
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl McpSessionStore for SqlStore {
    async fn create_mcp_session(&self, s: &McpSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO mcp_sessions (id, account_id, grant_id, protocol_version, client_name, created_at, expires_at, ended_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
        )
        .bind(&s.id)
        .bind(s.account_id.as_str())
        .bind(s.grant_id.as_str())
        .bind(&s.protocol_version)
        .bind(s.client_name.clone())
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn mcp_session(&self, tenant: &TenantId, id: &str) -> Result<Option<McpSession>> {
        let row = sqlx::query(
            "SELECT id, account_id, grant_id, protocol_version, client_name, created_at, expires_at, ended_at \
             FROM mcp_sessions WHERE id = $1 AND account_id = $2",
        )
        .bind(id)
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(McpSession {
            id: r.try_get("id")?,
            account_id: AccountId::from_string(r.try_get::<String, _>("account_id")?),
            grant_id: SessionId::from_string(r.try_get::<String, _>("grant_id")?),
            protocol_version: r.try_get("protocol_version")?,
            client_name: r.try_get("client_name")?,
            created_at: r.try_get("created_at")?,
            expires_at: r.try_get("expires_at")?,
            ended_at: r.try_get("ended_at")?,
        }))
    }

    async fn end_mcp_session(&self, tenant: &TenantId, id: &str, now: UnixTime) -> Result<bool> {
        let r =
            sqlx::query("UPDATE mcp_sessions SET ended_at = $1 WHERE id = $2 AND account_id = $3 AND ended_at IS NULL")
                .bind(now)
                .bind(id)
                .bind(tenant.as_str())
                .execute(&self.writer)
                .await?;
        Ok(r.rows_affected() == 1)
    }
}

const PAT_COLUMNS: &str = "p.id AS p_id, p.account_id AS p_account_id, p.session_id AS p_session_id, p.name AS p_name, \
     p.hash AS p_hash, p.created_at AS p_created_at, p.expires_at AS p_expires_at, p.revoked_at AS p_revoked_at";

fn pat_from_row(r: &AnyRow) -> Result<PersonalAccessToken> {
    Ok(PersonalAccessToken {
        id: r.try_get("p_id")?,
        account_id: AccountId::from_string(r.try_get::<String, _>("p_account_id")?),
        session_id: SessionId::from_string(r.try_get::<String, _>("p_session_id")?),
        name: r.try_get("p_name")?,
        hash: r.try_get("p_hash")?,
        created_at: r.try_get("p_created_at")?,
        expires_at: r.try_get("p_expires_at")?,
        revoked_at: r.try_get("p_revoked_at")?,
    })
}

#[async_trait]
impl PatStore for SqlStore {
    async fn create_pat(&self, pat: &PersonalAccessToken, grant: &Grant) -> Result<()> {
        let mut tx = self.begin_write().await?;
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
        .await?;
        sqlx::query(
            "INSERT INTO personal_access_tokens (id, account_id, session_id, name, hash, created_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
        )
        .bind(&pat.id)
        .bind(pat.account_id.as_str())
        .bind(pat.session_id.as_str())
        .bind(&pat.name)
        .bind(&pat.hash)
        .bind(pat.created_at)
        .bind(pat.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn pat_by_hash(&self, hash: &[u8]) -> Result<Option<(PersonalAccessToken, Grant, String)>> {
        let sql = format!(
            "SELECT {PAT_COLUMNS}, {GRANT_COLUMNS}, a.email AS a_email FROM personal_access_tokens p \
             JOIN sessions s ON s.id = p.session_id JOIN accounts a ON a.id = p.account_id WHERE p.hash = $1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(hash).fetch_optional(&self.pool).await?;
        row.map(|r| Ok((pat_from_row(&r)?, grant_from_row(&r)?, r.try_get("a_email")?))).transpose()
    }

    async fn list_pats(&self, tenant: &TenantId) -> Result<Vec<(PersonalAccessToken, Grant)>> {
        let sql = format!(
            "SELECT {PAT_COLUMNS}, {GRANT_COLUMNS} FROM personal_access_tokens p JOIN sessions s ON s.id = p.session_id \
             WHERE p.account_id = $1 AND p.revoked_at IS NULL ORDER BY p.created_at DESC, p.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant.as_str()).fetch_all(&self.pool).await?;
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
        .await?;
        let Some(r) = row else { return Ok(None) };
        let sid = SessionId::from_string(r.try_get::<String, _>("session_id")?);
        revoke_session_query(&sid, RevocationReason::PatRevoked, now).execute(&mut *tx).await?;
        tx.commit().await?;
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
        .await?;
        Ok(())
    }

    async fn operator_token_by_hash(&self, hash: &[u8]) -> Result<Option<OperatorToken>> {
        let row = sqlx::query("SELECT id, name, hash, created_at, revoked_at FROM operator_tokens WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(OperatorToken {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                hash: r.try_get("hash")?,
                created_at: r.try_get("created_at")?,
                revoked_at: r.try_get("revoked_at")?,
            })
        })
        .transpose()
    }

    async fn revoke_operator_token(&self, id: &str, now: UnixTime) -> Result<bool> {
        let r = sqlx::query("UPDATE operator_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() == 1)
    }
}

const AUDIT_COLUMNS: &str =
    "seq, id, at_ms, account_id, actor, kind, target, outcome, latency_ms, request_id, ip, details, prev_hash, hash";

fn audit_from_row(r: &AnyRow) -> Result<StoredAuditEvent> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("audit row: bad {what}"));
    Ok(StoredAuditEvent {
        seq: r.try_get("seq")?,
        event: AuditEvent {
            id: r.try_get("id")?,
            at_ms: r.try_get("at_ms")?,
            account_id: r.try_get::<Option<String>, _>("account_id")?.map(AccountId::from_string),
            actor: json_col(r, "actor")?,
            kind: r.try_get("kind")?,
            target: r.try_get("target")?,
            outcome: Outcome::parse(&r.try_get::<String, _>("outcome")?).ok_or_else(|| corrupt("outcome"))?,
            latency_ms: r.try_get("latency_ms")?,
            request_id: r.try_get("request_id")?,
            ip: r.try_get("ip")?,
            details: json_col(r, "details")?,
        },
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

/// Rows per multi-row INSERT. A batch of any size is split into statements of these sizes only (e.g. 91 =
/// 64 + 16 + 4 + 4 + 1 + 1 + 1), so the writer connection's statement cache holds four audit inserts,
/// not one per size from 1 to 64 (which would push everything else out of the cache and re-prepare
/// an 896-parameter statement on most batches).
const AUDIT_INSERT_SIZES: [usize; 4] = [64, 16, 4, 1];

/// The statement sizes a batch of `n` audit rows is written with, largest first.
fn audit_insert_sizes(mut n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    for size in AUDIT_INSERT_SIZES {
        while n >= size {
            out.push(size);
            n -= size;
        }
    }
    out
}

/// `INSERT INTO audit_events … VALUES (…), (…)` for `rows` rows of 14 parameters. SQLite gets
/// anonymous `?` placeholders: binding a numbered `$n` makes SQLite look its name up in a list of all
/// the statement's names (sqlx asks for each), which is quadratic in the parameter count.
fn audit_insert_sql(backend: Backend, rows: usize) -> String {
    let mut sql = String::with_capacity(200 + rows * 60);
    sql.push_str(
        "INSERT INTO audit_events (seq, id, at_ms, account_id, actor, kind, target, outcome, latency_ms, request_id, ip, details, prev_hash, hash) VALUES ",
    );
    for r in 0..rows {
        sql.push_str(if r > 0 { ", (" } else { "(" });
        for k in 1..=14 {
            if k > 1 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    use std::fmt::Write;
                    let _ = write!(sql, "${}", r * 14 + k);
                }
            }
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
#[test]
fn audit_batches_are_written_with_four_statement_sizes() {
    assert_eq!(audit_insert_sizes(91), vec![64, 16, 4, 4, 1, 1, 1]);
    assert_eq!(audit_insert_sizes(0), Vec::<usize>::new());
    for n in 0..=1024 {
        let sizes = audit_insert_sizes(n);
        assert_eq!(sizes.iter().sum::<usize>(), n);
        assert!(sizes.iter().all(|s| AUDIT_INSERT_SIZES.contains(s)));
    }
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn append_audit(&self, events: &[AuditEvent], link: &ChainLink) -> Result<Vec<ChainPosition>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let head_sql = match self.backend {
            Backend::Sqlite => "SELECT head_seq, head_hash FROM audit_chain WHERE id = 1",
            // Row lock: appends from several instances queue here, so the chain never forks.
            Backend::Postgres => "SELECT head_seq, head_hash FROM audit_chain WHERE id = 1 FOR UPDATE",
        };
        let head = sqlx::query(head_sql).fetch_one(&mut *tx).await?;
        let mut seq: i64 = head.try_get("head_seq")?;
        let mut prev: String = head.try_get("head_hash")?;
        let mut stored = Vec::with_capacity(events.len());
        for e in events {
            seq += 1;
            let hash = link(&prev, seq, e);
            stored.push(ChainPosition { seq, prev_hash: std::mem::replace(&mut prev, hash.clone()), hash });
        }
        // Multi-row INSERTs (one statement per chunk, not per event): the writer keeps up with tens of
        // thousands of events per second. 64 rows x 14 parameters stays far below every backend's limit.
        let mut at = 0;
        for size in audit_insert_sizes(events.len()) {
            let (chunk, positions) = (&events[at..at + size], &stored[at..at + size]);
            at += size;
            let mut q = sqlx::query(sqlx::AssertSqlSafe(audit_insert_sql(self.backend, size)));
            for (e, s) in chunk.iter().zip(positions) {
                q = q
                    .bind(s.seq)
                    .bind(e.id.clone())
                    .bind(e.at_ms)
                    .bind(e.account_id.as_ref().map(|a| a.as_str().to_owned()))
                    .bind(to_json(&e.actor)?)
                    .bind(e.kind.clone())
                    .bind(e.target.clone())
                    .bind(e.outcome.as_str())
                    .bind(e.latency_ms)
                    .bind(e.request_id.clone())
                    .bind(e.ip.clone())
                    .bind(to_json(&e.details)?)
                    .bind(s.prev_hash.clone())
                    .bind(s.hash.clone());
            }
            q.execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE audit_chain SET head_seq = $1, head_hash = $2 WHERE id = 1")
            .bind(seq)
            .bind(&prev)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn query_audit(&self, tenant: Option<&TenantId>, q: &AuditQuery) -> Result<Vec<StoredAuditEvent>> {
        // One statement for every filter combination: unused filters compare against NULL.
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE \
             ($1 IS NULL OR account_id = $1) AND ($2 IS NULL OR at_ms >= $2) AND ($3 IS NULL OR at_ms < $3) \
             AND ($4 IS NULL OR kind = $4) AND ($5 IS NULL OR seq > $5) ORDER BY seq LIMIT $6"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.map(|t| t.as_str().to_owned()))
            .bind(q.since_ms)
            .bind(q.until_ms)
            .bind(q.kind.clone())
            .bind(q.after_seq)
            .bind(q.limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn audit_chain_state(&self) -> Result<ChainState> {
        let r = sqlx::query("SELECT head_seq, head_hash, anchor_seq, anchor_hash FROM audit_chain WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(ChainState {
            head_seq: r.try_get("head_seq")?,
            head_hash: r.try_get("head_hash")?,
            anchor_seq: r.try_get("anchor_seq")?,
            anchor_hash: r.try_get("anchor_hash")?,
        })
    }

    async fn audit_range(&self, after_seq: i64, limit: i64) -> Result<Vec<StoredAuditEvent>> {
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(after_seq).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn prune_audit(&self, before_ms: Option<i64>, max_rows: Option<i64>) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let head_sql = match self.backend {
            Backend::Sqlite => "SELECT head_seq, anchor_seq FROM audit_chain WHERE id = 1",
            Backend::Postgres => "SELECT head_seq, anchor_seq FROM audit_chain WHERE id = 1 FOR UPDATE",
        };
        let head = sqlx::query(head_sql).fetch_one(&mut *tx).await?;
        let head_seq: i64 = head.try_get("head_seq")?;
        let mut cutoff: i64 = head.try_get("anchor_seq")?;
        if let Some(max) = max_rows {
            cutoff = cutoff.max(head_seq - max.max(0));
        }
        if let Some(before) = before_ms {
            let r = sqlx::query("SELECT MAX(seq) AS s FROM audit_events WHERE at_ms < $1")
                .bind(before)
                .fetch_one(&mut *tx)
                .await?;
            if let Some(s) = r.try_get::<Option<i64>, _>("s")? {
                cutoff = cutoff.max(s);
            }
        }
        let anchor = sqlx::query("SELECT seq, hash FROM audit_events WHERE seq <= $1 ORDER BY seq DESC LIMIT 1")
            .bind(cutoff)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(anchor) = anchor else {
            tx.rollback().await?;
            return Ok(0);
        };
        let (anchor_seq, anchor_hash): (i64, String) = (anchor.try_get("seq")?, anchor.try_get("hash")?);
        let deleted = sqlx::query("DELETE FROM audit_events WHERE seq <= $1")
            .bind(anchor_seq)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("UPDATE audit_chain SET anchor_seq = $1, anchor_hash = $2 WHERE id = 1")
            .bind(anchor_seq)
            .bind(&anchor_hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted)
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn purge_expired(&self, now: UnixTime) -> Result<u64> {
        let codes = sqlx::query("DELETE FROM authorization_codes WHERE expires_at < $1")
            .bind(now - 86_400)
            .execute(&self.writer)
            .await?
            .rows_affected();
        let tokens = sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < $1")
            .bind(now)
            .execute(&self.writer)
            .await?
            .rows_affected();
        let mcp = sqlx::query("DELETE FROM mcp_sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&self.writer)
            .await?
            .rows_affected();
        Ok(codes + tokens + mcp)
    }
}
