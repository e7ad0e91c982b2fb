//! One store test suite, run against every backend: the embedded SQLite always, and PostgreSQL when
//! `BRIDGEKEEPER_TEST_POSTGRES_URL` is set (each run in a schema of its own; unreachable = failure).

/// Tests that take the store as `Arc<SqlStore>` (to share it between tasks), each run on SQLite and,
/// when `BRIDGEKEEPER_TEST_POSTGRES_URL` is set, on PostgreSQL in a schema of its own.
macro_rules! shared_store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(
                #[tokio::test]
                async fn $name() {
                    let (store, _dir) = crate::sqlite().await;
                    super::$name(std::sync::Arc::new(store)).await;
                }
            )*
        }
        mod postgres_backend {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some((store, guard)) = crate::postgres().await {
                        super::$name(std::sync::Arc::new(store)).await;
                        guard.drop_schema().await;
                    } else {
                        eprintln!("BRIDGEKEEPER_TEST_POSTGRES_URL not set: PostgreSQL backend not exercised");
                    }
                }
            )*
        }
    };
}

mod accounts_admin;
mod agents;
mod bridges;
mod connections;
mod credits;
mod email;
mod handoff;
mod idp_identities;
mod knowledge;
mod llm_keys;
mod machine_clients;
mod passkeys;
mod second_factor;
mod signing_keys;
mod suite;
mod wallets;

use bridgekeeper_store::SqlStore;

async fn sqlite() -> (SqlStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let store = SqlStore::connect(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    (store, dir)
}

/// A PostgreSQL store in a fresh schema (dropped with the guard), or None when no PostgreSQL URL is configured.
async fn postgres() -> Option<(SqlStore, SchemaGuard)> {
    let base = std::env::var("BRIDGEKEEPER_TEST_POSTGRES_URL").ok()?;
    let schema = format!("bk_test_{}", uuid::Uuid::new_v4().simple());
    let admin = SqlStore::connect(&base, 1).await.expect("BRIDGEKEEPER_TEST_POSTGRES_URL is set but unreachable");
    admin.execute_ddl(&format!("CREATE SCHEMA {schema}")).await.unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let store = SqlStore::connect(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    Some((store, SchemaGuard { admin, schema }))
}

struct SchemaGuard {
    admin: SqlStore,
    schema: String,
}

impl SchemaGuard {
    async fn drop_schema(self) {
        self.admin.execute_ddl(&format!("DROP SCHEMA {} CASCADE", self.schema)).await.unwrap();
    }
}

macro_rules! suite_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(
                #[tokio::test]
                async fn $name() {
                    let (store, _dir) = crate::sqlite().await;
                    crate::suite::$name(&store).await;
                }
            )*
        }
        mod postgres_backend {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some((store, guard)) = crate::postgres().await {
                        crate::suite::$name(&store).await;
                        drop(store);
                        guard.drop_schema().await;
                    } else {
                        eprintln!("BRIDGEKEEPER_TEST_POSTGRES_URL not set: PostgreSQL backend not exercised");
                    }
                }
            )*
        }
    };
}

suite_tests!(
    accounts_are_unique_by_email,
    clients_round_trip,
    code_redemption_is_compare_and_set,
    refresh_rotation_is_compare_and_set_under_concurrency,
    sessions_are_tenant_scoped,
    revocation_is_idempotent_and_seen_by_status,
    consent_is_per_account_client_and_scopes,
    signing_keys_newest_first,
    purge_removes_only_expired_rows,
    mcp_sessions_are_tenant_bound,
    audit_append_query_prune,
    audit_large_batch_stays_chained,
    concurrent_rotations_of_many_tokens_each_apply_once,
    deleting_a_client_revokes_its_sessions,
    browser_sessions_end_on_sign_out_and_per_account,
    browser_sessions_are_listed_and_ended_per_account,
    pats_die_with_the_session_that_created_them,
    pat_quota_holds_under_concurrency,
    client_quota_holds_under_concurrency,
);

