//! `ToolSource`: anything that offers tools — the built-ins, and next upstream MCP servers and
//! declarative HTTP tools. A source only lists and calls; the registry applies the policy.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{Answer, Round, ToolDescriptor, ToolError};
use bk_access::AccessContext;

/// The tools a source offers to one caller, with the version that names this exact list.
#[derive(Clone)]
pub struct ToolListing {
    /// Names this list within its source: two listings of one source with the same version hold
    /// the same tools in the same order, whoever they were listed for. A source whose tools differ
    /// per tenant (or change over time) gives each distinct list its own version — e.g. from a
    /// counter bumped whenever a list is loaded — because serialised lists are cached by version.
    pub version: u64,
    pub tools: Arc<[ToolDescriptor]>,
}

#[async_trait]
pub trait ToolSource: Send + Sync {
    /// The tools this source offers to the caller (upstream sources answer per tenant). Called on
    /// every `tools/list` and `tools/call`: answer from memory, refresh elsewhere.
    async fn list(&self, ctx: &AccessContext) -> ToolListing;

    /// Calls `tool`, one of the tools this source listed for the same caller. `round` carries the
    /// multi-round-trip context; a source whose tools never ask for input ignores it.
    async fn call(
        &self,
        ctx: &AccessContext,
        tool: &ToolDescriptor,
        args: &Value,
        round: &Round<'_>,
    ) -> Result<Answer, ToolError>;
}
