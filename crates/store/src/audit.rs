//! The audit log: batched multi-row appends at the head of the hash chain, tenant queries, and
//! pruning that leaves the chain verifiable.

use async_trait::async_trait;
use bk_domain::audit::{AuditEvent, Outcome, StoredAuditEvent};
use bk_domain::ids::{AccountId, TenantId};
use bk_domain::ports::{AuditQuery, AuditStore, ChainLink, ChainPosition, ChainState, Result, StoreError};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::pool::Backend;
use crate::rows::{Db, json_col, to_json};

const AUDIT_COLUMNS: &str = "seq, id, at_ms, account_id, actor, kind, target, outcome, latency_ms, request_id, ip, \
                             details, prev_hash, hash, redacted_at";

fn audit_from_row(r: &AnyRow) -> Result<StoredAuditEvent> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("audit row: bad {what}"));
    Ok(StoredAuditEvent {
        seq: r.try_get("seq").db()?,
        event: AuditEvent {
            id: r.try_get("id").db()?,
            at_ms: r.try_get("at_ms").db()?,
            account_id: r.try_get::<Option<String>, _>("account_id").db()?.map(AccountId::from_string),
            actor: json_col(r, "actor")?,
            kind: r.try_get("kind").db()?,
            target: r.try_get("target").db()?,
            outcome: Outcome::parse(&r.try_get::<String, _>("outcome").db()?).ok_or_else(|| corrupt("outcome"))?,
            latency_ms: r.try_get("latency_ms").db()?,
            request_id: r.try_get("request_id").db()?,
            ip: r.try_get("ip").db()?,
            details: json_col(r, "details")?,
        },
        prev_hash: r.try_get("prev_hash").db()?,
        hash: r.try_get("hash").db()?,
        redacted_at: r.try_get("redacted_at").db()?,
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
        let head = sqlx::query(head_sql).fetch_one(&mut *tx).await.db()?;
        let mut seq: i64 = head.try_get("head_seq").db()?;
        let mut prev: String = head.try_get("head_hash").db()?;
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
            q.execute(&mut *tx).await.db()?;
        }
        sqlx::query("UPDATE audit_chain SET head_seq = $1, head_hash = $2 WHERE id = 1")
            .bind(seq)
            .bind(&prev)
            .execute(&mut *tx)
            .await
            .db()?;
        tx.commit().await.db()?;
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
            .await
            .db()?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn audit_chain_state(&self) -> Result<ChainState> {
        let r = sqlx::query("SELECT head_seq, head_hash, anchor_seq, anchor_hash FROM audit_chain WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .db()?;
        Ok(ChainState {
            head_seq: r.try_get("head_seq").db()?,
            head_hash: r.try_get("head_hash").db()?,
            anchor_seq: r.try_get("anchor_seq").db()?,
            anchor_hash: r.try_get("anchor_hash").db()?,
        })
    }

    async fn audit_range(&self, after_seq: i64, limit: i64) -> Result<Vec<StoredAuditEvent>> {
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2");
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(after_seq).bind(limit).fetch_all(&self.pool).await.db()?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn prune_audit(&self, before_ms: Option<i64>, max_rows: Option<i64>) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let head_sql = match self.backend {
            Backend::Sqlite => "SELECT head_seq, anchor_seq FROM audit_chain WHERE id = 1",
            Backend::Postgres => "SELECT head_seq, anchor_seq FROM audit_chain WHERE id = 1 FOR UPDATE",
        };
        let head = sqlx::query(head_sql).fetch_one(&mut *tx).await.db()?;
        let head_seq: i64 = head.try_get("head_seq").db()?;
        let mut cutoff: i64 = head.try_get("anchor_seq").db()?;
        if let Some(max) = max_rows {
            cutoff = cutoff.max(head_seq - max.max(0));
        }
        if let Some(before) = before_ms {
            let r = sqlx::query("SELECT MAX(seq) AS s FROM audit_events WHERE at_ms < $1")
                .bind(before)
                .fetch_one(&mut *tx)
                .await
                .db()?;
            if let Some(s) = r.try_get::<Option<i64>, _>("s").db()? {
                cutoff = cutoff.max(s);
            }
        }
        let anchor = sqlx::query("SELECT seq, hash FROM audit_events WHERE seq <= $1 ORDER BY seq DESC LIMIT 1")
            .bind(cutoff)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        let Some(anchor) = anchor else {
            tx.rollback().await.db()?;
            return Ok(0);
        };
        let (anchor_seq, anchor_hash): (i64, String) = (anchor.try_get("seq").db()?, anchor.try_get("hash").db()?);
        let deleted = sqlx::query("DELETE FROM audit_events WHERE seq <= $1")
            .bind(anchor_seq)
            .execute(&mut *tx)
            .await
            .db()?
            .rows_affected();
        sqlx::query("UPDATE audit_chain SET anchor_seq = $1, anchor_hash = $2 WHERE id = 1")
            .bind(anchor_seq)
            .bind(&anchor_hash)
            .execute(&mut *tx)
            .await
            .db()?;
        tx.commit().await.db()?;
        Ok(deleted)
    }
}
