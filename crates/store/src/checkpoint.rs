//! SQLite's background checkpoint: the write-ahead log is copied into the database file beside
//! the writer, never inside its commits.

use sqlx::AnyPool;

/// Copies committed pages from SQLite's write-ahead log into the database file, on a reader
/// connection, a few times a second. A PASSIVE checkpoint never takes the write lock, so the writer
/// keeps committing while the file is synced; the next write after a complete checkpoint starts the
/// log from its beginning again, and `journal_size_limit` trims a log a burst made large.
pub(crate) async fn checkpointer(pool: AnyPool) {
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
