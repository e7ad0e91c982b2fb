//! Connections: the reader pool and, on SQLite, the single writer; the write-transaction and
//! compare-and-set helpers every aggregate uses; readiness and purging.

use std::sync::Arc;

use async_trait::async_trait;
use bk_domain::UnixTime;
use bk_domain::ports::{Result, Store, StoreError};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor, Row};
use tokio::sync::mpsc;

use crate::checkpoint::{WalBound, checkpointer, writer_hook};
use crate::migrations::migrator;
use crate::rotation::{Rotation, rotation_committer};
use crate::rows::{Db, db_error};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct SqlStore {
    /// Reads (several connections).
    pub(crate) pool: AnyPool,
    /// Writes: the same pool on PostgreSQL, a single connection on SQLite.
    pub(crate) writer: AnyPool,
    pub(crate) backend: Backend,
    /// SQLite: refresh-token rotations waiting for the group committer (see `rotation_committer`).
    pub(crate) rotations: Option<mpsc::Sender<Rotation>>,
}

/// One pool's connections (see [`SqlStore::pool_stats`]).
#[derive(Clone, Copy, Debug)]
pub struct PoolStats {
    pub name: &'static str,
    /// Open connections.
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

/// The default bound of SQLite's write-ahead log, and the least one accepted.
pub const DEFAULT_WAL_LIMIT_BYTES: u64 = 64 * 1024 * 1024;
const MIN_WAL_LIMIT_BYTES: u64 = 1024 * 1024;

/// Connection settings beyond the URL.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// PostgreSQL `statement_timeout` (0 = none).
    pub statement_timeout_ms: u64,
    /// How long to wait for a connection from the pool.
    pub acquire_timeout_secs: u64,
    /// SQLite: the size the write-ahead log is kept below (0 = the default, 64 MiB).
    pub sqlite_wal_limit_bytes: u64,
}

impl PoolSettings {
    pub fn with_max(max_connections: u32) -> Self {
        Self { max_connections, statement_timeout_ms: 0, acquire_timeout_secs: 30, sqlite_wal_limit_bytes: 0 }
    }

    fn wal_limit(&self) -> u64 {
        match self.sqlite_wal_limit_bytes {
            0 => DEFAULT_WAL_LIMIT_BYTES,
            n => n.max(MIN_WAL_LIMIT_BYTES),
        }
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
    let wal_limit = settings.wal_limit();
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
                    conn.execute(sqlx::AssertSqlSafe(format!(
                        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON; \
                         PRAGMA journal_size_limit={wal_limit};"
                    )))
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
        // Opening a database whose log a crash (or an older version) left large makes SQLite read the
        // whole log first; that can take a while, and is said so rather than timed out.
        let wal_path = match backend {
            Backend::Sqlite => Some(wal_path_of(&url)?),
            Backend::Postgres => None,
        };
        let left_behind = wal_path.as_ref().and_then(|p| std::fs::metadata(p).ok()).map_or(0, |m| m.len());
        let opening = std::time::Instant::now();
        if left_behind > settings.wal_limit() {
            tracing::warn!(wal_bytes = left_behind, "opening the database: recovering a large write-ahead log first");
        }
        let pool =
            pool_options(backend, settings, settings.max_connections.max(1), Role::Reader).connect(&url).await.db()?;
        if left_behind > settings.wal_limit() {
            tracing::warn!(
                wal_bytes = left_behind,
                took_ms = opening.elapsed().as_millis() as u64,
                "the write-ahead log was recovered"
            );
        }
        // SQLite allows one writer at a time. Writes go through a pool of exactly one connection, so
        // they queue in the pool (cheap) instead of in SQLite's busy handler (sleep-and-retry).
        let (writer, rotations) = match backend {
            Backend::Sqlite => {
                let bound =
                    Arc::new(WalBound { wal_path: wal_path.unwrap_or_default(), limit_bytes: settings.wal_limit() });
                let writer = pool_options(backend, settings, 1, Role::Writer)
                    .before_acquire(writer_hook(bound.clone()))
                    .connect(&url)
                    .await
                    .db()?;
                tokio::spawn(checkpointer(pool.clone(), writer.clone(), bound));
                let (tx, rx) = mpsc::channel(4096);
                tokio::spawn(rotation_committer(writer.clone(), rx));
                (writer, Some(tx))
            }
            Backend::Postgres => (pool.clone(), None),
        };
        Ok(SqlStore { pool, writer, backend, rotations })
    }

