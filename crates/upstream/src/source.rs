//! The gateway's view of this source (`ToolSource`): listing for a caller, prompts and
//! resources, and calls — to an upstream MCP server or a declared HTTP tool.

use super::*;

#[async_trait]
impl ToolSource for UpstreamTools {
    async fn list(&self, ctx: &AccessContext) -> ToolListing {
        self.sweep();
        let reach = ctx.restrictions.reach(ctx.client_providers.as_deref());
        let connections = self.connections(&ctx.account_id).await;
        let wanted: Vec<&(Connection, Arc<Provider>)> =
            connections.iter().filter(|(c, _)| reach.allows(&c.provider_id)).collect();
        let fetched = futures_util::future::join_all(wanted.iter().map(|(c, p)| self.listing(c, p))).await;
        let mut key: Composite = Vec::new();
        let mut listed = Vec::new();
        for ((c, _), found) in wanted.iter().zip(fetched) {
            if let Some((serial, snap)) = found {
                key.push((c.id.to_string(), serial));
                listed.push((c, snap));
            }
        }
        let bridged = self.bridged_for(ctx);
        key.extend(bridged.iter().map(|p| (format!("bridge:{}", p.id), 0)));
        if let Some(l) = self.composites.lock().unwrap().get(&key) {
            return l.clone();
        }
        let mut tools = self.describe(&listed);
        self.describe_bridged(&bridged, &mut tools);
        let listing = ToolListing { version: self.next_version.fetch_add(1, Ordering::Relaxed), tools: tools.into() };
        let mut composites = self.composites.lock().unwrap();
        if composites.len() > 10_000 {
            // Versions are never reused: a dropped set gets a new one when it is seen again.
            composites.clear();
        }
        composites.entry(key).or_insert(listing).clone()
    }

    async fn offered(&self, ctx: &AccessContext, kind: Offer) -> Vec<Offered> {
        self.named(ctx, kind).await.into_iter().map(|n| n.offered).collect()
    }

    async fn get_prompt(
        &self,
        ctx: &AccessContext,
        name: &str,
        args: &Value,
        readable: Readable<'_>,
    ) -> Option<Result<Value, ToolError>> {
        let found = self.named(ctx, Offer::Prompts).await.into_iter().find(|n| {
            n.offered.item.get("name").and_then(Value::as_str) == Some(name) && readable(&n.offered.provider)
        })?;
        let mut params = GetPromptRequestParams::new(found.upstream_name.clone());
        if let Value::Object(a) = args {
            params = params.with_arguments(a.clone());
        }
        let provider = found.offered.provider.clone();
        let result = self
            .request(&found.connection, &found.url, move |up| {
                let params = params.clone();
                async move {
                    match up.peer.get_prompt_once(params).await? {
                        GetPromptResponse::Complete(r) => Ok(serde_json::to_value(r).unwrap_or(Value::Null)),
                        _ => Err(ServiceError::UnexpectedResponse),
                    }
                }
            })
            .await;
        Some(
            result
                .map(|mut v| {
                    self.filter(&mut v, "messages");
                    v
                })
                .map_err(|e| {
                    if answers::is_invalid_params(&provider, &e) {
                        ToolError::InvalidParams(e)
                    } else {
                        ToolError::Failed(format!("the {provider} server could not give that prompt: {e}"))
                    }
                }),
        )
    }

    async fn read_resource(
        &self,
        ctx: &AccessContext,
        uri: &str,
        readable: Readable<'_>,
    ) -> Option<Result<Value, ToolError>> {
        let (c, url) = self.resource_owner(ctx, uri, readable).await?;
        let (c, url) = (&c, &url);
        let params = ReadResourceRequestParams::new(uri);
        let result = self
            .request(c, url, move |up| {
                let params = params.clone();
                async move {
                    match up.peer.read_resource_once(params).await? {
                        ReadResourceResponse::Complete(r) => Ok(serde_json::to_value(r).unwrap_or(Value::Null)),
                        _ => Err(ServiceError::UnexpectedResponse),
                    }
                }
            })
            .await;
        let provider = &c.provider_id;
        Some(
            result
                .map(|mut v| {
                    self.filter(&mut v, "contents");
                    v
                })
                .map_err(|e| ToolError::Failed(format!("the {provider} server could not read that resource: {e}"))),
        )
    }

    async fn watch_resource(&self, ctx: &AccessContext, uri: &str, readable: Readable<'_>) -> Option<ResourceWatch> {
        let (c, url) = self.resource_owner(ctx, uri, readable).await?;
        self.watch(&c, &url, uri).await
    }

