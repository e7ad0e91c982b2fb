//! Who is calling, established once per request: bearer verification (RS256 access tokens,
//! personal access tokens, operator tokens), the browser session cookie, and the one
//! [`AccessContext`] that `/mcp`, userinfo and the REST faces all receive. One parser for the
//! `Authorization: Bearer` header and one builder for the `WWW-Authenticate: Bearer` challenge.
#![forbid(unsafe_code)]

pub mod bearer;
pub mod browser;
pub mod cache;
mod context;
pub mod dpop;
pub mod operator;
mod verifier;

pub use bearer::{Challenge, bearer_token};
pub use context::AccessContext;
pub use verifier::{KeySource, PAT_PREFIX, Verifier, VerifyError};
