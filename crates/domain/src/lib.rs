//! Pure rules of Bridgekeeper: identifiers, scopes, PKCE, redirect URIs, accounts, clients, grants,
//! the state machines of authorization codes and refresh tokens, and the ports (entities and store
//! traits) the adapters implement. No I/O: time is always passed in.
#![forbid(unsafe_code)]

pub mod access;
pub mod account;
pub mod agent;
pub mod audit;
pub mod bridge;
pub mod browser_session;
pub mod client;
pub mod client_metadata;
pub mod code;
pub mod connection;
pub mod credits;
pub mod email_token;
pub mod grant;
pub mod handoff;
pub mod ids;
pub mod knowledge;
pub mod mcp_session;
pub mod network;
pub mod passkey;
pub mod pkce;
pub mod ports;
pub mod rate_limit;
pub mod redirect;
pub mod refresh;
pub mod registration;
pub mod restrictions;
pub mod scope;
pub mod second_factor;
pub mod siwe;
pub mod token;
pub mod upstream_identity;
pub mod wallet;

/// Seconds since the Unix epoch. Every rule takes `now` as an argument so tests are deterministic.
pub type UnixTime = i64;
