//! The gateway as an agent's tool belt: the tools a caller may call (`Gateway::visible_tools`:
//! what its `tools/list` shows when it may call tools, nothing when it may only list them) and a
//! call by name (`Gateway::call_tool`) through the very
//! path of `tools/call` — the same scope check, policy (`Tools::resolve`), argument validation,
//! per-tool limits and audit event (`dispatch::call_tool`). An agent loop therefore never sees or
//! calls a tool the caller's token could not call itself.

use serde_json::{Value, json};

use crate::Gateway;
use crate::dispatch::{self, Reply};
use crate::tools::{Round, ToolDescriptor};
use crate::transport::LATEST_VERSION;
use bk_access::AccessContext;

/// How a tool call made for an agent ended.
#[derive(Clone, Debug)]
pub struct AgentToolCall {
    /// `false`: the call was refused or the tool reported an error.
    pub ok: bool,
    /// The `CallToolResult` when the tool answered, or `{"error": "…"}`.
    pub result: Value,
}

impl Gateway {
    /// The tools `ctx` may call, in `tools/list` order (the first of a name), under the one policy.
    /// A token without `universal-mcp-read-write` sees tools but calls none (`call_tool`), so an
    /// agent running for it is offered none: a model is never shown a tool, a write tool least of
    /// all, that the token could not call.
    pub async fn visible_tools(&self, ctx: &AccessContext) -> Vec<ToolDescriptor> {
        if !ctx.scopes.allows_mcp_call() {
            return Vec::new();
        }
        self.tools.visible(ctx, ctx.client_providers.as_deref()).await
    }

    /// Calls `name` for `ctx` exactly as `tools/call` would (a token without
    /// `universal-mcp-read-write` calls nothing). `relay`: where the tool's progress goes, if anywhere.
    pub async fn call_tool(
        &self,
        ctx: &AccessContext,
        name: &str,
        args: &Value,
        relay: Option<crate::relay::Relay>,
    ) -> AgentToolCall {
        if !ctx.scopes.allows_mcp_call() {
            return refused("this token may not call tools (it lacks universal-mcp-read-write)");
        }
        let params = json!({"name": name, "arguments": args});
        let round = Round { relay, ..Round::default() };
        match dispatch::call_tool(self, ctx, LATEST_VERSION, &params, &round).await {
            Reply::Result(r) => AgentToolCall { ok: r.get("isError") != Some(&Value::Bool(true)), result: r },
            Reply::Error { message, .. } | Reply::ErrorData { message, .. } | Reply::Limited(_, message) => {
                refused(&message)
            }
            Reply::NeedsCapability { message, .. } => refused(&message),
            Reply::InputRequired { .. } => refused("this tool needs input from the person, which an agent cannot give"),
        }
    }
}

fn refused(message: &str) -> AgentToolCall {
    AgentToolCall { ok: false, result: json!({"error": message}) }
}
