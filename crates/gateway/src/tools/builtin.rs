//! The gateway's own tools (`whoami`, `list-connections`, `restrict-access`) as one `ToolSource`.
//! They belong to no provider, so the policy governs them by scope only. The set never changes while
//! the process runs: one listing, one version.

use std::sync::Arc;

use async_trait::async_trait;
use bk_domain::ports::{ConnectionQuery, ConnectionStore, MAX_CONNECTIONS_PAGE};
use serde_json::{Value, json};

use super::{Access, Answer, Round, ToolDescriptor, ToolError, ToolListing, ToolOutput, ToolSource};
use bk_access::{AccessContext, Verifier};
use bk_domain::access::Clock;
use bk_domain::audit::{AuditEvent, AuditSink, Outcome};
use bk_domain::ports::{SessionStore, StoreError};
use bk_domain::restrictions::{ProviderPermission, Restrictions, valid_provider_id};

/// What the built-ins reach besides the caller's context.
#[derive(Clone)]
pub struct BuiltinDeps {
    /// Where `list-connections` reads the caller's connections.
    pub connections: Arc<dyn ConnectionStore>,
    pub grants: Arc<dyn GrantChanges>,
    pub audit: Arc<dyn AuditSink>,
    pub clock: Arc<dyn Clock>,
}

/// How a built-in changes the caller's own grant.
#[async_trait]
pub trait GrantChanges: Send + Sync {
    /// Compare-and-set of the grant's restrictions (see `SessionStore::narrow_restrictions`).
    async fn narrow(
        &self,
        ctx: &AccessContext,
        expected: &Restrictions,
        narrowed: &Restrictions,
    ) -> Result<bool, StoreError>;
}

/// The store, and the verifier's cache of the session so this instance sees the change at once
/// (the others within the cache's second).
pub struct StoredGrants {
    pub store: Arc<dyn SessionStore>,
    pub verifier: Arc<Verifier>,
}

#[async_trait]
impl GrantChanges for StoredGrants {
    async fn narrow(
        &self,
        ctx: &AccessContext,
        expected: &Restrictions,
        narrowed: &Restrictions,
    ) -> Result<bool, StoreError> {
        let swapped = self.store.narrow_restrictions(&ctx.account_id, &ctx.session_id, expected, narrowed).await?;
        if swapped {
            self.verifier.forget_session(&ctx.session_id);
        }
        Ok(swapped)
    }
}

/// The built-in set is fixed, so its one listing has one version.
const VERSION: u64 = 1;

#[async_trait]
trait Handler: Send + Sync {
    async fn call(&self, ctx: &AccessContext, args: &Value, round: &Round<'_>) -> Result<Answer, ToolError>;
}

pub struct BuiltinTools {
    listing: ToolListing,
    /// In the order of `listing.tools`.
    handlers: Vec<Box<dyn Handler>>,
}

impl BuiltinTools {
    pub fn new(deps: BuiltinDeps) -> Self {
        let (tools, handlers): (Vec<ToolDescriptor>, Vec<Box<dyn Handler>>) =
            [whoami(), list_connections(deps.connections.clone()), restrict_access(deps)].into_iter().unzip();
        Self { listing: ToolListing { version: VERSION, tools: tools.into() }, handlers }
    }
}

#[async_trait]
impl ToolSource for BuiltinTools {
    async fn list(&self, _ctx: &AccessContext) -> ToolListing {
        self.listing.clone()
    }