    async fn call(
        &self,
        ctx: &AccessContext,
        tool: &ToolDescriptor,
        args: &Value,
        round: &Round<'_>,
    ) -> Result<Answer, ToolError> {
        let started = std::time::Instant::now();
        let answer = self.call_upstream(ctx, tool, args, round).await;
        // By provider (the operator's catalog bounds the label) and outcome: did the provider answer?
        let provider = tool.provider.clone().unwrap_or_default();
        let outcome = if answer.is_ok() { "ok" } else { "failed" };
        metrics::counter!("bridgekeeper_upstream_calls_total", "provider" => provider.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!("bridgekeeper_upstream_call_duration_seconds", "provider" => provider)
            .record(started.elapsed().as_secs_f64());
        answer
    }
}

/// A `tools/call` whose progress and log messages go to the caller's relay while it runs; dropped
/// before its answer (the caller went away or cancelled), it is cancelled at the server.
async fn relayed_call(
    up: &Upstream,
    params: CallToolRequestParams,
    relay: bk_gateway::relay::Relay,
) -> Result<rmcp::model::CallToolResult, ServiceError> {
    use rmcp::model::{CallToolRequest, ClientRequest, ServerResult};
    let handle = up
        .peer
        .send_request_with_option(
            ClientRequest::CallToolRequest(CallToolRequest::new(params)),
            rmcp::service::PeerRequestOptions::no_options(),
        )
        .await?;
    let _route = up.routes.register(handle.progress_token.clone(), handle.id.clone(), relay);
    let mut cancel = CancelOnDrop { peer: up.peer.clone(), id: Some(handle.id.clone()) };
    let answer = handle.await_response().await;
    cancel.id = None;
    // rmcp hands the result back at once but runs notification handlers as tasks of their own: a
    // progress notification the server sent just before its result may still be on its way to the
    // relay. Let those run before the result ends the stream (best effort: order is not promised).
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    match answer? {
        ServerResult::CallToolResult(r) => Ok(r),
        _ => Err(ServiceError::UnexpectedResponse),
    }
}

/// Tells the server a request is abandoned (`notifications/cancelled`) unless disarmed.
struct CancelOnDrop {
    peer: Peer<RoleClient>,
    id: Option<rmcp::model::RequestId>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let peer = self.peer.clone();
        tokio::spawn(async move {
            let params = rmcp::model::CancelledNotificationParam::new(Some(id), Some("cancelled by the client".into()));
            if let Err(e) = peer.notify_cancelled(params).await {
                tracing::debug!(error = %e, "telling an upstream server a call was cancelled failed");
            }
        });
    }
}

impl UpstreamTools {
    async fn call_upstream(
        &self,
        ctx: &AccessContext,
        tool: &ToolDescriptor,
        args: &Value,
        round: &Round<'_>,
    ) -> Result<Answer, ToolError> {
        let Some(target) = &tool.upstream else {
            return Err(ToolError::Failed(format!("{} is not an upstream tool", tool.name)));
        };
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let failed = |why: String| self.count_failure(ToolError::Failed(why));
        let provider = tool.provider.clone().unwrap_or_default();
        if Self::is_bridged(target) {
            return self.call_bridged(ctx, target, args).await.map_err(failed);
        }
        // The connection as this caller's tenant holds it now (the listing may be a moment old).
        let id = ConnectionId::from_string(target.connection_id.clone());
        let connections = self.connections(&ctx.account_id).await;
        let Some((c, p)) = connections.iter().find(|(c, _)| c.id == id) else {
            let why = format!("the {provider} connection no longer exists; connect {provider} again");
            return self.connect_needed(&provider, why, round).map_err(|e| self.count_failure(e));
        };
        if c.status != ConnectionStatus::Active {
            let why = format!(
                "the {provider} connection is {}{}: reconnect it",
                c.status.as_str(),
                c.last_error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default(),
            );
            return self.connect_needed(&provider, why, round).map_err(|e| self.count_failure(e));
        }
        let url = match &p.tools {
            CatalogTools::UpstreamMcp { url } => url,
            CatalogTools::Http { tools } => {
                let Some(def) = tools.iter().find(|t| t.name == target.name) else {
                    return Err(failed(format!("{} is no longer offered by {provider}", tool.name)));
                };
                return self.call_http(c, def, args, &provider).await.map_err(failed);
            }
            CatalogTools::None => return Err(failed(format!("{provider} offers no tools now"))),
        };
        let mut params = CallToolRequestParams::new(target.name.clone());
        if let Value::Object(a) = args {
            params = params.with_arguments(a.clone());
        }
        let relay = round.relay.clone().filter(|r| r.wants_anything());
        let answer = self
            .request(c, url, move |up| {
                let params = params.clone();
                let relay = relay.clone();
                async move {
                    let result = match relay {
                        None => up.peer.call_tool(params).await?,
                        Some(relay) => relayed_call(&up, params, relay).await?,
                    };
                    Ok(serde_json::to_value(result).unwrap_or(Value::Null))
                }
            })
            .await;
        match answer {
            Ok(mut value) => {
                self.filter(&mut value, "content");
                Ok(Answer::Upstream(value))
            }
            Err(why) => {
                tracing::warn!(connection = %c.id, provider = %provider, tool = %target.name, why = %why, "an upstream tool call failed");
                Err(failed(why))
            }
        }
    }

