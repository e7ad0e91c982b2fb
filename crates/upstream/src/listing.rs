//! What each connection's server offers, cached per connection (tools, prompts, resources,
//! templates: one snapshot under one TTL), and described under the names the caller sees.

use super::*;

/// A prompt, resource or template under the name the caller sees, and where it comes from.
pub(crate) struct Named {
    pub(crate) offered: Offered,
    pub(crate) connection: Connection,
    pub(crate) url: Url,
    pub(crate) upstream_name: String,
}

impl UpstreamTools {
    /// The connection's tool list from its server (one 401 answered with a refreshed credential).
    /// `Ok(None)`: another caller fetched it while this one waited for the connection's slot.
    pub(crate) async fn fetch_listing(&self, c: &Connection, url: &Url) -> Result<Option<Snapshot>, String> {
        let slot = self.slot(c.id.as_str());
        let mut slot = slot.lock().await;
        if self
            .listings
            .lock()
            .unwrap()
            .get(c.id.as_str())
            .is_some_and(|l| l.fetched.elapsed() < self.settings.list_ttl)
        {
            return Ok(None);
        }
        let mut cred = self.broker.credential(&c.account_id, &c.id).await.map_err(|e| e.to_string())?;
        let mut permit = self.admit(&c.provider_id, url, &c.account_id)?;
        for attempt in 0..2 {
            let result = match self.peer(&mut slot, url, &cred).await {
                Ok(up) => {
                    let _busy = up.routes.busy();
                    tokio::time::timeout(self.settings.list_timeout, snapshot(&up.peer))
                        .await
                        .map_err(|_| format!("{SLOW} {} ms (listing)", self.settings.list_timeout.as_millis()))
                        .and_then(|r| r.map_err(service_failure))
                }
                Err(e) => Err(e),
            };
            self.ended(&mut permit, url, answers::ending(&result));
            match result {
                Ok(snap) => return Ok(Some(snap)),
                Err(e) if e == "401" && attempt == 0 => {
                    *slot = None;
                    cred = self
                        .broker
                        .credential_after_401(&c.account_id, &c.id, &cred)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Err(e) => {
                    if keeps_client(&e) {
                        // The server answered (or was slow): the client is still good.
                    } else {
                        *slot = None;
                    }
                    if let Some(scopes) = e.strip_prefix(STEP_UP) {
                        self.step_up(c, scopes).await;
                        return Err(format!("the server asks for more access (scope {scopes})"));
                    }
                    return Err(if e == "401" {
                        "the server refused the connection's credential (401)".into()
                    } else {
                        e
                    });
                }
            }
        }
        Err("the server refused the connection's credential (401)".into())
    }

    /// The connection's listing (cached, or fetched now): its serial and tools. `None` when its
    /// server cannot be listed now (logged and counted). Declared HTTP tools never change: serial 0.
    pub(crate) async fn listing(&self, c: &Connection, p: &Provider) -> Option<(u64, Arc<Snapshot>)> {
        let url = match &p.tools {
            CatalogTools::UpstreamMcp { url } => url,
            CatalogTools::Http { tools } => {
                let tools = tools.iter().map(http_listed).collect();
                return Some((0, Arc::new(Snapshot { tools, ..Snapshot::default() })));
            }
            CatalogTools::None => return None,
        };
        {
            let l = self.listings.lock().unwrap();
            // A connection that cannot be used now is not asked: its tools as last seen, if any.
            if c.status != ConnectionStatus::Active {
                return l.get(c.id.as_str()).map(|cached| (cached.serial, cached.snap.clone()));
            }
            if let Some(cached) = l.get(c.id.as_str())
                && cached.fetched.elapsed() < self.settings.list_ttl
            {
                self.counters.list_cache_hits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("bridgekeeper_cache_requests_total", "cache" => "upstream_tool_lists", "result" => "hit")
                    .increment(1);
                return Some((cached.serial, cached.snap.clone()));
            }
        }
        self.counters.lists.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("bridgekeeper_cache_requests_total", "cache" => "upstream_tool_lists", "result" => "miss")
            .increment(1);
        match self.fetch_listing(c, url).await {
            Ok(fetched) => {
                let mut l = self.listings.lock().unwrap();
                // A concurrent fetch may have stored one meanwhile: keep the first (same tools).
                if let Some(cached) = l.get(c.id.as_str())
                    && cached.fetched.elapsed() < self.settings.list_ttl
                {
                    return Some((cached.serial, cached.snap.clone()));
                }
                let fetched = fetched?;
                let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
                let snap = Arc::new(fetched);
                l.insert(c.id.to_string(), CachedListing { fetched: Instant::now(), serial, snap: snap.clone() });
                Some((serial, snap))
            }
            Err(why) => {
                self.counters.list_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    connection = %c.id, provider = %c.provider_id, why = %why,
                    "an upstream MCP server could not be listed; its tools are left out"
                );
                None
            }
        }
    }

