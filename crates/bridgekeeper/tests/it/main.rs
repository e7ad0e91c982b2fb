//! Integration tests: each starts the real `bridgekeeper` binary on an ephemeral port with a
//! temporary SQLite database and talks to it over HTTP, as a client would.

mod audit;
mod authorize;
mod cli;
mod clients;
mod discovery;
mod harness;
mod health;
mod mcp;
mod mcp_transport;
mod multi_instance;
mod oidc;
mod pages;
mod pat;
mod security_audit_stream;
mod security_pats;
mod security_storage;
mod token;
