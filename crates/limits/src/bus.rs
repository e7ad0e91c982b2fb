//! A message bus between instances (Redis publish/subscribe on one channel): what one instance
//! receives for a call another instance runs — a legacy MCP client's answer to a question relayed
//! to it, a cancellation — is published, and the instance holding the call applies it. Fire and
//! forget: a message no instance can apply is dropped where it arrives (as it would be on one
//! instance). Messages are the publisher's own JSON; each carries the sender's instance id so an
//! instance ignores its own.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::broadcast;

/// Publishes to every instance and hands out what every instance published.
pub trait Bus: Send + Sync {
    fn publish(&self, payload: String);
    fn subscribe(&self) -> broadcast::Receiver<String>;
}

/// The bus over Redis: one publishing connection (reconnecting), one subscriber task
/// (resubscribing after a lost connection, with a pause).
pub struct RedisBus {
    outbox: tokio::sync::mpsc::Sender<String>,
    inbox: broadcast::Sender<String>,
}

impl RedisBus {
    /// Starts the publisher and the subscriber on `{prefix}:bus`.
    pub fn start(url: &str, prefix: &str) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis.url: {e}"))?;
        let channel = format!("{prefix}:bus");
        let (outbox, mut pending) = tokio::sync::mpsc::channel::<String>(1024);
        let (inbox, _) = broadcast::channel(1024);
        let publisher = client.clone();
        let out_channel = channel.clone();
        tokio::spawn(async move {
            let mut conn = None;
            while let Some(payload) = pending.recv().await {
                if conn.is_none() {
                    conn = redis::aio::ConnectionManager::new(publisher.clone()).await.ok();
                }
                let Some(c) = conn.as_mut() else {
                    tracing::warn!("the instance bus cannot reach Redis: a message is dropped");
                    continue;
                };
                let sent: redis::RedisResult<i64> =
                    redis::cmd("PUBLISH").arg(&out_channel).arg(&payload).query_async(c).await;
                if let Err(e) = sent {
                    tracing::warn!(error = %e, "publishing on the instance bus failed");
                    conn = None;
                }
            }
        });
        let to_local = inbox.clone();
        tokio::spawn(async move {
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => {
                        if let Err(e) = pubsub.subscribe(&channel).await {
                            tracing::warn!(error = %e, "subscribing to the instance bus failed");
                        } else {
                            let mut messages = pubsub.on_message();
                            while let Some(m) = messages.next().await {
                                if let Ok(payload) = m.get_payload::<String>() {
                                    let _ = to_local.send(payload);
                                }
                            }
                            tracing::warn!("the instance bus subscription ended; subscribing again");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "the instance bus cannot reach Redis"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Ok(Arc::new(Self { outbox, inbox }))
    }
}

impl Bus for RedisBus {
    fn publish(&self, payload: String) {
        if self.outbox.try_send(payload).is_err() {
            tracing::warn!("the instance bus is backed up: a message is dropped");
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<String> {
        self.inbox.subscribe()
    }
}
