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

/// What a source offers besides tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    Prompts,
    Resources,
    ResourceTemplates,
}

impl Offer {
    /// The member of the list result.
    pub fn key(self) -> &'static str {
        match self {
            Offer::Prompts => "prompts",
            Offer::Resources => "resources",
            Offer::ResourceTemplates => "resourceTemplates",
        }
    }
}

/// A prompt, resource or resource template as the caller sees it, and the provider it belongs to
/// (the policy decides on the provider).
#[derive(Clone, Debug)]
pub struct Offered {
    pub provider: String,
    pub item: Value,
}

/// A watched resource: a signal on `updates` each time its server says it changed; dropping the
/// watch ends it (the last watch of a resource unsubscribes upstream).
pub struct ResourceWatch {
    /// The provider whose resource it is (the policy is asked again when the grant changes).
    pub provider: String,
    pub updates: tokio::sync::broadcast::Receiver<()>,
    pub guard: Box<dyn Send + Sync>,
}

/// The policy's answer for a provider: may the caller read its prompts and resources?
pub type Readable<'a> = &'a (dyn Fn(&str) -> bool + Sync);

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

    /// Prompts, resources or resource templates offered to the caller (the registry keeps those of
    /// providers it may read).
    async fn offered(&self, _ctx: &AccessContext, _kind: Offer) -> Vec<Offered> {
        Vec::new()
    }

    /// `prompts/get` of a prompt this source offers under `name`, if it is one of a provider the
    /// caller may read (`readable`); `None`: not this source's.
    async fn get_prompt(
        &self,
        _ctx: &AccessContext,
        _name: &str,
        _args: &Value,
        _readable: Readable<'_>,
    ) -> Option<Result<Value, ToolError>> {
        None
    }

    /// `resources/read` of `uri`, if a provider the caller may read offers it (as a resource or
    /// under one of its templates); `None`: not this source's.
    async fn read_resource(
        &self,
        _ctx: &AccessContext,
        _uri: &str,
        _readable: Readable<'_>,
    ) -> Option<Result<Value, ToolError>> {
        None
    }

    /// Watches `uri` for changes (2026-07-28 `resourceSubscriptions`), if a provider the caller
    /// may read offers it and its server takes subscriptions; `None` otherwise.
    async fn watch_resource(&self, _ctx: &AccessContext, _uri: &str, _readable: Readable<'_>) -> Option<ResourceWatch> {
        None
    }
}
