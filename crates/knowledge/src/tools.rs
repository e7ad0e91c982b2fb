//! The knowledge-base MCP tools as one `ToolSource`: `add-to-knowledge-base` (write) and
//! `search-knowledge-base` (read). They belong to no provider and to no single base, so the
//! gateway's policy shows them by scope; the grant's `allowedKnowledgeBaseIds` is enforced inside
//! each call (a base outside it is "not found", worded exactly like one that does not exist). The
//! tenant is the token's, never an argument. Answers are data, bounded in size; additions are audited.

use std::sync::Arc;

use async_trait::async_trait;
use bk_access::AccessContext;
use bk_domain::access::Clock;
use bk_domain::audit::{AuditEvent, AuditSink, Outcome};
use bk_domain::knowledge::{MAX_NAME_CHARS, MAX_QUERY_BYTES, MAX_TITLE_CHARS, MAX_URL_BYTES};
use bk_gateway::tools::{Access, Answer, Round, ToolDescriptor, ToolError, ToolListing, ToolOutput, ToolSource};
use serde_json::{Value, json};

use crate::{Knowledge, KnowledgeError, NewDocument, NewSource, Reach};

pub const ADD: &str = "add-to-knowledge-base";
pub const SEARCH: &str = "search-knowledge-base";
/// Both tools' names: no upstream tool may be named like one.
pub const TOOL_NAMES: &[&str] = &[ADD, SEARCH];

/// The most results one search call answers, and its default.
const MAX_TOOL_RESULTS: u64 = 20;
const DEFAULT_TOOL_RESULTS: u64 = 5;
/// The most characters of a snippet in a tool answer, and of the whole answer's text.
const MAX_SNIPPET_CHARS: usize = 600;
const MAX_ANSWER_BYTES: usize = 32 * 1024;

/// The tools never change while the process runs: one listing, one version.
const VERSION: u64 = 1;

pub struct KnowledgeTools {
    knowledge: Arc<Knowledge>,
    audit: Arc<dyn AuditSink>,
    clock: Arc<dyn Clock>,
    listing: ToolListing,
}

impl KnowledgeTools {
    pub fn new(knowledge: Arc<Knowledge>, audit: Arc<dyn AuditSink>, clock: Arc<dyn Clock>) -> Self {
        let max_bytes = knowledge.limits.max_document_bytes;
        let tools = vec![add_descriptor(max_bytes), search_descriptor()];
        Self { knowledge, audit, clock, listing: ToolListing { version: VERSION, tools: tools.into() } }
    }

    async fn add(&self, ctx: &AccessContext, args: &Value) -> Result<Answer, ToolError> {
        let reach = reach(ctx);
        let name = opt_str(args, "name")?;
        let title = opt_str(args, "title")?;
        let source = match opt_str(args, "source_type")?.unwrap_or("text") {
            "text" => {
                if opt_str(args, "url")?.is_some() {
                    return Err(ToolError::InvalidParams("url is only for source_type url".into()));
                }
                match opt_str(args, "content")? {
                    Some(c) => NewSource::Text(c.to_owned()),
                    None => return Err(ToolError::InvalidParams("content is required for source_type text".into())),
                }
            }
            "url" => {
                if opt_str(args, "content")?.is_some() {
                    return Err(ToolError::InvalidParams(
                        "content is not taken with source_type url: the text is fetched from the url".into(),
                    ));
                }
                match opt_str(args, "url")? {
                    Some(u) => NewSource::Url(u.to_owned()),
                    None => return Err(ToolError::InvalidParams("url is required for source_type url".into())),
                }
            }
            _ => return Err(ToolError::InvalidParams("source_type must be text or url".into())),
        };
        let base = self.knowledge.base_for_tool(reach, name).await.map_err(|e| refusal(e, name))?;
        let doc = self
            .knowledge
            .add_document(reach, &base, NewDocument { title: title.map(str::to_owned), source })
            .await
            .map_err(|e| refusal(e, name))?;
        let host =
            doc.url.as_deref().and_then(|u| url::Url::parse(u).ok()).and_then(|u| u.host_str().map(str::to_owned));
        let mut event = AuditEvent::new("knowledge.document.added", Outcome::Success, self.clock.now_ms())
            .account(&ctx.account_id)
            .client(&ctx.client_id)
            .session(&ctx.session_id)
            .target(&doc.id)
            .detail("knowledge_base_id", base.id.clone())
            .detail("source_type", doc.source_type.as_str())
            .detail("size", doc.size)
            .detail("via", "mcp");
        if let Some(h) = host {
            // The host only: a URL's path or query may carry something private.
            event = event.detail("url_host", h);
        }
        self.audit.record(event);
        Ok(complete(json!({
            "document": doc,
            "knowledgeBase": {"id": base.id, "name": base.name},
        })))
    }