    /// Each connection pool's use now (`/metrics`): reads, and on SQLite the single writer.
    pub fn pool_stats(&self) -> Vec<PoolStats> {
        let stat = |name: &'static str, p: &AnyPool| PoolStats {
            name,
            size: p.size(),
            idle: p.num_idle() as u32,
            max: p.options().get_max_connections(),
        };
        match self.backend {
            Backend::Sqlite => vec![stat("read", &self.pool), stat("write", &self.writer)],
            Backend::Postgres => vec![stat("shared", &self.pool)],
        }
    }

    /// Ends cleanly: on SQLite, checkpoints everything and empties the write-ahead log, so the next
    /// start opens at once; then closes every connection. Call after the last write.
    pub async fn close(&self) {
        if self.backend == Backend::Sqlite {
            match crate::checkpoint::truncate(&self.writer).await {
                Ok(true) => tracing::info!("database closed; its write-ahead log checkpointed and emptied"),
                Ok(false) => tracing::warn!("database closed; a reader kept part of the write-ahead log"),
                Err(e) => tracing::warn!(error = %e, "checkpointing the database at shutdown failed"),
            }
        }
        self.writer.close().await;
        self.pool.close().await;
    }

    /// Applies pending migrations (versioned, recorded in `_sqlx_migrations`).
    pub async fn migrate(&self) -> Result<()> {
        migrator(self.backend).run(&self.writer).await.map_err(|e| StoreError::Migrate(Box::new(e)))?;
        Ok(())
    }

    /// Runs one administrative statement (test set-up: schemas).
    pub async fn execute_ddl(&self, sql: &str) -> Result<()> {
        self.writer.execute(sqlx::AssertSqlSafe(sql.to_owned())).await.db()?;
        Ok(())
    }

    /// A write transaction on the writer. SQLite takes the write lock up front, so two writers
    /// queue instead of failing on a lock upgrade.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await.db()?,
            Backend::Postgres => self.writer.begin().await.db()?,
        })
    }

    /// Runs one atomic compare-and-set write in one round trip and says whether it applied: on SQLite
    /// a `BEGIN IMMEDIATE … COMMIT` batch whose `SELECT changes() AS applied` row reports the last
    /// insert (rolled back if any statement fails); on PostgreSQL one statement's row count.
    ///
    /// It runs in a task of its own, so a request dropped half-way (a client hanging up) cannot leave
    /// the batch half-executed on a pooled connection: the outcome is decided once it starts.
    pub(crate) async fn cas_write(
        &self,
        q: sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<bool> {
        let (writer, backend) = (self.writer.clone(), self.backend);
        let task = tokio::spawn(async move {
            let mut conn = writer.acquire().await.db()?;
            match backend {
                Backend::Postgres => Ok(q.execute(&mut *conn).await.db()?.rows_affected() > 0),
                // fetch_all, not fetch_optional: the stream must run to the end so COMMIT executes.
                Backend::Sqlite => match q.fetch_all(&mut *conn).await {
                    Ok(rows) => {
                        Ok(rows.first().map(|r| r.try_get::<i64, _>("applied")).transpose().db()?.unwrap_or(0) > 0)
                    }
                    Err(e) => {
                        let _ = conn.execute("ROLLBACK").await;
                        Err(db_error(e))
                    }
                },
            }
        });
        task.await.map_err(|e| StoreError::Corrupt(format!("write task failed: {e}")))?
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
        sqlx::query("SELECT 1").execute(&self.pool).await.db()?;
        Ok(())
    }

    async fn purge_expired(&self, now: UnixTime) -> Result<u64> {
        // Codes are kept a day past expiry so that a late replay still revokes what they issued;
        // browser sessions past their cookie's expiry can no longer be presented; an emailed link
        // past expiry can only be told apart from an unknown one, which is not worth keeping it for.
        let mut deleted = 0;
        for (table, cutoff) in [
            ("authorization_codes", now - 86_400),
            ("refresh_tokens", now),
            ("mcp_sessions", now),
            ("browser_sessions", now),
            ("connection_flows", now),
            ("handoff_codes", now),
            ("email_tokens", now),
            ("webauthn_ceremonies", now),
            ("siwe_nonces", now),
            ("idp_login_states", now),
        ] {
            // `table` is one of the constant names above.
            deleted += sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE expires_at < $1")))
                .bind(cutoff)
                .execute(&self.writer)
                .await
                .db()?
                .rows_affected();
        }
        // Bridge mode: a token held for a code that expired unredeemed goes now, not with the code.
        deleted += sqlx::query(
            "DELETE FROM session_bridges WHERE session_id IS NULL \
             AND code_hash IN (SELECT hash FROM authorization_codes WHERE expires_at < $1 AND used_at IS NULL)",
        )
        .bind(now)
        .execute(&self.writer)
        .await
        .db()?
        .rows_affected();
        Ok(deleted)
    }
}

/// The write-ahead log of the SQLite database at `url` (`<file>-wal`).
fn wal_path_of(url: &str) -> Result<std::path::PathBuf> {
    use std::str::FromStr;
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).map_err(db_error)?;
    let mut wal = options.get_filename().as_os_str().to_owned();
    wal.push("-wal");
    Ok(wal.into())
}
