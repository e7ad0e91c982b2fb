//! The SQL adapter: implements the domain's store ports (`bk_domain::ports`) for the embedded
//! SQLite and for PostgreSQL over sqlx's `Any` driver — one set of queries (`$1…$n` placeholders,
//! portable types: TEXT, BIGINT, BLOB/BYTEA), each backend with its own migrations. One file per
//! aggregate; the connection pools, SQLite's background checkpoint and its group commit for
//! refresh-token rotations each have their own.
#![forbid(unsafe_code)]

mod accounts;
mod agents;
mod audit;
mod bridges;
mod browser_sessions;
mod checkpoint;
mod clients;
mod connections;
mod credits;
mod email_tokens;
mod grants;
mod handoff_codes;
mod idp_identities;
mod keys;
mod knowledge;
mod llm_keys;
mod mcp_sessions;
mod migrations;
mod passkeys;
mod pats;
mod pool;
mod rotation;
mod rows;
mod second_factor;
mod wallets;

pub use pool::{Backend, PoolSettings, PoolStats, SqlStore};
