//! The MCP endpoint (`/mcp`, Streamable HTTP): bearer authentication, the request context, JSON-RPC
//! dispatch and the tool registry. Policy is applied the same way to `tools/list` and `tools/call`.

mod auth;
pub mod context;
mod mcp;
pub mod tools;

use std::sync::Arc;

use axum::Router;
use axum::routing::post;
use bk_oauth::Verifier;

pub use context::RequestContext;

pub struct Gateway {
    pub verifier: Arc<Verifier>,
    /// The resource this endpoint serves (`{issuer}/mcp`): access tokens must carry it as `aud`.
    pub resource: String,
    /// Where the RFC 9728 metadata for this resource lives (named in every 401).
    pub resource_metadata_url: String,
    pub tools: tools::ToolRegistry,
}

impl Gateway {
    pub fn new(verifier: Arc<Verifier>, issuer: &str) -> Self {
        Self {
            verifier,
            resource: format!("{issuer}/mcp"),
            resource_metadata_url: format!("{issuer}/.well-known/oauth-protected-resource/mcp"),
            tools: tools::ToolRegistry::builtin(),
        }
    }
}

pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/mcp", post(mcp::post).get(mcp::get).delete(mcp::delete))
        .with_state(gateway)
}