/// The writer never checkpoints inside a commit (that would fsync while every write waits); the
/// background checkpointer copies the write-ahead log into the database file within a second.
#[tokio::test]
async fn sqlite_log_is_checkpointed_into_the_database_file_in_the_background() {
    use bk_domain::audit::{AuditEvent, Outcome};
    use bk_domain::ports::AuditStore;
    let (store, dir) = sqlite().await;
    // Let any checkpoint of the migrations finish, then note the file's size.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let size = || std::fs::metadata(dir.path().join("t.db")).unwrap().len();
    let before = size();
    let link = |prev: &str, seq: i64, _e: &AuditEvent| format!("h{seq}:{}", prev.len());
    let events: Vec<AuditEvent> = (0..2000)
        .map(|i| {
            let mut e = AuditEvent::new("mcp.tools_call", Outcome::Success, i);
            e.details = serde_json::json!({ "padding": "x".repeat(200) });
            e
        })
        .collect();
    store.append_audit(&events, &link).await.unwrap();
    assert_eq!(size(), before, "the commit itself did not checkpoint: the rows are only in the log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while size() <= before + 400_000 {
        assert!(std::time::Instant::now() < deadline, "the log was not checkpointed within 5 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Checkpoint starvation: with readers always active, a PASSIVE checkpoint copies pages but the log
/// never starts again from its beginning, so it grows without bound. Under continuous reads and
/// writes the log file must stay within its configured bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_log_stays_bounded_under_continuous_reads_and_writes() {
    use bk_domain::audit::{AuditEvent, Outcome};
    use bk_domain::ports::AuditStore;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    const BOUND: u64 = 8 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let mut settings = bridgekeeper_store::PoolSettings::with_max(4);
    settings.sqlite_wal_limit_bytes = BOUND;
    let store = Arc::new(SqlStore::connect_with(&url, &settings).await.unwrap());
    store.migrate().await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (store, stop) = (store.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                store.audit_chain_state().await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let wal = dir.path().join("t.db-wal");
    let wal_size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    let link = |prev: &str, seq: i64, _e: &AuditEvent| format!("h{seq}:{}", prev.len());
    let (mut largest, mut written) = (0, 0u64);
    let started = std::time::Instant::now();
    // About 40 MB of rows, written as the audit writer does: batches of 64.
    for batch in 0..600 {
        let events: Vec<AuditEvent> = (0..64)
            .map(|i| {
                let mut e = AuditEvent::new("mcp.tools_call", Outcome::Success, batch * 64 + i);
                e.details = serde_json::json!({ "padding": "x".repeat(900) });
                e
            })
            .collect();
        store.append_audit(&events, &link).await.unwrap();
        written += 64 * 1000;
        largest = largest.max(wal_size());
    }
    stop.store(true, Ordering::Relaxed);
    let mut reads = 0;
    for r in readers {
        reads += r.await.unwrap();
    }
    eprintln!(
        "wrote ~{} MB in {:?} beside {reads} reads; largest log {} MB",
        written >> 20,
        started.elapsed(),
        largest >> 20
    );
    assert!(reads > 1000, "the readers were active throughout ({reads} reads)");
    assert!(largest <= BOUND, "the log reached {largest} bytes, above its bound of {BOUND}");
}

/// What an audit event costs on disk (the README's retention figures rest on it): a typical
/// `tools/call` event — account, client and session ids, a small details object — in about 520
/// bytes with the indexes (it was about 600 before the rows lost their redundant rowid and id index).
#[tokio::test]
async fn sqlite_audit_event_costs_about_520_bytes() {
    use bk_domain::audit::{AuditEvent, Outcome};
    use bk_domain::ids::{AccountId, ClientId, SessionId};
    use bk_domain::ports::AuditStore;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let file = dir.path().join("t.db");
    let link =
        |_prev: &str, seq: i64, _e: &AuditEvent| format!("{:064x}", (seq as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let (account, client, session) = (AccountId::generate(), ClientId::generate(), SessionId::generate());
    let batch = |from: i64| -> Vec<AuditEvent> {
        (from..from + 1000)
            .map(|i| {
                AuditEvent::new("mcp.tools_call", Outcome::Success, 1_700_000_000_000 + i)
                    .account(&account)
                    .client(&client)
                    .session(&session)
                    .target("whoami")
                    .latency_ms(0)
                    .detail("tool", "whoami")
                    .detail("provider", "bridgekeeper")
                    .detail("latency_us", 41 + i % 50)
            })
            .collect()
    };
    let store = SqlStore::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    store.append_audit(&batch(0), &link).await.unwrap();
    store.close().await;
    let before = std::fs::metadata(&file).unwrap().len();
    let store = SqlStore::connect(&url, 2).await.unwrap();
    const EVENTS: i64 = 40_000;
    for k in 1..=EVENTS / 1000 {
        store.append_audit(&batch(k * 1000), &link).await.unwrap();
    }
    store.close().await;
    let per_event = (std::fs::metadata(&file).unwrap().len() - before) / EVENTS as u64;
    eprintln!("{per_event} bytes per audit event");
    assert!(per_event <= 540, "an audit event takes {per_event} bytes on disk");
}
