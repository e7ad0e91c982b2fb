//! Resources watched for the gateway's listeners (2026-07-28 `resourceSubscriptions`): one
//! upstream subscription (`resources/subscribe`) per connection and resource, however many streams
//! watch it; the server's `notifications/resources/updated` signals every watcher; the last
//! watcher gone unsubscribes. A connection's client made anew (a refreshed credential) subscribes
//! again to what is watched, and a client with watched resources is never closed as idle.

use super::*;

/// What is watched, by (connection, resource URI).
pub(crate) type Watches = Arc<Mutex<HashMap<(String, String), Watched>>>;

pub(crate) struct Watched {
    tx: tokio::sync::broadcast::Sender<()>,
    watchers: usize,
}

/// Signals the watchers of a resource its server says changed.
pub(crate) fn updated(watches: &Mutex<HashMap<(String, String), Watched>>, connection: &str, uri: &str) {
    if let Some(w) = watches.lock().unwrap().get(&(connection.to_owned(), uri.to_owned())) {
        let _ = w.tx.send(());
    }
}

/// The URIs watched on a connection.
pub(crate) fn watched_on(watches: &Mutex<HashMap<(String, String), Watched>>, connection: &str) -> Vec<String> {
    watches.lock().unwrap().keys().filter(|(c, _)| c == connection).map(|(_, u)| u.clone()).collect()
}

/// Ends one watch; the last one of a resource unsubscribes with the connection's current client.
struct WatchGuard {
    watches: Watches,
    key: (String, String),
    slot: Arc<tokio::sync::Mutex<Option<Pooled>>>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let last = {
            let mut w = self.watches.lock().unwrap();
            match w.get_mut(&self.key) {
                Some(entry) if entry.watchers > 1 => {
                    entry.watchers -= 1;
                    false
                }
                Some(_) => {
                    w.remove(&self.key);
                    true
                }
                None => false,
            }
        };
        if !last {
            return;
        }
        let (slot, uri) = (self.slot.clone(), self.key.1.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let peer = slot.lock().await.as_ref().map(|p| p.service.peer().clone());
                if let Some(peer) = peer {
                    #[allow(deprecated)]
                    let done = peer.unsubscribe(rmcp::model::UnsubscribeRequestParams::new(uri)).await;
                    if let Err(e) = done {
                        tracing::debug!(error = %e, "unsubscribing from an upstream resource failed");
                    }
                }
            });
        }
    }
}

/// Subscribes `peer` to `uri` (legacy servers; a 2026-07-28 server has no `resources/subscribe`).
#[allow(deprecated)]
pub(crate) async fn subscribe(peer: &Peer<RoleClient>, uri: &str) -> Result<(), ServiceError> {
    peer.subscribe(rmcp::model::SubscribeRequestParams::new(uri)).await.map(|_| ())
}

/// Does the server say it takes subscriptions?
fn takes_subscriptions(peer: &Peer<RoleClient>) -> bool {
    peer.peer_info().and_then(|i| i.capabilities.resources.as_ref().and_then(|r| r.subscribe)).unwrap_or(false)
}

impl UpstreamTools {
    /// A watch on `uri` of connection `c` (subscribing upstream when it is the first).
    pub(crate) async fn watch(&self, c: &Connection, url: &Url, uri: &str) -> Option<ResourceWatch> {
        let key = (c.id.to_string(), uri.to_owned());
        let slot = self.slot(c.id.as_str());
        let joined = {
            let mut w = self.watches.lock().unwrap();
            w.get_mut(&key).map(|entry| {
                entry.watchers += 1;
                entry.tx.subscribe()
            })
        };
        let updates = match joined {
            Some(rx) => rx,
            None => {
                let uri_owned = uri.to_owned();
                let subscribed = self
                    .request(c, url, move |up| {
                        let uri = uri_owned.clone();
                        async move {
                            if !takes_subscriptions(&up.peer) {
                                return Ok(Value::Bool(false));
                            }
                            subscribe(&up.peer, &uri).await.map(|_| Value::Bool(true))
                        }
                    })
                    .await;
                match subscribed {
                    Ok(Value::Bool(true)) => {}
                    Ok(_) => return None,
                    Err(why) => {
                        tracing::info!(connection = %c.id, why = %why, "an upstream resource could not be subscribed to");
                        return None;
                    }
                }
                let mut w = self.watches.lock().unwrap();
                let entry = w
                    .entry(key.clone())
                    .or_insert_with(|| Watched { tx: tokio::sync::broadcast::channel(16).0, watchers: 0 });
                entry.watchers += 1;
                entry.tx.subscribe()
            }
        };
        Some(ResourceWatch {
            provider: c.provider_id.clone(),
            updates,
            guard: Box::new(WatchGuard { watches: self.watches.clone(), key, slot }),
        })
    }
}
