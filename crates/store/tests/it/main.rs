//! One store test suite, run against every backend: the embedded SQLite always, and PostgreSQL when
//! `BRIDGEKEEPER_TEST_POSTGRES_URL` is set (each run in a schema of its own; unreachable = failure).

mod suite;

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
