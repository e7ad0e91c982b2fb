//! Group commit for refresh-token rotations on SQLite (see `rotation_committer`).

use bk_domain::UnixTime;
use bk_domain::ids::RefreshTokenId;
use bk_domain::ports::{Result, StoreError};
use bk_domain::refresh::RefreshToken;
use sqlx::{AnyPool, Executor, Row};
use tokio::sync::{mpsc, oneshot};

use crate::rows::{Db, db_error};

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
pub(crate) struct Rotation {
    pub(crate) old: RefreshTokenId,
    pub(crate) new: RefreshToken,
    pub(crate) now: UnixTime,
    pub(crate) done: oneshot::Sender<Result<bool>>,
}

/// At most this many rotations share a transaction (each distinct size is one cached statement).
const ROTATIONS_PER_COMMIT: usize = 16;

/// Group commit for refresh-token rotations on SQLite. Rotations that arrive while a transaction is
/// being written wait and then go together into the next one: one `BEGIN IMMEDIATE … COMMIT`
/// round trip to the single writer for many exchanges instead of one each. Each rotation keeps its
/// own compare-and-set (two exchanges of one token in the same batch: the second finds it used).
/// If a batch fails, its rotations are retried one by one, so one bad row cannot fail the others.
/// It runs as a task of its own: a request that hangs up cannot leave a batch half-done.
pub(crate) async fn rotation_committer(writer: AnyPool, mut rx: mpsc::Receiver<Rotation>) {
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
    let mut conn = writer.acquire().await.db()?;
    // fetch_all, not fetch_optional: the stream must run to the end so COMMIT executes.
    match q.fetch_all(&mut *conn).await {
        Ok(rows) if rows.len() == batch.len() => {
            rows.iter().map(|r| Ok(r.try_get::<i64, _>("applied").db()? > 0)).collect()
        }
        Ok(rows) => Err(StoreError::Corrupt(format!("{} rotation results for {} rotations", rows.len(), batch.len()))),
        Err(e) => {
            let _ = conn.execute("ROLLBACK").await;
            Err(db_error(e))
        }
    }
}
