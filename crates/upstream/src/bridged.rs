//! Bridge mode's tools (reference 002, "context injection"): a bridged provider's declarative HTTP
//! tools are offered to every authorization-code session that can reach the provider (and to the
//! token-exchange tokens of such a session, which share it) — never where no backend token can
//! exist: personal access tokens and bound machine clients' `client_credentials` sessions, which no
//! sign-in crossed. A call
//! sends the scoped token sealed on **the calling session** (its id from the request's access
//! context), never a connection's, another session's or anything in the arguments. A 401 from the
//! backend marks the token for verification at the session's next refresh and ends the call with a
//! tool error saying so.

use super::*;
use bk_domain::grant::GrantKind;

/// The connection id under which a bridged provider's tools are listed (no connection has it).
const BRIDGE_TARGET: &str = "bridge:";

impl UpstreamTools {
    /// Bridge mode's token source, when a provider is bridged.
    pub fn with_bridge(mut self, bridge: Option<Arc<bk_connections::bridge::Bridge>>) -> Self {
        self.bridge = bridge;
        self
    }

    /// The bridged providers with declared tools this caller reaches: sessions a person signed in
    /// to (authorization code; a token exchanged from one shares its session). A personal access
    /// token or a machine client's session was never verified by the backend, so it holds no token:
    /// offering the tools there would only list calls that fail.
    pub(crate) fn bridged_for(&self, ctx: &AccessContext) -> Vec<Arc<Provider>> {
        let Some(bridge) = &self.bridge else { return Vec::new() };
        if ctx.kind != GrantKind::OAuth || ctx.machine {
            return Vec::new();
        }
        let reach = ctx.restrictions.reach(ctx.client_providers.as_deref());
        bridge
            .providers()
            .filter(|p| reach.allows(&p.id))
            .filter(|p| matches!(&p.tools, CatalogTools::Http { tools } if !tools.is_empty()))
            .cloned()
            .collect()
    }

    /// Appends the bridged providers' tools to `out` (names unique among those already there).
    pub(crate) fn describe_bridged(&self, providers: &[Arc<Provider>], out: &mut Vec<ToolDescriptor>) {
        let mut namer = names::Namer::default();
        namer.reserve(self.reserved.iter().map(String::as_str));
        namer.reserve(out.iter().map(|d| d.name.as_str()));
        for p in providers {
            let CatalogTools::Http { tools } = &p.tools else { continue };
            for t in tools {
                let listed = listing::http_listed(t);
                let access = if p.read_tools.iter().any(|x| x == &t.name) { Access::Read } else { Access::Write };
                out.push(ToolDescriptor {
                    name: namer.name(&p.id, None, &t.name),
                    title: t.title.clone().unwrap_or_else(|| t.name.clone()),
                    description: t.description.clone(),
                    input_schema: t.input_schema.clone(),
                    output_schema: None,
                    access,
                    provider: Some(p.id.clone()),
                    agent_id: None,
                    knowledge_base_id: None,
                    upstream: Some(Arc::new(UpstreamTool {
                        connection_id: format!("{BRIDGE_TARGET}{}", p.id),
                        name: t.name.clone(),
                        listed,
                    })),
                });
            }
        }
    }

    /// Is this listed tool a bridged provider's?
    pub(crate) fn is_bridged(target: &UpstreamTool) -> bool {
        target.connection_id.starts_with(BRIDGE_TARGET)
    }

    /// One call of a bridged provider's tool with the calling session's token.
    pub(crate) async fn call_bridged(
        &self,
        ctx: &AccessContext,
        target: &UpstreamTool,
        args: &Value,
    ) -> Result<Answer, String> {
        let provider = &target.connection_id[BRIDGE_TARGET.len()..];
        let (Some(bridge), Some(p)) = (&self.bridge, self.catalog.get(provider).filter(|p| p.bridged().is_some()))
        else {
            return Err(format!("{provider} is no longer offered"));
        };
        let CatalogTools::Http { tools } = &p.tools else { return Err(format!("{provider} offers no tools now")) };
        let Some(def) = tools.iter().find(|t| t.name == target.name) else {
            return Err(format!("{} is no longer offered by {provider}", target.name));
        };
        let token = match bridge.session_token(&ctx.account_id, &ctx.session_id, provider).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                return Err(format!(
                    "this session carries no {provider} token (it began before {provider} was bridged, or \
                     outside a sign-in): sign in again"
                ));
            }
            Err(e) => {
                tracing::error!(session = %ctx.session_id, provider = %provider, error = %e, "bridge mode: the session's token cannot be opened");
                return Err(format!("this session's {provider} token cannot be used: sign in again"));
            }
        };
        if token.reverify {
            return Err(format!(
                "{provider} refused this session's token: the account is verified again when the client next \
                 refreshes its access token; retry after that (or sign in again)"
            ));
        }
        let req = http::request(&self.api, def, args, &token.token)?;
        let mut permit = self.admit(provider, &def.url, &ctx.account_id)?;
        let answer = self.api.send(req).await.map_err(|e| {
            self.ended(&mut permit, &def.url, Ending::Failed);
            tracing::warn!(session = %ctx.session_id, provider = %provider, tool = %def.name, error = %e, "a bridged tool call failed");
            format!("{provider} could not be reached: {e}")
        })?;
        self.ended(&mut permit, &def.url, if answer.status >= 500 { Ending::Failed } else { Ending::Answered });
        match http::outcome(provider, def, answer) {
            http::Outcome::Done { text, structured } => {
                let mut v = json!({"text": text, "structured": structured});
                (self.redact)(&mut v);
                let text = v["text"].as_str().unwrap_or_default().to_owned();
                let structured = Some(v["structured"].take()).filter(|s| !s.is_null());
                Ok(Answer::Complete(bk_gateway::tools::ToolOutput { text, structured }))
            }
            http::Outcome::Unauthorized => {
                match bridge.mark_for_reverification(&ctx.account_id, &token.id).await {
                    Ok(_) => {
                        tracing::info!(session = %ctx.session_id, provider = %provider, "bridge mode: the backend refused the session's token; verified again at the next refresh")
                    }
                    Err(e) => {
                        tracing::error!(session = %ctx.session_id, error = %e, "bridge mode: marking a token for verification failed")
                    }
                }
                Err(format!(
                    "{provider} refused this session's token (HTTP 401): the account is verified again when the \
                     client next refreshes its access token; retry after that (or sign in again)"
                ))
            }
            http::Outcome::Failed(why) => Err(self.redact_text(why)),
        }
    }
}
