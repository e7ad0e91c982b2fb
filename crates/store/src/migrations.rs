//! Versioned migrations, one list per backend (each backend has its own SQL files).

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::pool::Backend;

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/sqlite/0001_init.sql")),
    (2, "mcp sessions", include_str!("../migrations/sqlite/0002_mcp_sessions.sql")),
    (3, "clients, restrictions, tokens", include_str!("../migrations/sqlite/0003_clients_restrictions_tokens.sql")),
    (4, "audit", include_str!("../migrations/sqlite/0004_audit.sql")),
    (5, "refresh parent index", include_str!("../migrations/sqlite/0005_refresh_parent_index.sql")),
    (6, "pat parent and quotas", include_str!("../migrations/sqlite/0006_pat_parent_and_quotas.sql")),
    (7, "browser sessions", include_str!("../migrations/sqlite/0007_browser_sessions.sql")),
    (8, "audit compact rows", include_str!("../migrations/sqlite/0008_audit_compact_rows.sql")),
    (9, "client registrations", include_str!("../migrations/sqlite/0009_client_registrations.sql")),
    (10, "connections", include_str!("../migrations/sqlite/0010_connections.sql")),
    (11, "handoff codes", include_str!("../migrations/sqlite/0011_handoff_codes.sql")),
    (12, "connection lease token", include_str!("../migrations/sqlite/0012_connection_lease_token.sql")),
    (13, "upstream registrations", include_str!("../migrations/sqlite/0013_upstream_registrations.sql")),
    (
        14,
        "mcp session client features, client and log level",
        include_str!("../migrations/sqlite/0014_mcp_session_client_features.sql"),
    ),
    (15, "email verification", include_str!("../migrations/sqlite/0015_email_verification.sql")),
    (16, "browser session details", include_str!("../migrations/sqlite/0016_browser_session_details.sql")),
    (17, "account status", include_str!("../migrations/sqlite/0017_account_status.sql")),
    (18, "second factor", include_str!("../migrations/sqlite/0018_second_factor.sql")),
    (19, "passkeys", include_str!("../migrations/sqlite/0019_passkeys.sql")),
    (20, "audit redaction", include_str!("../migrations/sqlite/0020_audit_redaction.sql")),
    (21, "signing key successor", include_str!("../migrations/sqlite/0021_signing_key_successor.sql")),
    (22, "wallet identities", include_str!("../migrations/sqlite/0022_wallet_identities.sql")),
    (23, "dpop binding", include_str!("../migrations/sqlite/0023_dpop_binding.sql")),
    (24, "machine clients", include_str!("../migrations/sqlite/0024_machine_clients.sql")),
    (25, "idp identities", include_str!("../migrations/sqlite/0025_idp_identities.sql")),
    (26, "session bridges", include_str!("../migrations/sqlite/0026_session_bridges.sql")),
    (27, "credits", include_str!("../migrations/sqlite/0027_credits.sql")),
    (28, "knowledge bases", include_str!("../migrations/sqlite/0028_knowledge_bases.sql")),
    (29, "agents", include_str!("../migrations/sqlite/0029_agents.sql")),
    (30, "llm api keys", include_str!("../migrations/sqlite/0030_llm_api_keys.sql")),
    (31, "client billing account", include_str!("../migrations/sqlite/0031_client_billing_account.sql")),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/postgres/0001_init.sql")),
    (2, "mcp sessions", include_str!("../migrations/postgres/0002_mcp_sessions.sql")),
    (3, "clients, restrictions, tokens", include_str!("../migrations/postgres/0003_clients_restrictions_tokens.sql")),
    (4, "audit", include_str!("../migrations/postgres/0004_audit.sql")),
    (5, "refresh parent index", include_str!("../migrations/postgres/0005_refresh_parent_index.sql")),
    (6, "pat parent and quotas", include_str!("../migrations/postgres/0006_pat_parent_and_quotas.sql")),
    (7, "browser sessions", include_str!("../migrations/postgres/0007_browser_sessions.sql")),
    (8, "audit compact rows", include_str!("../migrations/postgres/0008_audit_compact_rows.sql")),
    (9, "client registrations", include_str!("../migrations/postgres/0009_client_registrations.sql")),
    (10, "connections", include_str!("../migrations/postgres/0010_connections.sql")),
    (11, "handoff codes", include_str!("../migrations/postgres/0011_handoff_codes.sql")),
    (12, "connection lease token", include_str!("../migrations/postgres/0012_connection_lease_token.sql")),
    (13, "upstream registrations", include_str!("../migrations/postgres/0013_upstream_registrations.sql")),
    (
        14,
        "mcp session client features, client and log level",
        include_str!("../migrations/postgres/0014_mcp_session_client_features.sql"),
    ),
    (15, "email verification", include_str!("../migrations/postgres/0015_email_verification.sql")),
    (16, "browser session details", include_str!("../migrations/postgres/0016_browser_session_details.sql")),
    (17, "account status", include_str!("../migrations/postgres/0017_account_status.sql")),
    (18, "second factor", include_str!("../migrations/postgres/0018_second_factor.sql")),
    (19, "passkeys", include_str!("../migrations/postgres/0019_passkeys.sql")),
    (20, "audit redaction", include_str!("../migrations/postgres/0020_audit_redaction.sql")),
    (21, "signing key successor", include_str!("../migrations/postgres/0021_signing_key_successor.sql")),
    (22, "wallet identities", include_str!("../migrations/postgres/0022_wallet_identities.sql")),
    (23, "dpop binding", include_str!("../migrations/postgres/0023_dpop_binding.sql")),
    (24, "machine clients", include_str!("../migrations/postgres/0024_machine_clients.sql")),
    (25, "idp identities", include_str!("../migrations/postgres/0025_idp_identities.sql")),
    (26, "session bridges", include_str!("../migrations/postgres/0026_session_bridges.sql")),
    (27, "credits", include_str!("../migrations/postgres/0027_credits.sql")),
    (28, "knowledge bases", include_str!("../migrations/postgres/0028_knowledge_bases.sql")),
    (29, "agents", include_str!("../migrations/postgres/0029_agents.sql")),
    (30, "llm api keys", include_str!("../migrations/postgres/0030_llm_api_keys.sql")),
    (31, "client billing account", include_str!("../migrations/postgres/0031_client_billing_account.sql")),
];

pub(crate) fn migrator(backend: Backend) -> Migrator {
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