    /// The connection that offers `uri` to this caller (a listed resource first, else the first
    /// whose template matches), of a provider it may read, and its server's URL.
    async fn resource_owner(
        &self,
        ctx: &AccessContext,
        uri: &str,
        readable: Readable<'_>,
    ) -> Option<(Connection, Url)> {
        let reach = ctx.restrictions.reach(ctx.client_providers.as_deref());
        let connections = self.connections(&ctx.account_id).await;
        let mut by_template = None;
        for (c, p) in connections.iter().filter(|(c, _)| reach.allows(&c.provider_id) && readable(&c.provider_id)) {
            let CatalogTools::UpstreamMcp { url } = &p.tools else { continue };
            let Some((_, snap)) = self.listing(c, p).await else { continue };
            if snap.resources.iter().any(|r| r.get("uri").and_then(Value::as_str) == Some(uri)) {
                return Some((c.clone(), url.clone()));
            }
            if by_template.is_none()
                && snap
                    .templates
                    .iter()
                    .any(|t| t.get("uriTemplate").and_then(Value::as_str).is_some_and(|t| template_matches(t, uri)))
            {
                by_template = Some((c.clone(), url.clone()));
            }
        }
        by_template
    }
}

/// The key of the connect link among a 2026-07-28 call's input requests.
const CONNECT_REQUEST: &str = "connect";

impl UpstreamTools {
    /// Counts a failed call (`/metrics`) on its way out.
    fn count_failure(&self, e: ToolError) -> ToolError {
        self.counters.call_failures.fetch_add(1, Ordering::Relaxed);
        e
    }

    /// A call whose connection is missing or unusable: the person has to (re)connect the
    /// provider. A client that can open a URL for them is asked to (URL-mode elicitation: a
    /// 2026-07-28 `input_required` whose retry finds the connection working again, or — legacy
    /// revisions — error -32042); otherwise a tool error with the link.
    fn connect_needed(&self, provider: &str, why: String, round: &Round<'_>) -> Result<Answer, ToolError> {
        let url = self.settings.connect_url.clone();
        if !round.can_elicit_url {
            return Err(ToolError::Failed(format!("{why} at {url}")));
        }
        let message = format!("{why}: open {url} to connect {provider}, then try again.");
        if !round.modern {
            return Err(ToolError::NeedsUrl { url, message });
        }
        // The retry of an earlier round: the person declined or the connection is still not usable.
        if round.state.is_some() {
            let action = round
                .responses
                .and_then(|r| r.get(CONNECT_REQUEST))
                .and_then(|r| r.get("action"))
                .and_then(Value::as_str);
            if matches!(action, Some("decline" | "cancel")) {
                return Err(ToolError::Failed(format!("{why}; the person chose not to (at {url})")));
            }
        }
        Ok(Answer::InputRequired {
            requests: json!({CONNECT_REQUEST: {
                "method": "elicitation/create",
                "params": {"mode": "url", "url": url, "message": message},
            }}),
            state: json!({"connect": provider}),
        })
    }

    /// One declared HTTP tool's call with the connection's credential (one 401 answered with a
    /// refreshed credential).
    pub(crate) async fn call_http(
        &self,
        c: &Connection,
        def: &HttpTool,
        args: &Value,
        provider: &str,
    ) -> Result<Answer, String> {
        let mut cred = self.broker.credential(&c.account_id, &c.id).await.map_err(|e| unusable(provider, &e))?;
        let req = http::request(&self.api, def, args, bearer(cred.credential()))?;
        let mut permit = self.admit(provider, &def.url, &c.account_id)?;
        let mut req = Some(req);
        for attempt in 0..2 {
            let req = match req.take() {
                Some(r) => r,
                None => http::request(&self.api, def, args, bearer(cred.credential()))?,
            };
            let answer = self.api.send(req).await.map_err(|e| {
                self.ended(&mut permit, &def.url, Ending::Failed);
                tracing::warn!(connection = %c.id, provider = %provider, tool = %def.name, error = %e, "an HTTP tool call failed");
                format!("{provider} could not be reached: {e}")
            })?;
            self.ended(&mut permit, &def.url, if answer.status >= 500 { Ending::Failed } else { Ending::Answered });
            match http::outcome(provider, def, answer) {
                http::Outcome::Done { text, structured } => {
                    let mut v = json!({"text": text, "structured": structured});
                    (self.redact)(&mut v);
                    let text = v["text"].as_str().unwrap_or_default().to_owned();
                    let structured = Some(v["structured"].take()).filter(|s| !s.is_null());
                    return Ok(Answer::Complete(bk_gateway::tools::ToolOutput { text, structured }));
                }
                http::Outcome::Unauthorized if attempt == 0 => {
                    cred = self
                        .broker
                        .credential_after_401(&c.account_id, &c.id, &cred)
                        .await
                        .map_err(|e| unusable(provider, &e))?;
                }
                http::Outcome::Unauthorized => {
                    return Err(format!("{provider} refused this connection's credential (HTTP 401): reconnect it"));
                }
                http::Outcome::Failed(why) => return Err(self.redact_text(why)),
            }
        }
        Err(format!("{provider} refused this connection's credential (HTTP 401): reconnect it"))
    }
}
