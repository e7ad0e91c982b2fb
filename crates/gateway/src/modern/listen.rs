//! `subscriptions/listen` (MCP 2026-07-28, `basic/patterns/subscriptions`): one long-lived POST
//! response stream of the change notifications a client opted in to. The stream is acknowledged
//! first (`notifications/subscriptions/acknowledged` with the subset honoured), and every message
//! on it carries the subscription id (the request's JSON-RPC id) in `_meta`.
//!
//! Honoured: `toolsListChanged`, and `resourceSubscriptions` for the URIs a provider the caller
//! may read offers from a server that takes subscriptions (the acknowledgment lists those; the
//! gateway subscribes upstream once per connection and resource, whatever the number of
//! listeners, and sends `notifications/resources/updated` when the server says one changed).
//! The list-changed filters of prompts and resources are left out of the acknowledgment (as the
//! specification asks for types a server does not support).
//!
//! What decides a caller's tools is its grant (scopes, provider permissions, restrictions), its
//! client's providers and each tool source's listing. The stream re-verifies its bearer token every
//! second — the same check as a request, through the verifier's one-second session cache, so a
//! change made on any instance is seen here within about two seconds — and sends
//! `notifications/tools/list_changed` when any of those changed. When the token stops verifying
//! (revoked, expired) or the server shuts down, the stream ends with the graceful-closure result.

use std::collections::hash_map::DefaultHasher;
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::Gateway;
use crate::jsonrpc::{self, INVALID_PARAMS, INVALID_REQUEST};
use bk_access::{AccessContext, bearer_token};

/// Where the subscription id travels on every message of the stream.
const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
/// How often the stream re-checks its token and the caller's tools.
const RECHECK_EVERY: Duration = Duration::from_secs(1);
/// An SSE comment this often keeps idle proxies from closing the stream.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(25);
/// Streams one account may hold open on one instance.
pub const MAX_STREAMS_PER_ACCOUNT: usize = 8;

/// The filter fields and their types; anything else is ignored (forward compatible).
const BOOLEAN_FILTERS: [&str; 3] = ["toolsListChanged", "promptsListChanged", "resourcesListChanged"];

/// Resources one stream may watch.
pub const MAX_RESOURCE_SUBSCRIPTIONS: usize = 32;
const MAX_URI_LEN: usize = 2048;

/// What a stream was asked for.
#[derive(Debug, Default, PartialEq)]
struct Filter {
    tools: bool,
    resources: Vec<String>,
}

/// Checks the filter.
fn read_filter(params: Option<&Value>) -> Result<Filter, String> {
    let Some(filter) = params.and_then(|p| p.get("notifications")) else {
        return Ok(Filter::default());
    };
    let Some(filter) = filter.as_object() else {
        return Err("params.notifications must be an object".into());
    };
    for key in BOOLEAN_FILTERS {
        if filter.get(key).is_some_and(|v| !v.is_boolean()) {
            return Err(format!("params.notifications.{key} must be a boolean"));
        }
    }
    let mut resources = Vec::new();
    if let Some(uris) = filter.get("resourceSubscriptions") {
        let Some(uris) = uris.as_array().filter(|a| a.iter().all(Value::is_string)) else {
            return Err("params.notifications.resourceSubscriptions must be an array of strings".into());
        };
        if uris.len() > MAX_RESOURCE_SUBSCRIPTIONS {
            return Err(format!(
                "params.notifications.resourceSubscriptions may name at most {MAX_RESOURCE_SUBSCRIPTIONS} resources"
            ));
        }
        for u in uris.iter().filter_map(Value::as_str) {
            if u.is_empty() || u.len() > MAX_URI_LEN {
                return Err(format!(
                    "params.notifications.resourceSubscriptions: a URI has 1 to {MAX_URI_LEN} characters"
                ));
            }
            if !resources.iter().any(|r| r == u) {
                resources.push(u.to_owned());
            }
        }
    }
    Ok(Filter { tools: filter.get("toolsListChanged") == Some(&Value::Bool(true)), resources })
}