    async fn search(&self, ctx: &AccessContext, args: &Value) -> Result<Answer, ToolError> {
        let reach = reach(ctx);
        let Some(query) = opt_str(args, "query")? else {
            return Err(ToolError::InvalidParams("query is required".into()));
        };
        let name = opt_str(args, "name")?;
        let limit = match args.get("limit") {
            None | Some(Value::Null) => DEFAULT_TOOL_RESULTS,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=MAX_TOOL_RESULTS).contains(&n) => n,
                _ => {
                    return Err(ToolError::InvalidParams(format!(
                        "limit must be an integer from 1 to {MAX_TOOL_RESULTS}"
                    )));
                }
            },
        };
        let base = match name {
            Some(n) => Some(self.knowledge.base_named(reach, n).await.map_err(|e| refusal(e, name))?),
            None => None,
        };
        let hits = self
            .knowledge
            .search(reach, base.as_ref(), query, u32::try_from(limit).unwrap_or(5))
            .await
            .map_err(|e| refusal(e, name))?;
        let mut results: Vec<Value> = hits
            .into_iter()
            .map(|mut h| {
                if h.snippet.chars().count() > MAX_SNIPPET_CHARS {
                    h.snippet = h.snippet.chars().take(MAX_SNIPPET_CHARS).collect::<String>() + "…";
                }
                json!(h)
            })
            .collect();
        // The answer stays bounded whatever the documents hold: the worst hits go first.
        while results.len() > 1 && json!({"results": results}).to_string().len() > MAX_ANSWER_BYTES {
            results.pop();
        }
        Ok(complete(json!({"query": query, "results": results})))
    }
}

fn reach(ctx: &AccessContext) -> Reach<'_> {
    Reach { account: &ctx.account_id, allowed: ctx.restrictions.allowed_knowledge_base_ids.as_deref() }
}

fn opt_str<'a>(args: &'a Value, key: &str) -> Result<Option<&'a str>, ToolError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ToolError::InvalidParams(format!("{key} must be a string"))),
    }
}

/// A failed call as the client sees it: the same words for a base that is another account's,
/// outside the grant, or absent.
fn refusal(e: KnowledgeError, name: Option<&str>) -> ToolError {
    match e {
        KnowledgeError::NotFound(what) => ToolError::Failed(match (what, name) {
            ("knowledge base", Some(n)) => {
                let shown: String = n.chars().filter(|c| !c.is_control()).take(MAX_NAME_CHARS).collect();
                format!("no knowledge base named {shown:?} that this application may use")
            }
            ("knowledge base", None) => "the default knowledge base is not one this application may use".into(),
            (other, _) => format!("{other} not found"),
        }),
        KnowledgeError::Invalid { field, message } => ToolError::InvalidParams(format!("{field}: {message}")),
        KnowledgeError::Store(e) => {
            tracing::error!(error = %e, "knowledge base tool: storage failed");
            ToolError::Failed("the knowledge base could not be reached; retry".into())
        }
        other => ToolError::Failed(other.to_string()),
    }
}

fn complete(v: Value) -> Answer {
    Answer::Complete(ToolOutput { text: v.to_string(), structured: Some(v) })
}

fn descriptor(name: &str, title: &str, description: String, schemas: (Value, Value), access: Access) -> ToolDescriptor {
    ToolDescriptor {
        name: name.to_owned(),
        title: title.to_owned(),
        description,
        input_schema: schemas.0,
        output_schema: Some(schemas.1),
        access,
        provider: None,
        agent_id: None,
        // No single base: the grant's list is enforced inside the call, on the base it names.
        knowledge_base_id: None,
        upstream: None,
    }
}

fn add_descriptor(max_bytes: usize) -> ToolDescriptor {
    descriptor(
        ADD,
        "Add to knowledge base",
        format!(
            "Stores a document in one of this account's knowledge bases (the default one when name is absent) so that \
             search-knowledge-base finds it later. Give the text in content (source_type text), or a public https URL \
             whose page is fetched and reduced to text (source_type url; text/html, text/markdown or text/plain). At \
             most {max_bytes} bytes of text."
        ),
        (
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS,
                        "description": "The knowledge base's name (absent: the default knowledge base)"},
                    "content": {"type": "string", "minLength": 1, "description": "The document's text (source_type text)"},
                    "source_type": {"type": "string", "enum": ["text", "url"], "default": "text"},
                    "url": {"type": "string", "format": "uri", "maxLength": MAX_URL_BYTES,
                        "description": "The page to fetch (source_type url)"},
                    "title": {"type": "string", "minLength": 1, "maxLength": MAX_TITLE_CHARS,
                        "description": "The document's title (absent: the page's title or the text's first line)"}
                },
                "additionalProperties": false
            }),
            json!({
                "type": "object",
                "properties": {
                    "document": {"type": "object"},
                    "knowledgeBase": {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}}}
                },
                "required": ["document", "knowledgeBase"]
            }),
        ),
        Access::Write,
    )
}

fn search_descriptor() -> ToolDescriptor {
    descriptor(
        SEARCH,
        "Search knowledge base",
        "Full-text search of this account's knowledge bases (one of them when name is given): the best-matching \
         documents first, each with a snippet of the matching passage (matched words between **)."
            .into(),
        (
            json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_BYTES, "description": "Words to look for"},
                    "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS,
                        "description": "Only this knowledge base (absent: every one this application may use)"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_TOOL_RESULTS, "default": DEFAULT_TOOL_RESULTS}
                },
                "required": ["query"],
                "additionalProperties": false
            }),
            json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string"},
                    "results": {"type": "array", "items": {"type": "object"}}
                },
                "required": ["query", "results"]
            }),
        ),
        Access::Read,
    )
}

#[async_trait]
impl ToolSource for KnowledgeTools {
    async fn list(&self, _ctx: &AccessContext) -> ToolListing {
        self.listing.clone()
    }

    async fn call(
        &self,
        ctx: &AccessContext,
        tool: &ToolDescriptor,
        args: &Value,
        _round: &Round<'_>,
    ) -> Result<Answer, ToolError> {
        match tool.name.as_str() {
            ADD => self.add(ctx, args).await,
            SEARCH => self.search(ctx, args).await,
            other => Err(ToolError::Failed(format!("{other} is not a knowledge-base tool"))),
        }
    }
}
