//! SQLite's background checkpoint: the write-ahead log is copied into the database file beside
//! the writer, never inside its commits, and kept below its bound.
//!
//! A PASSIVE checkpoint copies pages without blocking anyone, but the log only starts again from its
//! beginning when a writer finds no reader still using it; under a steady mix of reads and writes
//! there always is one, so a log checkpointed only passively grows without end (checkpoint
//! starvation). So once the log holds a quarter of its bound, the checkpointer takes its turn on the
//! writer connection and asks for a RESTART: it waits (at most `FORCE_WAIT_MS`) for the readers of
//! older snapshots to finish, and the next commit writes from the log's start again. If the file on disk is past its bound anyway (a
//! burst, or a log left by a crash), a TRUNCATE empties it. `journal_size_limit` trims a restarted log
//! back to the bound.

use std::path::PathBuf;
use std::time::Duration;

use sqlx::{AnyPool, Executor, Row};

/// Between checkpoints while the log is small, and while it is filling up.
const CALM: Duration = Duration::from_millis(250);
const BUSY: Duration = Duration::from_millis(50);
/// How long a forced checkpoint may hold back new writers while older readers finish.
const FORCE_WAIT_MS: u32 = 250;
/// The busy timeout every other statement runs with (see `pool_options`).
const NORMAL_BUSY_TIMEOUT_MS: u32 = 10_000;

/// Where the log is and how large it may grow.
pub(crate) struct WalBound {
    pub(crate) wal_path: PathBuf,
    pub(crate) limit_bytes: u64,
}

/// `pool`: reader connections (passive checkpoints); `writer`: the single writer connection, on which
/// the forced ones queue behind other writes instead of racing them for the lock.
pub(crate) async fn checkpointer(pool: AnyPool, writer: AnyPool, bound: WalBound) {
    let page_size = match sqlx::query("PRAGMA page_size").fetch_one(&pool).await.and_then(|r| r.try_get::<i64, _>(0)) {
        Ok(p) if p > 0 => p as u64,
        _ => 4096,
    };
    let mut over_bound = false;
    loop {
        let pause = match checkpoint_once(&pool, &writer, &bound, page_size, &mut over_bound).await {
            Ok(log_bytes) if log_bytes >= bound.limit_bytes / 8 => BUSY,
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

/// One round: a passive checkpoint, then a forced one if the log needs it. Returns the bytes the
/// log held before the round.
async fn checkpoint_once(
    pool: &AnyPool,
    writer: &AnyPool,
    bound: &WalBound,
    page_size: u64,
    over_bound: &mut bool,
) -> Result<u64, sqlx::Error> {
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(pool).await?;
    let log_bytes = row.try_get::<i64, _>(1)?.max(0) as u64 * page_size;
    let file_bytes = std::fs::metadata(&bound.wal_path).map(|m| m.len()).unwrap_or(0);
    let mode = if file_bytes > bound.limit_bytes {
        if !*over_bound {
            tracing::warn!(
                wal_bytes = file_bytes,
                limit_bytes = bound.limit_bytes,
                "the SQLite write-ahead log is past its bound; truncating it"
            );
        }
        "TRUNCATE"
    } else if log_bytes >= bound.limit_bytes / 4 {
        "RESTART"
    } else {
        return Ok(log_bytes);
    };
    let done = force(writer, mode).await?;
    *over_bound = file_bytes > bound.limit_bytes && !done;
    if !done {
        tracing::debug!(mode, log_bytes, "SQLite checkpoint could not restart the log yet (a reader is still on it)");
    }
    Ok(log_bytes)
}

/// A RESTART or TRUNCATE checkpoint that waits at most `FORCE_WAIT_MS` for readers; true if it
/// completed.
async fn force(pool: &AnyPool, mode: &str) -> Result<bool, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    conn.execute(sqlx::AssertSqlSafe(format!("PRAGMA busy_timeout={FORCE_WAIT_MS}"))).await?;
    let outcome =
        sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA wal_checkpoint({mode})"))).fetch_one(&mut *conn).await;
    let restored = conn.execute(sqlx::AssertSqlSafe(format!("PRAGMA busy_timeout={NORMAL_BUSY_TIMEOUT_MS}"))).await;
    if restored.is_err() {
        // A connection that kept the short timeout would give up on locks too early: drop it.
        let _ = conn.detach();
    }
    // Columns: busy (1 if it could not finish), frames in the log, frames checkpointed.
    Ok(outcome?.try_get::<i64, _>(0)? == 0)
}

/// Checkpoints everything and empties the log (a clean shutdown), waiting for readers as long as
/// the connection's busy timeout allows.
pub(crate) async fn truncate(pool: &AnyPool) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(pool).await?;
    Ok(row.try_get::<i64, _>(0)? == 0)
}