pub async fn listen(
    gw: &Arc<Gateway>,
    ctx: &AccessContext,
    id: &Value,
    params: Option<&Value>,
    streams_ok: bool,
    headers: &HeaderMap,
) -> Response {
    if !streams_ok {
        return jsonrpc::error_status(
            StatusCode::NOT_ACCEPTABLE,
            id,
            INVALID_REQUEST,
            "subscriptions/listen answers with an event stream: Accept must include text/event-stream",
            None,
        );
    }
    let filter = match read_filter(params) {
        Ok(f) => f,
        Err(message) => return jsonrpc::error_status(StatusCode::OK, id, INVALID_PARAMS, &message, None),
    };
    let Some(slot) = gw.listeners.take(&ctx.account_id) else {
        return jsonrpc::error_status(
            StatusCode::TOO_MANY_REQUESTS,
            id,
            INVALID_REQUEST,
            &format!("this account already has {MAX_STREAMS_PER_ACCOUNT} subscriptions/listen streams open here"),
            None,
        );
    };
    let token = bearer_token(headers).unwrap_or_default().to_owned();
    let mut watches = Vec::new();
    for uri in &filter.resources {
        if let Some(w) = gw.tools.watch_resource(ctx, ctx.client_providers.as_deref(), uri).await {
            watches.push((uri.clone(), w));
        }
    }
    let mut acknowledged = serde_json::Map::new();
    if filter.tools {
        acknowledged.insert("toolsListChanged".into(), json!(true));
    }
    if !filter.resources.is_empty() {
        acknowledged
            .insert("resourceSubscriptions".into(), json!(watches.iter().map(|(u, _)| u.as_str()).collect::<Vec<_>>()));
    }
    let tools = filter.tools;
    let ack = jsonrpc::notification_text(
        "notifications/subscriptions/acknowledged",
        json!({"_meta": {SUBSCRIPTION_ID: id}, "notifications": acknowledged}),
    );
    let stream = Stream {
        gw: gw.clone(),
        id: id.clone(),
        token,
        tools,
        seen: fingerprint(gw, ctx).await,
        closing: gw.closing.subscribe(),
        recheck: interval(RECHECK_EVERY),
        keepalive: interval(KEEPALIVE_EVERY),
        pending: Some(ack),
        ended: false,
        watches,
        _slot: slot,
    };
    let body = futures_util::stream::unfold(stream, |mut s| async move {
        s.next().await.map(|chunk| (Ok::<_, Infallible>(chunk), s))
    });
    jsonrpc::event_stream(Body::from_stream(body))
}

fn interval(every: Duration) -> tokio::time::Interval {
    let mut i = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    i
}

/// What decides the caller's tools, hashed: the grant, the client's providers, the sources' listings.
async fn fingerprint(gw: &Gateway, ctx: &AccessContext) -> u64 {
    let mut h = DefaultHasher::new();
    ctx.scopes.to_string().hash(&mut h);
    ctx.restrictions.to_json().hash(&mut h);
    ctx.client_providers.hash(&mut h);
    gw.tools.versions(ctx).await.hash(&mut h);
    h.finish()
}

enum Tick {
    Closing,
    Keepalive,
    Recheck,
    /// A watched resource changed (its index), or its watch ended (`true`).
    Updated(usize, bool),
}

/// The first of the watches to signal: its index, and whether it ended.
async fn next_update(watches: &mut [(String, crate::tools::ResourceWatch)]) -> (usize, bool) {
    use tokio::sync::broadcast::error::RecvError;
    let waits = watches
        .iter_mut()
        .enumerate()
        .map(|(i, (_, w))| Box::pin(async move { (i, matches!(w.updates.recv().await, Err(RecvError::Closed))) }));
    futures_util::future::select_all(waits).await.0
}

struct Stream {
    gw: Arc<Gateway>,
    id: Value,
    token: String,
    tools: bool,
    seen: u64,
    closing: tokio::sync::watch::Receiver<bool>,
    recheck: tokio::time::Interval,
    keepalive: tokio::time::Interval,
    /// A message due before anything else (the acknowledgment).
    pending: Option<String>,
    ended: bool,
    /// The resources watched for this stream.
    watches: Vec<(String, crate::tools::ResourceWatch)>,
    _slot: StreamSlot,
}