    async fn call(
        &self,
        ctx: &AccessContext,
        tool: &ToolDescriptor,
        args: &Value,
        round: &Round<'_>,
    ) -> Result<Answer, ToolError> {
        let Some(i) = self.listing.tools.iter().position(|t| t.name == tool.name) else {
            return Err(ToolError::Failed(format!("{} is not a built-in tool", tool.name)));
        };
        self.handlers[i].call(ctx, args, round).await
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
    let no_input = json!({"type": "object", "properties": {}, "additionalProperties": false});
    builtin_with(name, title, description, (no_input, output_schema), Access::Read, handler)
}

fn builtin_with(
    name: &str,
    title: &str,
    description: &str,
    (input_schema, output_schema): (Value, Value),
    access: Access,
    handler: Box<dyn Handler>,
) -> (ToolDescriptor, Box<dyn Handler>) {
    let descriptor = ToolDescriptor {
        name: name.to_owned(),
        title: title.to_owned(),
        description: description.to_owned(),
        input_schema,
        output_schema: Some(output_schema),
        access,
        provider: None,
        agent_id: None,
        knowledge_base_id: None,
        upstream: None,
    };
    (descriptor, handler)
}

struct Whoami;

#[async_trait]
impl Handler for Whoami {
    async fn call(&self, ctx: &AccessContext, _args: &Value, _round: &Round<'_>) -> Result<Answer, ToolError> {
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
        Ok(complete(v))
    }
}

/// A complete answer whose text is its structured content.
fn complete(v: Value) -> Answer {
    Answer::Complete(ToolOutput { text: v.to_string(), structured: Some(v) })
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
    async fn call(&self, ctx: &AccessContext, _args: &Value, _round: &Round<'_>) -> Result<Answer, ToolError> {
        // The caller's own connections (the tenant is the token's, never an argument), newest
        // first, without those of providers this grant or client may not use: an app kept away
        // from a provider does not learn that the account uses it.
        let q = ConnectionQuery {
            limit: MAX_CONNECTIONS_PAGE,
            providers: ctx.restrictions.reach(ctx.client_providers.as_deref()),
            ..Default::default()
        };
        let page = self.store.list_connections(&ctx.account_id, &q).await.map_err(|e| {
            tracing::error!(error = %e, "listing connections failed");
            ToolError::Failed("the connections could not be read; retry".into())
        })?;
        Ok(complete(json!({"connections": page.items, "total": page.total})))
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

/// `restrict-access`: lowers this grant's permission for one provider (to `read` or `disabled`),
/// after the person confirms in a form (MCP 2026-07-28 multi-round-trip: the first call asks, the
/// retry with the answer applies it). A grant is only ever narrowed this way, never widened. The
/// confirmation is bound to the grant as it was when asked (compare-and-set), so a replayed or
/// stale confirmation changes nothing.
struct RestrictAccess {
    deps: BuiltinDeps,
}

/// The key of the one input request (a form with one boolean field of the same name).
const CONFIRM: &str = "confirm";

impl RestrictAccess {
    fn ask(&self, ctx: &AccessContext, provider: &str, permission: ProviderPermission) -> Answer {
        let from = ctx.restrictions.permission_for(provider).as_str();
        let message = format!(
            "Restrict this application's access to {provider} from {from} to {}? It cannot be widened again \
             without a new authorization.",
            permission.as_str()
        );
        Answer::InputRequired {
            requests: json!({CONFIRM: {
                "method": "elicitation/create",
                "params": {
                    "mode": "form",
                    "message": message,
                    "requestedSchema": {
                        "type": "object",
                        "properties": {CONFIRM: {
                            "type": "boolean",
                            "title": "Restrict access",
                            "description": format!("Set {provider} to {}", permission.as_str()),
                            "default": false,
                        }},
                        "required": [CONFIRM],
                    },
                },
            }}),
            state: json!({"expected": ctx.restrictions}),
        }
    }

    async fn apply(
        &self,
        ctx: &AccessContext,
        expected: &Restrictions,
        provider: &str,
        permission: ProviderPermission,
    ) -> Result<Answer, ToolError> {
        let Some(narrowed) = expected.narrowed(provider, permission) else {
            return Ok(unchanged(expected, provider, "nothing to change"));
        };
        let swapped = self.deps.grants.narrow(ctx, expected, &narrowed).await.map_err(|e| {
            tracing::error!(error = %e, "narrowing a grant failed");
            ToolError::Failed("the server could not change the access; retry".into())
        })?;
        if !swapped {
            return Err(ToolError::Failed(
                "this application's access changed since the confirmation was asked, or the confirmation was \
                 already used; nothing changed — call the tool again to ask anew"
                    .into(),
            ));
        }
        let from = expected.permission_for(provider).as_str();
        self.deps.audit.record(
            AuditEvent::new("grant.narrowed", Outcome::Success, self.deps.clock.now_ms())
                .account(&ctx.account_id)
                .client(&ctx.client_id)
                .session(&ctx.session_id)
                .target(provider)
                .detail("provider", provider)
                .detail("from", from)
                .detail("to", permission.as_str()),
        );
        tracing::info!(account = %ctx.account_id, session = %ctx.session_id, provider, from, to = permission.as_str(), "grant narrowed");
        Ok(complete(json!({
            "changed": true,
            "provider": provider,
            "permission": permission.as_str(),
            "provider_permissions": narrowed.provider_permissions,
            "default_provider_permission": narrowed.default_provider_permission,
        })))
    }
}

/// The answer when nothing changed, saying why.
fn unchanged(r: &Restrictions, provider: &str, why: &str) -> Answer {
    complete(json!({
        "changed": false,
        "reason": why,
        "provider": provider,
        "permission": r.permission_for(provider).as_str(),
        "provider_permissions": r.provider_permissions,
        "default_provider_permission": r.default_provider_permission,
    }))
}

#[async_trait]
impl Handler for RestrictAccess {
    async fn call(&self, ctx: &AccessContext, args: &Value, round: &Round<'_>) -> Result<Answer, ToolError> {
        let provider = args.get("provider").and_then(Value::as_str).unwrap_or_default();
        if !valid_provider_id(provider) {
            return Err(ToolError::InvalidParams(
                "provider must be a provider id (1-64 of a-z, 0-9, - and _), such as github".into(),
            ));
        }
        let permission = match args.get("permission").and_then(Value::as_str) {
            Some("read") => ProviderPermission::Read,
            Some("disabled") => ProviderPermission::Disabled,
            _ => return Err(ToolError::InvalidParams("permission must be read or disabled".into())),
        };
        let Some(state) = &round.state else {
            if ctx.restrictions.narrowed(provider, permission).is_none() {
                return Ok(unchanged(&ctx.restrictions, provider, "the access is already at or below that"));
            }
            if !round.modern {
                return Err(ToolError::Failed(
                    "restrict-access asks the person to confirm, which needs MCP 2026-07-28 (multi-round-trip \
                     requests) and a client that supports form elicitation"
                        .into(),
                ));
            }
            if !round.can_elicit_form {
                return Err(ToolError::NeedsCapability {
                    required: json!({"elicitation": {"form": {}}}),
                    message: "restrict-access asks the person to confirm: the client must support form elicitation"
                        .into(),
                });
            }
            return Ok(self.ask(ctx, provider, permission));
        };
        let Some(expected) = state.get("expected").and_then(|e| serde_json::from_value::<Restrictions>(e.clone()).ok())
        else {
            return Err(ToolError::Failed("the request state does not belong to this tool".into()));
        };
        let answer = round.responses.and_then(|r| r.get(CONFIRM));
        let Some(answer) = answer else {
            // Asked but not answered: ask again (the specification's rule for missing input).
            return Ok(self.ask(ctx, provider, permission));
        };
        let accepted = answer.get("action").and_then(Value::as_str) == Some("accept")
            && answer.pointer("/content/confirm").and_then(Value::as_bool) == Some(true);
        if !accepted {
            return Ok(unchanged(&expected, provider, "the person did not confirm"));
        }
        self.apply(ctx, &expected, provider, permission).await
    }
}

fn restrict_access(deps: BuiltinDeps) -> (ToolDescriptor, Box<dyn Handler>) {
    let permissions = json!({"type": "object", "additionalProperties": {"type": "string"}});
    builtin_with(
        "restrict-access",
        "Restrict this app's access",
        "Lowers what this application may do with one connected service (provider), to read-only or none, \
         after the person confirms. Use it when the person asks to stop this app from writing to or reading \
         a service. Access can only be narrowed here, never widened.",
        (
            json!({
                "type": "object",
                "properties": {
                    "provider": {"type": "string", "description": "The provider id, such as github or google", "minLength": 1, "maxLength": 64},
                    "permission": {"type": "string", "enum": ["read", "disabled"], "description": "The new permission"}
                },
                "required": ["provider", "permission"],
                "additionalProperties": false
            }),
            json!({
                "type": "object",
                "properties": {
                    "changed": {"type": "boolean"},
                    "reason": {"type": "string"},
                    "provider": {"type": "string"},
                    "permission": {"type": "string"},
                    "provider_permissions": permissions,
                    "default_provider_permission": {"type": "string"}
                },
                "required": ["changed", "provider", "permission"]
            }),
        ),
        Access::Write,
        Box::new(RestrictAccess { deps }),
    )
}
