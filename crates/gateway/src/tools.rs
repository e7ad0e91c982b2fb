//! The tool registry: built-in tools with name, description, JSON-schema input and read/write access.
//! Every tool is called with the request context injected; none receives credentials in its arguments.

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::context::RequestContext;

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
}

pub struct ToolOutput {
    pub text: String,
    pub structured: Option<Value>,
}

#[async_trait]
pub trait ToolHandler: Send + Sync {
    async fn call(&self, ctx: &RequestContext, args: &Value) -> Result<ToolOutput, ToolError>;
}

pub struct Tool {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub input_schema: Value,
    pub output_schema: Option<Value>,
    pub access: Access,
    pub handler: Box<dyn ToolHandler>,
}

impl Tool {
    fn descriptor(&self) -> Value {
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

pub struct ToolRegistry {
    tools: Vec<Tool>,
    /// `{"tools":[…]}`, serialized once: listing is the hottest read path.
    list_json: String,
}

impl ToolRegistry {
    pub fn new(tools: Vec<Tool>) -> Self {
        let list = json!({ "tools": tools.iter().map(Tool::descriptor).collect::<Vec<_>>() });
        Self { list_json: list.to_string(), tools }
    }

    pub fn builtin() -> Self {
        Self::new(vec![whoami(), list_connections()])
    }

    pub fn list_json(&self) -> &str {
        &self.list_json
    }

    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.name == name)
    }
}

struct Whoami;

#[async_trait]
impl ToolHandler for Whoami {
    async fn call(&self, ctx: &RequestContext, _args: &Value) -> Result<ToolOutput, ToolError> {
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

fn whoami() -> Tool {
    Tool {
        name: "whoami",
        title: "Who am I",
        description: "Returns the signed-in account (id and email), the client application and the scopes this session was granted.",
        input_schema: json!({"type": "object", "properties": {}, "additionalProperties": false}),
        output_schema: Some(json!({
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
        })),
        access: Access::Read,
        handler: Box::new(Whoami),
    }
}

struct ListConnections;

#[async_trait]
impl ToolHandler for ListConnections {
    async fn call(&self, _ctx: &RequestContext, _args: &Value) -> Result<ToolOutput, ToolError> {
        // No provider can be connected yet (connections arrive with the provider catalog), so every
        // account's list is empty; the shape is the one `GET /api/v1/connections` will return.
        let v = json!({"connections": [], "total": 0});
        Ok(ToolOutput { text: v.to_string(), structured: Some(v) })
    }
}

fn list_connections() -> Tool {
    Tool {
        name: "list-connections",
        title: "List connections",
        description: "Lists the services (Google, Slack, Jira, …) this account has connected, with their status.",
        input_schema: json!({"type": "object", "properties": {}, "additionalProperties": false}),
        output_schema: Some(json!({
            "type": "object",
            "properties": {
                "connections": {"type": "array", "items": {"type": "object"}},
                "total": {"type": "integer"}
            },
            "required": ["connections", "total"]
        })),
        access: Access::Read,
        handler: Box::new(ListConnections),
    }
}
