//! The tool registry: what a tool looks like to a client (`ToolDescriptor`), the sources that offer
//! tools (`ToolSource`: the built-ins now; upstream MCP servers and declarative HTTP tools next), and
//! the two questions `/mcp` asks — which tools may this caller see (`Tools::list_json`) and which
//! tool does this caller mean by a name (`Tools::resolve`) — both answered with `crate::policy`, so
//! what a caller sees is exactly what it may call. Every tool is called with the request context
//! injected; none receives credentials in its arguments.

mod builtin;
mod cache;
mod source;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};

pub use builtin::{BuiltinDeps, BuiltinTools, GrantChanges, StoredGrants};
pub use source::{Offer, Offered, Readable, ResourceWatch, ToolListing, ToolSource};

use crate::policy::{Visibility, provider_readable, visibility};
use bk_access::AccessContext;

/// The gateway's own tools' names (no upstream tool is named like one).
/// `use-agent` is offered by the agents crate (`bk-agents`), a source of its own listed right after these.
pub const BUILTIN_NAMES: &[&str] = &["whoami", "list-connections", "restrict-access", "use-agent"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

#[derive(Debug)]
pub enum ToolError {
    /// The arguments do not fit the input schema (JSON-RPC invalid params).
    InvalidParams(String),
    /// The tool ran and failed; reported as a tool result with `isError: true`.
    Failed(String),
    /// The tool needs to ask the client something it did not say it can answer (2026-07-28:
    /// -32021 with `requiredCapabilities`).
    NeedsCapability { required: Value, message: String },
    /// The person must do something in the browser first (connect or reconnect a provider) and
    /// the client can open a URL for them (URL-mode elicitation; legacy revisions: error -32042).
    NeedsUrl { url: String, message: String },
}

pub struct ToolOutput {
    pub text: String,
    pub structured: Option<Value>,
}

impl ToolOutput {
    /// A result as an upstream server gave it (`content` of every type, `structuredContent`,
    /// `isError`), passed to the client unchanged.
    pub fn upstream(result: Value) -> Answer {
        Answer::Upstream(result)
    }
}

/// How a call ends: with a result, or (MCP 2026-07-28 multi-round-trip requests) by asking the
/// client for input and keeping `state` for the retry. The gateway seals `state` into the
/// `requestState` (integrity-protected, bound to the caller, the tool and its arguments, short-lived)
/// and hands it back, verified, in the retry's `Round::state`.
pub enum Answer {
    Complete(ToolOutput),
    InputRequired {
        requests: Value,
        state: Value,
    },
    /// An upstream server's `CallToolResult` (its `content`, `structuredContent`, `isError`, `_meta`).
    Upstream(Value),
}

/// The multi-round-trip side of a call.
#[derive(Default)]
pub struct Round<'a> {
    /// The request speaks 2026-07-28, whose results may ask for input. On the legacy protocol a tool
    /// that needs input cannot get it (no server-initiated requests are made) and says so.
    pub modern: bool,
    /// The client declared form-mode elicitation in its capabilities.
    pub can_elicit_form: bool,
    /// The client declared URL-mode elicitation (a connect link it can open for the person).
    pub can_elicit_url: bool,
    /// What this tool kept in the previous round's state, after the gateway verified it.
    pub state: Option<Value>,
    /// The client's `inputResponses`: unverified input.
    pub responses: Option<&'a Value>,
    /// Where the call's progress and log messages go while it runs (`None`: the client reads no
    /// stream, or asked for nothing a source could send).
    pub relay: Option<crate::relay::Relay>,
}

impl Round<'_> {
    /// A round for a client that declared `features` (`modern`: a 2026-07-28 request, whose
    /// results may ask for input).
    pub fn for_client(modern: bool, features: bk_domain::mcp_session::ClientFeatures) -> Self {
        Self { modern, can_elicit_form: features.elicit_form, can_elicit_url: features.elicit_url, ..Self::default() }
    }
}

/// One tool as a source offers it: what clients see, plus what the policy needs to know.
#[derive(Clone, Debug)]
pub struct ToolDescriptor {
    pub name: String,
    pub title: String,
    pub description: String,
    pub input_schema: Value,
    pub output_schema: Option<Value>,
    pub access: Access,
    /// The provider whose data the tool reaches (`None`: the gateway's own tools, governed by
    /// scope only).
    pub provider: Option<String>,
    /// The agent the tool belongs to, if any (subject to the grant's agent restriction).
    pub agent_id: Option<String>,
    /// The knowledge base the tool belongs to, if any (subject to the grant's KB restriction).
    pub knowledge_base_id: Option<String>,
    /// For a tool of an upstream server: which connection offers it, its name there, and the
    /// server's own description of it (shown to clients with the namespaced name).
    pub upstream: Option<Arc<UpstreamTool>>,
}