    /// The descriptors of these listings under their namespaced names.
    pub(crate) fn describe(&self, listed: &[(&Connection, Arc<Snapshot>)]) -> Vec<ToolDescriptor> {
        let mut namer = names::Namer::default();
        namer.reserve(self.reserved.iter().map(String::as_str));
        let mut per_provider: HashMap<&str, usize> = HashMap::new();
        for (c, _) in listed {
            *per_provider.entry(c.provider_id.as_str()).or_default() += 1;
        }
        let mut out = Vec::new();
        for (c, snap) in listed {
            let tools = &snap.tools;
            let provider = self.catalog.get(&c.provider_id);
            let label = (per_provider[c.provider_id.as_str()] > 1).then(|| names::connection_label(c.id.as_str()));
            for t in tools.iter() {
                let Some(upstream_name) = t.get("name").and_then(Value::as_str) else { continue };
                let read_only_hint = t.pointer("/annotations/readOnlyHint") == Some(&Value::Bool(true));
                let (says_read, says_write) = provider
                    .map(|p| {
                        (
                            p.read_tools.iter().any(|x| x == upstream_name),
                            p.write_tools.iter().any(|x| x == upstream_name),
                        )
                    })
                    .unwrap_or((false, false));
                let access = if says_read || (read_only_hint && !says_write) { Access::Read } else { Access::Write };
                let name = namer.name(&c.provider_id, label.as_deref(), upstream_name);
                let text = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                out.push(ToolDescriptor {
                    name,
                    title: t
                        .get("title")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_else(|| upstream_name.to_owned()),
                    description: text("description"),
                    input_schema: t.get("inputSchema").cloned().unwrap_or_else(|| json!({"type": "object"})),
                    output_schema: t.get("outputSchema").cloned(),
                    access,
                    provider: Some(c.provider_id.clone()),
                    agent_id: None,
                    knowledge_base_id: None,
                    upstream: Some(Arc::new(UpstreamTool {
                        connection_id: c.id.to_string(),
                        name: upstream_name.to_owned(),
                        listed: t.clone(),
                    })),
                });
            }
        }
        out
    }

    /// What the caller's reachable connections offer of `kind`, names namespaced like tools'
    /// (`<provider>_<name>`, a connection label when a provider is connected twice); resources and
    /// templates keep their URIs.
    pub(crate) async fn named(&self, ctx: &AccessContext, kind: Offer) -> Vec<Named> {
        let reach = ctx.restrictions.reach(ctx.client_providers.as_deref());
        let connections = self.connections(&ctx.account_id).await;
        let wanted: Vec<(&Connection, &Url, &Arc<Provider>)> = connections
            .iter()
            .filter(|(c, _)| reach.allows(&c.provider_id))
            .filter_map(|(c, p)| match &p.tools {
                CatalogTools::UpstreamMcp { url } => Some((c, url, p)),
                _ => None,
            })
            .collect();
        let snaps = futures_util::future::join_all(wanted.iter().map(|(c, _, p)| self.listing(c, p))).await;
        let mut per_provider: HashMap<&str, usize> = HashMap::new();
        for (c, _, _) in &wanted {
            *per_provider.entry(c.provider_id.as_str()).or_default() += 1;
        }
        let mut namer = names::Namer::default();
        let mut out = Vec::new();
        for ((c, url, _), snap) in wanted.iter().zip(snaps) {
            let Some((_, snap)) = snap else { continue };
            let label = (per_provider[c.provider_id.as_str()] > 1).then(|| names::connection_label(c.id.as_str()));
            let items = match kind {
                Offer::Prompts => &snap.prompts,
                Offer::Resources => &snap.resources,
                Offer::ResourceTemplates => &snap.templates,
            };
            for item in items {
                let Some(upstream_name) = item.get("name").and_then(Value::as_str) else { continue };
                let mut item = item.clone();
                item["name"] = json!(namer.name(&c.provider_id, label.as_deref(), upstream_name));
                out.push(Named {
                    offered: Offered { provider: c.provider_id.clone(), item },
                    connection: (*c).clone(),
                    url: (*url).clone(),
                    upstream_name: upstream_name.to_owned(),
                });
            }
        }
        out
    }
}

