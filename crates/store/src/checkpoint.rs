//! SQLite's write-ahead log: copied into the database file beside the writer, never inside its
//! commits, and kept below its bound.
//!
//! A PASSIVE checkpoint copies pages without blocking anyone, but the log only starts again from its
//! beginning when a writer finds no reader still using it; under a steady mix of reads and writes
//! there always is one, so a log checkpointed only passively grows without end (checkpoint
//! starvation). So the log is emptied with TRUNCATE checkpoints, which wait (at most
//! `FORCE_WAIT_MS`) for the readers of older snapshots to finish and leave a zero-length file — whose
//! size then is the log's size, one `stat` away:
//! - the checkpointer, a few times a second, copies passively on a reader connection and empties the
//!   log once it holds a quarter of its bound (taking its turn on the writer connection, so it never
//!   races a write for the lock);
//! - every write, when the writer connection is taken from its pool, empties a log past half its
//!   bound first, so writes cannot outrun the checkpointer (`writer_hook`).
//!
//! The bound holds unless a reader keeps one snapshot open for longer than `FORCE_WAIT_MS` while the
//! log grows past it; then the next write tries again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::AnyConnection;
use sqlx::pool::PoolConnectionMetadata;
use sqlx::{AnyPool, Executor, Row};

/// Between checkpoints while the log is small, and while it is filling up.
const CALM: Duration = Duration::from_millis(250);
const BUSY: Duration = Duration::from_millis(50);
/// How long emptying the log may hold back the write that asked for it while older readers finish.
const FORCE_WAIT_MS: u32 = 250;
/// The busy timeout every other statement runs with (see `pool_options`).
const NORMAL_BUSY_TIMEOUT_MS: u32 = 10_000;

/// Where the log is and how large it may grow.
pub(crate) struct WalBound {
    pub(crate) wal_path: PathBuf,
    pub(crate) limit_bytes: u64,
}

impl WalBound {
    /// The log file's size: what it holds, since it is only ever emptied by truncation.
    fn size(&self) -> u64 {
        std::fs::metadata(&self.wal_path).map(|m| m.len()).unwrap_or(0)
    }
}

/// `pool`: reader connections (passive checkpoints); `writer`: the single writer connection.
pub(crate) async fn checkpointer(pool: AnyPool, writer: AnyPool, bound: Arc<WalBound>) {
    let mut warned = false;
    loop {
        let pause = match checkpoint_once(&pool, &writer, &bound, &mut warned).await {
            Ok(size) if size >= bound.limit_bytes / 8 => BUSY,
            Ok(_) => CALM,
            Err(e) => {
                tracing::debug!(error = %e, "SQLite checkpoint failed; retrying");
                CALM
            }
        };
        tokio::time::sleep(pause).await;
        if pool.is_closed() {
            break;
        }
    }
}

/// One round: a passive checkpoint, then emptying the log if it holds a quarter of its bound.
/// Returns the log's size before the round.
async fn checkpoint_once(
    pool: &AnyPool,
    writer: &AnyPool,
    bound: &WalBound,
    warned: &mut bool,
) -> Result<u64, sqlx::Error> {
    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(pool).await?;
    let size = bound.size();
    if size > bound.limit_bytes && !*warned {
        tracing::warn!(
            wal_bytes = size,
            limit_bytes = bound.limit_bytes,
            "the SQLite write-ahead log is past its bound"
        );
        *warned = true;
    }
    if size >= bound.limit_bytes / 4 {
        // Taking the writer runs `writer_hook`, which empties a log past half the bound already.
        let mut conn = writer.acquire().await?;
        if bound.size() >= bound.limit_bytes / 4 && truncate_within(&mut conn, FORCE_WAIT_MS).await? {
            *warned = false;
        }
    }
    Ok(size)
}

/// Runs before each write takes the writer connection: a log past half its bound is emptied first.
pub(crate) fn writer_hook(
    bound: Arc<WalBound>,
) -> impl for<'c> Fn(&'c mut AnyConnection, PoolConnectionMetadata) -> BoxFuture<'c, Result<bool, sqlx::Error>>
+ Send
+ Sync
+ 'static {
    move |conn, _meta| {
        let bound = bound.clone();
        Box::pin(async move {
            if bound.size() >= bound.limit_bytes / 2 {
                truncate_within(conn, FORCE_WAIT_MS).await?;
            }
            Ok(true)
        })
    }
}

/// A TRUNCATE checkpoint on the writer that waits at most `wait_ms` for readers; true if the log
/// was emptied.
async fn truncate_within(conn: &mut AnyConnection, wait_ms: u32) -> Result<bool, sqlx::Error> {
    conn.execute(sqlx::AssertSqlSafe(format!("PRAGMA busy_timeout={wait_ms}"))).await?;
    let outcome = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut *conn).await;
    conn.execute(sqlx::AssertSqlSafe(format!("PRAGMA busy_timeout={NORMAL_BUSY_TIMEOUT_MS}"))).await?;
    // Columns: busy (1 if it could not finish), frames in the log, frames checkpointed.
    let done = outcome?.try_get::<i64, _>(0)? == 0;
    if !done {
        tracing::debug!("SQLite could not empty the write-ahead log yet (a reader is still on it)");
    }
    Ok(done)
}

/// Checkpoints everything and empties the log (a clean shutdown), waiting for readers as long as
/// the connection's busy timeout allows.
pub(crate) async fn truncate(pool: &AnyPool) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(pool).await?;
    Ok(row.try_get::<i64, _>(0)? == 0)
}