/// Where an upstream tool lives.
#[derive(Debug)]
pub struct UpstreamTool {
    pub connection_id: String,
    pub name: String,
    /// The `Tool` object as the upstream listed it.
    pub listed: Value,
}

impl ToolDescriptor {
    /// The MCP `Tool` object of `tools/list`.
    pub fn to_mcp_json(&self) -> Value {
        if let Some(u) = &self.upstream {
            // The server's description as it gave it (icons, annotations, schemas, `_meta`), under
            // the namespaced name, and read-only only if the policy counts it so.
            let mut d = u.listed.clone();
            d["name"] = json!(self.name);
            if !d.get("annotations").is_some_and(Value::is_object) {
                d["annotations"] = json!({});
            }
            d["annotations"]["readOnlyHint"] = json!(self.access == Access::Read);
            return d;
        }
        let mut d = json!({
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": self.input_schema,
            "annotations": {
                "title": self.title,
                "readOnlyHint": self.access == Access::Read,
                "destructiveHint": false,
                "openWorldHint": false,
            },
        });
        if let Some(o) = &self.output_schema {
            d["outputSchema"] = o.clone();
        }
        d
    }
}

/// A tool the caller may call, found by name under the policy. Only `Tools::resolve` makes one,
/// so holding one means the policy said yes.
pub struct ResolvedTool {
    source: usize,
    tools: Arc<[ToolDescriptor]>,
    index: usize,
}

impl ResolvedTool {
    pub fn descriptor(&self) -> &ToolDescriptor {
        &self.tools[self.index]
    }
}

/// Every source of tools, in the order their tools are listed.
pub struct Tools {
    sources: Vec<Box<dyn ToolSource>>,
    lists: cache::ListCache,
}

impl Tools {
    pub fn new(sources: Vec<Box<dyn ToolSource>>) -> Self {
        Self { sources, lists: cache::ListCache::new(cache::DEFAULT_CAPACITY) }
    }

    /// The gateway's own tools only.
    pub fn builtin(deps: BuiltinDeps) -> Self {
        Self::new(vec![Box::new(BuiltinTools::new(deps))])
    }

    /// The listing version of every source for this caller: with the caller's grant, it decides
    /// what the caller sees (a `subscriptions/listen` stream watches both).
    pub async fn versions(&self, ctx: &AccessContext) -> Vec<u64> {
        let mut v = Vec::with_capacity(self.sources.len());
        for s in &self.sources {
            v.push(s.list(ctx).await.version);
        }
        v
    }

    /// `{"tools":[…]}` with the tools this caller may see, serialised once per (listing versions,
    /// visible set) and then shared by every caller with that same visible set.
    pub async fn list_json(&self, ctx: &AccessContext, client_providers: Option<&[String]>) -> Arc<str> {
        let mut listings = Vec::with_capacity(self.sources.len());
        for s in &self.sources {
            listings.push(s.list(ctx).await);
        }
        // The key: each source's listing version, then the visible tools as a bitset over every
        // listed tool in source order. Equal versions mean equal tool lists (the `ToolSource`
        // contract), so equal keys mean the same tools are visible and the same JSON is due.
        let total: usize = listings.iter().map(|l| l.tools.len()).sum();
        let mut key = Vec::with_capacity(listings.len() + total.div_ceil(64));
        key.extend(listings.iter().map(|l| l.version));
        let bits_at = key.len();
        key.resize(bits_at + total.div_ceil(64), 0);
        for (bit, tool) in listings.iter().flat_map(|l| l.tools.iter()).enumerate() {
            if visibility(&ctx.scopes, &ctx.restrictions, client_providers, tool) == Visibility::Visible {
                key[bits_at + bit / 64] |= 1 << (bit % 64);
            }
        }
        if let Some(json) = self.lists.get(&key) {
            return json;
        }
        let json = serialise_visible(&listings, &key[bits_at..]);
        self.lists.insert(key.into_boxed_slice(), json)
    }

    /// The tool this caller means by `name`: the first tool of that name it may see, in listing
    /// order (the one `list_json` shows). A tool it may not see is `None`, exactly like an unknown one.
    pub async fn resolve(
        &self,
        ctx: &AccessContext,
        client_providers: Option<&[String]>,
        name: &str,
    ) -> Option<ResolvedTool> {
        for (source, s) in self.sources.iter().enumerate() {
            let listing = s.list(ctx).await;
            let found = listing.tools.iter().position(|t| {
                t.name == name && visibility(&ctx.scopes, &ctx.restrictions, client_providers, t) == Visibility::Visible
            });
            if let Some(index) = found {
                return Some(ResolvedTool { source, tools: listing.tools, index });
            }
        }
        None
    }