/// Everything a server offers: its tools, and its prompts, resources and resource templates where
/// it declared those capabilities (a failure there leaves them out; the tools still count).
pub(crate) async fn snapshot(peer: &Peer<RoleClient>) -> Result<Snapshot, ServiceError> {
    let tools = peer.list_all_tools().await?;
    let caps = peer.peer_info().map(|i| i.capabilities.clone());
    let mut snap = Snapshot {
        tools: tools.into_iter().filter_map(|t| serde_json::to_value(t).ok()).collect(),
        ..Snapshot::default()
    };
    let values = |v: Vec<Value>| v;
    if caps.as_ref().is_some_and(|c| c.prompts.is_some()) {
        match peer.list_all_prompts().await {
            Ok(p) => snap.prompts = values(p.into_iter().filter_map(|x| serde_json::to_value(x).ok()).collect()),
            Err(e) => tracing::info!(error = %e, "an upstream server's prompts could not be listed"),
        }
    }
    if caps.as_ref().is_some_and(|c| c.resources.is_some()) {
        match peer.list_all_resources().await {
            Ok(r) => snap.resources = r.into_iter().filter_map(|x| serde_json::to_value(x).ok()).collect(),
            Err(e) => tracing::info!(error = %e, "an upstream server's resources could not be listed"),
        }
        match peer.list_all_resource_templates().await {
            Ok(t) => snap.templates = t.into_iter().filter_map(|x| serde_json::to_value(x).ok()).collect(),
            Err(e) => tracing::info!(error = %e, "an upstream server's resource templates could not be listed"),
        }
    }
    Ok(snap)
}

/// Whether `uri` is one of the URIs of an RFC 6570 template (expressions match one or more
/// characters; the literal parts must appear in order, the first at the start, the last at the end).
pub(crate) fn template_matches(template: &str, uri: &str) -> bool {
    let mut literals = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        literals.push(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => rest = &rest[open + close + 1..],
            None => return false,
        }
    }
    literals.push(rest);
    if literals.len() == 1 {
        return template == uri;
    }
    let (first, last) = (literals[0], literals[literals.len() - 1]);
    let Some(mut tail) = uri.strip_prefix(first) else { return false };
    for lit in &literals[1..literals.len() - 1] {
        // At least one character for the expression before it.
        let Some(pos) = tail.get(1..).and_then(|t| t.find(lit)) else { return false };
        tail = &tail[1 + pos + lit.len()..];
    }
    tail.len() > last.len() && tail.ends_with(last)
}

/// How a declared HTTP tool is listed (as an MCP `Tool`).
pub(crate) fn http_listed(t: &HttpTool) -> Value {
    let mut v = json!({
        "name": t.name,
        "description": t.description,
        "inputSchema": t.input_schema,
    });
    if let Some(title) = &t.title {
        v["title"] = json!(title);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::template_matches;

    #[test]
    fn uris_match_their_templates() {
        let t = "demo://resource/dynamic/text/{resourceId}";
        assert!(template_matches(t, "demo://resource/dynamic/text/7"));
        assert!(!template_matches(t, "demo://resource/dynamic/text/"));
        assert!(!template_matches(t, "demo://resource/dynamic/blob/7"));
        assert!(template_matches("notion://{space}/page/{id}.md", "notion://eng/page/42.md"));
        assert!(!template_matches("notion://{space}/page/{id}.md", "notion://eng/page/42.txt"));
        assert!(!template_matches("notion://{space}/page/{id}.md", "notion:///page/42.md"));
        assert!(template_matches("fixed://a", "fixed://a") && !template_matches("fixed://a", "fixed://b"));
        assert!(!template_matches("broken://{x", "broken://x"));
    }
}
