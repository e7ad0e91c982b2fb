//! Pure rules of Bridgekeeper: identifiers, scopes, PKCE, redirect URIs, clients, grants and the
//! state machines of authorization codes and refresh tokens. No I/O: time is always passed in.

pub mod access;
pub mod audit;
pub mod client;
pub mod code;
pub mod grant;
pub mod ids;
pub mod pkce;
pub mod rate_limit;
pub mod redirect;
pub mod refresh;
pub mod restrictions;
pub mod scope;

/// Seconds since the Unix epoch. Every rule takes `now` as an argument so tests are deterministic.
pub type UnixTime = i64;
