//! Integration tests: each starts the real `bridgekeeper` binary on an ephemeral port with a
//! temporary SQLite database and talks to it over HTTP, as a client would.

mod account_email;
mod audit;
mod authorize;
mod cli;
mod client_metadata;
mod clients;
mod connections;
mod connections_broker;
mod connections_oauth2;
mod connections_page;
mod discovery;
mod durability;
mod harness;
mod health;
mod mcp;
mod mcp_2026;
mod mcp_rounds;
mod mcp_transport;
mod multi_instance;
mod oidc;
mod pages;
mod pat;
mod registration;
mod security_audit_stream;
mod security_browser_sessions;
mod security_client_lockout;
mod security_consent_warning;
mod security_headers;
mod security_introspection;
mod security_loopback;
mod security_metrics;
mod security_pats;
mod security_sign_in;
mod security_storage;
mod token;