    /// The tools this caller may see, as `list_json` shows them: in listing order, under the
    /// policy, the first of each name.
    pub async fn visible(&self, ctx: &AccessContext, client_providers: Option<&[String]>) -> Vec<ToolDescriptor> {
        let mut seen = HashSet::new();
        self.descriptors(ctx)
            .await
            .into_iter()
            .filter(|t| visibility(&ctx.scopes, &ctx.restrictions, client_providers, t) == Visibility::Visible)
            .filter(|t| seen.insert(t.name.clone()))
            .collect()
    }

    /// Every tool the sources list for this caller, in listing order (before the policy: filter
    /// with `policy::visibility`).
    pub async fn descriptors(&self, ctx: &AccessContext) -> Vec<ToolDescriptor> {
        let mut out = Vec::new();
        for s in &self.sources {
            out.extend(s.list(ctx).await.tools.iter().cloned());
        }
        out
    }

    /// `{"prompts"|"resources"|"resourceTemplates": [...]}`: what every source offers of `kind`,
    /// of the providers this caller may read.
    pub async fn offered_json(&self, ctx: &AccessContext, client_providers: Option<&[String]>, kind: Offer) -> Value {
        let mut items = Vec::new();
        for s in &self.sources {
            for o in s.offered(ctx, kind).await {
                if provider_readable(&ctx.scopes, &ctx.restrictions, client_providers, &o.provider) {
                    items.push(o.item);
                }
            }
        }
        json!({ kind.key(): items })
    }

    /// `prompts/get`: `None` when no readable provider offers a prompt of that name.
    pub async fn get_prompt(
        &self,
        ctx: &AccessContext,
        client_providers: Option<&[String]>,
        name: &str,
        args: &Value,
    ) -> Option<Result<Value, ToolError>> {
        let readable = |p: &str| provider_readable(&ctx.scopes, &ctx.restrictions, client_providers, p);
        for s in &self.sources {
            if let Some(r) = s.get_prompt(ctx, name, args, &readable).await {
                return Some(r);
            }
        }
        None
    }

    /// `resources/read`: `None` when no readable provider offers that URI.
    pub async fn read_resource(
        &self,
        ctx: &AccessContext,
        client_providers: Option<&[String]>,
        uri: &str,
    ) -> Option<Result<Value, ToolError>> {
        let readable = |p: &str| provider_readable(&ctx.scopes, &ctx.restrictions, client_providers, p);
        for s in &self.sources {
            if let Some(r) = s.read_resource(ctx, uri, &readable).await {
                return Some(r);
            }
        }
        None
    }

    /// A watch on `uri` from the first source that offers it to this caller under the policy.
    pub async fn watch_resource(
        &self,
        ctx: &AccessContext,
        client_providers: Option<&[String]>,
        uri: &str,
    ) -> Option<ResourceWatch> {
        let readable = |p: &str| provider_readable(&ctx.scopes, &ctx.restrictions, client_providers, p);
        for s in &self.sources {
            if let Some(w) = s.watch_resource(ctx, uri, &readable).await {
                return Some(w);
            }
        }
        None
    }

    pub async fn call(
        &self,
        ctx: &AccessContext,
        tool: &ResolvedTool,
        args: &Value,
        round: &Round<'_>,
    ) -> Result<Answer, ToolError> {
        match self.sources.get(tool.source) {
            Some(source) => source.call(ctx, tool.descriptor(), args, round).await,
            // Only a `ResolvedTool` of another registry can miss.
            None => Err(ToolError::Failed(format!("{} is not offered here", tool.descriptor().name))),
        }
    }
}

/// The list JSON of the visible tools (`bits` over every listed tool in source order). A name
/// already listed is skipped, so the list shows the tool `resolve` would call.
fn serialise_visible(listings: &[ToolListing], bits: &[u64]) -> Arc<str> {
    let mut seen = HashSet::new();
    let tools: Vec<Value> = listings
        .iter()
        .flat_map(|l| l.tools.iter())
        .enumerate()
        .filter(|(i, _)| bits[i / 64] & (1 << (i % 64)) != 0)
        .filter(|(_, t)| seen.insert(t.name.as_str()))
        .map(|(_, t)| t.to_mcp_json())
        .collect();
    Arc::from(json!({ "tools": tools }).to_string())
}
