//! The gateway's own tools (`whoami`, `list-connections`) as one `ToolSource`. They belong to no
//! provider, so the policy governs them by scope only. The set never changes while the process
//! runs: one listing, one version.

use std::sync::Arc;

use async_trait::async_trait;
use bk_domain::ports::{ConnectionQuery, ConnectionStore, MAX_CONNECTIONS_PAGE};
use bk_domain::restrictions::ProviderPermission;
use serde_json::{Value, json};

use super::{Access, ToolDescriptor, ToolError, ToolListing, ToolOutput, ToolSource};
use bk_access::AccessContext;

/// The built-in set is fixed, so its one listing has one version.
const VERSION: u64 = 1;

#[async_trait]
trait Handler: Send + Sync {
    async fn call(&self, ctx: &AccessContext, args: &Value) -> Result<ToolOutput, ToolError>;
}

pub struct BuiltinTools {
    listing: ToolListing,
    /// In the order of `listing.tools`.
    handlers: Vec<Box<dyn Handler>>,
}

impl BuiltinTools {
    /// `connections`: where `list-connections` reads the caller's connections.
    pub fn new(connections: Arc<dyn ConnectionStore>) -> Self {
        let (tools, handlers): (Vec<ToolDescriptor>, Vec<Box<dyn Handler>>) =
            [whoami(), list_connections(connections)].into_iter().unzip();
        Self { listing: ToolListing { version: VERSION, tools: tools.into() }, handlers }
    }
}

#[async_trait]
impl ToolSource for BuiltinTools {
    async fn list(&self, _ctx: &AccessContext) -> ToolListing {
        self.listing.clone()
    }

    async fn call(&self, ctx: &AccessContext, tool: &ToolDescriptor, args: &Value) -> Result<ToolOutput, ToolError> {
        let Some(i) = self.listing.tools.iter().position(|t| t.name == tool.name) else {
            return Err(ToolError::Failed(format!("{} is not a built-in tool", tool.name)));
        };
        self.handlers[i].call(ctx, args).await
    }
}

/// A built-in: no provider, no agent, no knowledge base.
fn builtin(
    name: &str,
    title: &str,
    description: &str,
    output_schema: Value,
    handler: Box<dyn Handler>,
) -> (ToolDescriptor, Box<dyn Handler>) {
    let descriptor = ToolDescriptor {
        name: name.to_owned(),
        title: title.to_owned(),
        description: description.to_owned(),
        input_schema: json!({"type": "object", "properties": {}, "additionalProperties": false}),
        output_schema: Some(output_schema),
        access: Access::Read,
        provider: None,
        agent_id: None,
        knowledge_base_id: None,
    };
    (descriptor, handler)
}

struct Whoami;

#[async_trait]
impl Handler for Whoami {
    async fn call(&self, ctx: &AccessContext, _args: &Value) -> Result<ToolOutput, ToolError> {
        let v = json!({
            "account_id": ctx.account_id,
            "email": ctx.email,
            "client_id": ctx.client_id,
            "session_id": ctx.session_id,
            "scopes": ctx.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "credential": ctx.kind.as_str(),
            "provider_permissions": ctx.restrictions.provider_permissions,
            "default_provider_permission": ctx.restrictions.default_provider_permission,
            "agent_ids": ctx.restrictions.allowed_agent_ids,
            "knowledge_base_ids": ctx.restrictions.allowed_knowledge_base_ids,
        });
        Ok(ToolOutput { text: v.to_string(), structured: Some(v) })
    }
}

fn whoami() -> (ToolDescriptor, Box<dyn Handler>) {
    builtin(
        "whoami",
        "Who am I",
        "Returns the signed-in account (id and email), the client application and the scopes this session was granted.",
        json!({
            "type": "object",
            "properties": {
                "account_id": {"type": "string"},
                "email": {"type": "string"},
                "client_id": {"type": "string"},
                "session_id": {"type": "string"},
                "scopes": {"type": "array", "items": {"type": "string"}},
                "credential": {"type": "string", "enum": ["oauth", "pat"]},
                "provider_permissions": {"type": "object", "additionalProperties": {"type": "string"}},
                "default_provider_permission": {"type": "string"},
                "agent_ids": {"type": ["array", "null"], "items": {"type": "string"}},
                "knowledge_base_ids": {"type": ["array", "null"], "items": {"type": "string"}}
            },
            "required": ["account_id", "email", "client_id", "session_id", "scopes"]
        }),
        Box::new(Whoami),
    )
}

struct ListConnections {
    store: Arc<dyn ConnectionStore>,
}

#[async_trait]
impl Handler for ListConnections {
    async fn call(&self, ctx: &AccessContext, _args: &Value) -> Result<ToolOutput, ToolError> {
        // The caller's own connections (the tenant is the token's, never an argument), newest
        // first, without those of providers this grant or client may not use: an app kept away
        // from a provider does not learn that the account uses it.
        let q = ConnectionQuery { limit: MAX_CONNECTIONS_PAGE, ..Default::default() };
        let page = self.store.list_connections(&ctx.account_id, &q).await.map_err(|e| {
            tracing::error!(error = %e, "listing connections failed");
            ToolError::Failed("the connections could not be read; retry".into())
        })?;
        let visible: Vec<_> = page
            .items
            .iter()
            .filter(|c| {
                ctx.client_providers.as_ref().is_none_or(|allowed| allowed.contains(&c.provider_id))
                    && ctx.restrictions.permission_for(&c.provider_id) != ProviderPermission::Disabled
            })
            .collect();
        // Beyond the first page the hidden ones are not counted out (at most 100 are listed).
        let hidden = (page.items.len() - visible.len()) as u64;
        let v = json!({"connections": visible, "total": page.total - hidden});
        Ok(ToolOutput { text: v.to_string(), structured: Some(v) })
    }
}

fn list_connections(store: Arc<dyn ConnectionStore>) -> (ToolDescriptor, Box<dyn Handler>) {
    builtin(
        "list-connections",
        "List connections",
        "Lists the services (Google, Slack, Jira, …) this account has connected, with their status.",
        json!({
            "type": "object",
            "properties": {
                "connections": {"type": "array", "items": {"type": "object"}},
                "total": {"type": "integer"}
            },
            "required": ["connections", "total"]
        }),
        Box::new(ListConnections { store }),
    )
}