impl Stream {
    /// The next chunk of the stream, or None when it is over.
    async fn next(&mut self) -> Option<String> {
        if let Some(first) = self.pending.take() {
            return Some(event(&first));
        }
        if self.ended {
            return None;
        }
        loop {
            let watching = !self.watches.is_empty();
            let tick = tokio::select! {
                _ = self.closing.wait_for(|closing| *closing) => Tick::Closing,
                _ = self.keepalive.tick() => Tick::Keepalive,
                _ = self.recheck.tick() => Tick::Recheck,
                (i, ended) = next_update(&mut self.watches), if watching => Tick::Updated(i, ended),
            };
            match tick {
                Tick::Updated(i, true) => {
                    let (uri, _) = self.watches.remove(i);
                    tracing::debug!(uri = %uri, "a watched resource's upstream subscription ended");
                }
                Tick::Updated(i, false) => {
                    return Some(event(&jsonrpc::notification_text(
                        "notifications/resources/updated",
                        json!({"_meta": {SUBSCRIPTION_ID: self.id}, "uri": self.watches[i].0}),
                    )));
                }
                Tick::Closing => return Some(self.end()),
                Tick::Keepalive => return Some(": keepalive\n\n".to_owned()),
                Tick::Recheck => {
                    let ctx = match self.gw.verifier.verify_bearer(&self.token, &[self.gw.resource.as_str()]).await {
                        Ok(ctx) => ctx,
                        // The store is briefly unreachable: keep the stream, check again next time.
                        Err(bk_access::VerifyError::Unavailable) => continue,
                        Err(_) => return Some(self.end()),
                    };
                    let now = fingerprint(&self.gw, &ctx).await;
                    if now != self.seen {
                        self.seen = now;
                        // The grant changed: resources of providers it may no longer read stop.
                        let providers = ctx.client_providers.as_deref();
                        self.watches.retain(|(uri, w)| {
                            let keep = crate::policy::provider_readable(
                                &ctx.scopes,
                                &ctx.restrictions,
                                providers,
                                &w.provider,
                            );
                            if !keep {
                                tracing::debug!(uri = %uri, "a watched resource is no longer readable by this grant");
                            }
                            keep
                        });
                        if self.tools {
                            return Some(event(&jsonrpc::notification_text(
                                "notifications/tools/list_changed",
                                json!({"_meta": {SUBSCRIPTION_ID: self.id}}),
                            )));
                        }
                    }
                }
            }
        }
    }

    /// The graceful-closure result, after which the stream ends.
    fn end(&mut self) -> String {
        self.ended = true;
        event(&jsonrpc::result_text(&self.id, json!({"resultType": "complete", "_meta": {SUBSCRIPTION_ID: self.id}})))
    }
}

fn event(message: &str) -> String {
    format!("event: message\ndata: {message}\n\n")
}

/// Open streams per account on this instance.
#[derive(Default)]
pub struct Listeners {
    open: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

/// One open stream; dropping it (the stream ended or the client went away) frees the place.
pub struct StreamSlot {
    open: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    account: String,
}

impl Listeners {
    fn take(&self, account: &bk_domain::ids::AccountId) -> Option<StreamSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(account.to_string()).or_default();
        if *n >= MAX_STREAMS_PER_ACCOUNT {
            return None;
        }
        *n += 1;
        Some(StreamSlot { open: self.open.clone(), account: account.to_string() })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.account) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.account);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_is_type_checked_and_only_tools_are_honoured() {
        let tools = |t| Ok(Filter { tools: t, resources: Vec::new() });
        assert_eq!(read_filter(None), tools(false));
        assert_eq!(read_filter(Some(&json!({"notifications": {"toolsListChanged": true}}))), tools(true));
        assert_eq!(read_filter(Some(&json!({"notifications": {"promptsListChanged": true}}))), tools(false));
        assert_eq!(read_filter(Some(&json!({"notifications": {"futureThing": 3}}))), tools(false));
        assert_eq!(
            read_filter(Some(&json!({"notifications": {"resourceSubscriptions": ["a://1", "a://2", "a://1"]}}))),
            Ok(Filter { tools: false, resources: vec!["a://1".into(), "a://2".into()] }),
            "each URI once"
        );
        let many: Vec<String> = (0..=MAX_RESOURCE_SUBSCRIPTIONS).map(|i| format!("a://{i}")).collect();
        assert!(
            read_filter(Some(&json!({"notifications": {"resourceSubscriptions": many}})))
                .unwrap_err()
                .contains("at most")
        );
        assert!(read_filter(Some(&json!({"notifications": {"resourceSubscriptions": [""]}}))).is_err());
        assert!(read_filter(Some(&json!({"notifications": []}))).unwrap_err().contains("must be an object"));
        assert!(
            read_filter(Some(&json!({"notifications": {"toolsListChanged": "yes"}})))
                .unwrap_err()
                .contains("toolsListChanged")
        );
        assert!(
            read_filter(Some(&json!({"notifications": {"resourceSubscriptions": [1]}})))
                .unwrap_err()
                .contains("resourceSubscriptions")
        );
    }

    #[test]
    fn places_are_counted_per_account_and_freed_on_drop() {
        let l = Listeners::default();
        let (a, b) = (
            bk_domain::ids::AccountId::from_string("a".to_owned()),
            bk_domain::ids::AccountId::from_string("b".to_owned()),
        );
        let held: Vec<_> = (0..MAX_STREAMS_PER_ACCOUNT).map(|_| l.take(&a).unwrap()).collect();
        assert!(l.take(&a).is_none());
        assert!(l.take(&b).is_some(), "another account is not affected");
        drop(held);
        let again = l.take(&a);
        assert!(again.is_some());
        assert_eq!(l.open.lock().unwrap().get("a"), Some(&1));
        drop(again);
        assert!(l.open.lock().unwrap().is_empty(), "no entry is left for an account with no stream");
    }
}
