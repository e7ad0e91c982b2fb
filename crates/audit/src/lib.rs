//! The audit log: every auth event and tool call, redacted before anything is persisted or streamed,
//! written asynchronously in batches (a full buffer is counted and logged, never blocks a request),
//! hash-chained so an edited or deleted row is detected, retained by days and rows, and streamed live.
#![forbid(unsafe_code)]

pub mod redact;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bk_crypto::secret::{hex, sha256_parts};
use bk_domain::audit::{AuditEvent, AuditSink, StoredAuditEvent};
use bk_domain::ports::{AuditStore, ChainState};
use tokio::sync::{broadcast, mpsc, oneshot};

pub use redact::Redactor;

#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// Off: events are discarded (for measuring the audit log's cost; never in production).
    pub enabled: bool,
    /// Rows older than this many days are deleted (at start and hourly).
    pub retention_days: Option<u32>,
    /// At most this many rows are kept.
    pub max_rows: Option<i64>,
    /// Extra redaction patterns (regular expressions).
    pub redact: Vec<String>,
    /// Events waiting to be written; beyond this they are dropped, counted and logged.
    pub buffer: usize,
    /// Also publish every stored event to NATS, subject `bridgekeeper.audit.<account_id>`
    /// (`bridgekeeper.audit.system` for operator and system events).
    pub nats_url: Option<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            retention_days: Some(365),
            max_rows: None,
            redact: Vec::new(),
            buffer: 10_000,
            nats_url: None,
        }
    }
}

/// What the HTTP request being served adds to every event it records: its id and the client's
/// address (behind trusted proxies, the address they forwarded). Set once per request by the
/// server's outermost layer; an event recorded outside a request (a background task) has neither.
#[derive(Clone, Debug)]
pub struct RequestContext {
    pub request_id: String,
    pub ip: Option<String>,
}

tokio::task_local! {
    static REQUEST: RequestContext;
}

/// Runs `f` as the request `ctx`: events it records carry the request's id and client address.
pub async fn in_request<F: std::future::Future>(ctx: RequestContext, f: F) -> F::Output {
    REQUEST.scope(ctx, f).await
}

/// The id of the request being served, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST.try_with(|c| c.request_id.clone()).ok()
}

enum Msg {
    Event(Box<AuditEvent>),
    Flush(oneshot::Sender<()>),
}

pub struct AuditLog {
    enabled: bool,
    tx: mpsc::Sender<Msg>,
    redactor: Redactor,
    dropped: AtomicU64,
    written: Arc<AtomicU64>,
    stream: broadcast::Sender<Arc<StoredAuditEvent>>,
    closing: tokio::sync::watch::Sender<bool>,
    /// Cuts the writer's wait for more events short (a flush is waiting).
    hurry: Arc<tokio::sync::Notify>,
}

/// The hash linking a row to its predecessor: SHA-256 over the previous hash, the sequence number
/// and the event's canonical JSON.
pub fn link(prev_hash: &str, seq: i64, event: &AuditEvent) -> String {
    let body = serde_json::to_vec(event).unwrap_or_default();
    let seq = seq.to_string();
    hex(&sha256_parts(&[prev_hash.as_bytes(), b"\n", seq.as_bytes(), b"\n", &body]))
}

const BATCH: usize = 1024;
/// After the first event of a batch the writer waits this long for more, so that events trickling in
/// share one transaction instead of paying a commit (and two thread wake-ups) each. Events are
/// asynchronous anyway; a flush cuts the wait short.
const LINGER: Duration = Duration::from_millis(5);

impl AuditLog {
    /// Starts the writer task. Fails only on an invalid redaction pattern.
    pub fn start(store: Arc<dyn AuditStore>, config: &AuditConfig) -> Result<Arc<AuditLog>, redact::PatternError> {
        let redactor = Redactor::new(&config.redact)?;
        let (tx, rx) = mpsc::channel(config.buffer.max(16));
        let (stream, _) = broadcast::channel(1024);
        let written = Arc::new(AtomicU64::new(0));
        let (closing, _) = tokio::sync::watch::channel(false);
        let hurry = Arc::new(tokio::sync::Notify::new());
        if !config.enabled {
            tracing::warn!("the audit log is disabled (audit.enabled = false): no event is recorded");
        }
        let log = Arc::new(AuditLog {
            enabled: config.enabled,
            tx,
            redactor,
            dropped: AtomicU64::new(0),
            written: written.clone(),
            stream: stream.clone(),
            closing,
            hurry: hurry.clone(),
        });
        tokio::spawn(writer(store, rx, stream.clone(), written, hurry));
        if let Some(url) = &config.nats_url {
            tokio::spawn(publish_to_nats(url.clone(), stream.subscribe()));
        }
        Ok(log)
    }

    /// A live feed of stored events (already redacted).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredAuditEvent>> {
        self.stream.subscribe()
    }

    /// Resolves when live streams must end (the server is shutting down).
    pub fn closing(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }

    /// Ends every live stream so a graceful shutdown does not wait on them.
    pub fn close_streams(&self) {
        let _ = self.closing.send(true);
    }

    /// Events dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Events waiting to be written.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Waits until every event recorded before this call is stored.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            self.hurry.notify_one();
            let _ = wait.await;
        }
    }

    /// Applies the redactor to free text about to be persisted elsewhere (client names, descriptions).
    pub fn redact_text(&self, s: &str) -> String {
        self.redactor.redact_str(s)
    }

    /// Applies the redactor to a JSON document about to be persisted elsewhere (upstream user info).
    pub fn redact_json(&self, v: &mut serde_json::Value) {
        self.redactor.redact_value(v);
    }

    /// Token-shaped text in every string of `v` replaced (upstream answers on their way to a client).
    pub fn redact_strings(&self, v: &mut serde_json::Value) {
        self.redactor.redact_strings(v);
    }

    /// Applies the redactor to an event (also used for anything else about to be persisted).
    pub fn redact(&self, e: &mut AuditEvent) {
        if let Some(r) = e.target.as_deref().and_then(|t| self.redactor.redacted(t)) {
            e.target = Some(r);
        }
        self.redactor.redact_value(&mut e.details);
    }
}

impl AuditSink for AuditLog {
    fn record(&self, mut event: AuditEvent) {
        if !self.enabled {
            return;
        }
        let _ = REQUEST.try_with(|r| {
            event.request_id.get_or_insert_with(|| r.request_id.clone());
            if event.ip.is_none() {
                event.ip.clone_from(&r.ip);
            }
        });
        self.redact(&mut event);
        if let Err(e) = self.tx.try_send(Msg::Event(Box::new(event))) {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Logged, not silent; throttled so a flood cannot flood the log too.
            if n.is_power_of_two() {
                tracing::error!(dropped_total = n, reason = %e, "audit buffer full: event dropped");
            }
        }
    }
}

async fn writer(
    store: Arc<dyn AuditStore>,
    mut rx: mpsc::Receiver<Msg>,
    stream: broadcast::Sender<Arc<StoredAuditEvent>>,
    written: Arc<AtomicU64>,
    hurry: Arc<tokio::sync::Notify>,
) {
    let mut batch: Vec<AuditEvent> = Vec::with_capacity(BATCH);
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut lingered = false;
        loop {
            while let Some(m) = next.take() {
                match m {
                    Msg::Event(e) => batch.push(*e),
                    Msg::Flush(done) => flushes.push(done),
                }
                if batch.len() < BATCH {
                    next = rx.try_recv().ok();
                }
            }
            if lingered || !flushes.is_empty() || batch.len() >= BATCH {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(LINGER) => {}
                _ = hurry.notified() => {}
            }
            lingered = true;
            next = rx.try_recv().ok();
        }
        if !batch.is_empty() {
            let mut delay = Duration::from_millis(50);
            let mut attempts = 0;
            loop {
                match store.append_audit(&batch, &link).await {
                    Ok(positions) => {
                        written.fetch_add(positions.len() as u64, Ordering::Relaxed);
                        // The live feed (SSE streams, NATS) gets the stored events; with nobody
                        // listening there is nothing to build.
                        if stream.receiver_count() > 0 {
                            for (event, p) in batch.drain(..).zip(positions) {
                                let stored = StoredAuditEvent {
                                    seq: p.seq,
                                    event,
                                    prev_hash: p.prev_hash,
                                    hash: p.hash,
                                    redacted_at: None,
                                };
                                let _ = stream.send(Arc::new(stored));
                            }
                        }
                        break;
                    }
                    Err(e) if attempts < 5 => {
                        attempts += 1;
                        tracing::warn!(error = %e, attempt = attempts, "writing audit events failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, lost = batch.len(), "writing audit events failed; events lost");
                        break;
                    }
                }
            }
            batch.clear();
        }
        for f in flushes.drain(..) {
            let _ = f.send(());
        }
    }
}

/// The result of walking the chain.
#[derive(Debug, PartialEq, Eq)]
pub struct Verification {
    pub checked: u64,
    pub anchor_seq: i64,
    pub head_seq: i64,
    /// The first broken link: its sequence number and what is wrong.
    pub broken: Option<(i64, String)>,
    /// Rows redacted when their account was deleted: they still link the chain (their hash is the
    /// next row's `prev_hash`), but their content no longer matches their hash.
    pub redacted: u64,
}

/// Walks the chain from its anchor and reports the first broken link. A row redacted when its
/// account was deleted is accepted with changed content only if the chain also records that
/// account's deletion (`account.deleted`, before or after it); marking any other row redacted is
/// reported as an edit.
pub async fn verify(store: &dyn AuditStore) -> Result<Verification, bk_domain::ports::StoreError> {
    let ChainState { head_seq, head_hash, anchor_seq, anchor_hash } = store.audit_chain_state().await?;
    let (mut prev, mut expect_seq, mut checked, mut redacted) = (anchor_hash, anchor_seq + 1, 0u64, 0u64);
    let mut after = anchor_seq;
    let mut deleted: std::collections::HashSet<String> = std::collections::HashSet::new();
    // Redacted rows waiting for their account's deletion to show: account → first such row.
    let mut waiting: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    let edited = "its content does not match its hash (the row was edited)";
    loop {
        let rows = store.audit_range(after, 1000).await?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let account = r.event.account_id.as_ref().map(|a| a.as_str().to_owned());
            if r.event.kind == "account.deleted"
                && r.event.outcome == bk_domain::audit::Outcome::Success
                && r.redacted_at.is_none()
                && let Some(a) = &account
            {
                deleted.insert(a.clone());
            }
            let problem = if r.seq != expect_seq {
                Some(format!("row {expect_seq} is missing (next row is {})", r.seq))
            } else if r.prev_hash != prev {
                Some("its prev_hash does not match the previous row's hash".to_owned())
            } else if link(&r.prev_hash, r.seq, &r.event) != r.hash {
                match (&r.redacted_at, &account) {
                    (Some(_), Some(a)) => {
                        waiting.entry(a.clone()).or_insert(r.seq);
                        redacted += 1;
                        None
                    }
                    _ => Some(edited.to_owned()),
                }
            } else {
                None
            };
            if let Some(p) = problem {
                return Ok(Verification {
                    checked,
                    anchor_seq,
                    head_seq,
                    broken: Some((expect_seq.min(r.seq), p)),
                    redacted,
                });
            }
            prev = r.hash.clone();
            expect_seq += 1;
            checked += 1;
            after = r.seq;
        }
    }
    if let Some(seq) = waiting.iter().filter(|(a, _)| !deleted.contains(*a)).map(|(_, seq)| *seq).min() {
        let why = format!("{edited}: it is marked redacted, but the chain records no deletion of its account");
        return Ok(Verification { checked, anchor_seq, head_seq, broken: Some((seq, why)), redacted });
    }
    let broken = if expect_seq - 1 != head_seq {
        Some((expect_seq, format!("the chain ends at {} but its head says {head_seq}", expect_seq - 1)))
    } else if prev != head_hash {
        Some((head_seq, "the last row's hash does not match the chain head".to_owned()))
    } else {
        None
    };
    Ok(Verification { checked, anchor_seq, head_seq, broken, redacted })
}

/// Applies retention once.
pub async fn enforce_retention(
    store: &dyn AuditStore,
    config: &AuditConfig,
    now_ms: i64,
) -> Result<u64, bk_domain::ports::StoreError> {
    let before = config.retention_days.map(|d| now_ms - i64::from(d) * 86_400_000);
    if before.is_none() && config.max_rows.is_none() {
        return Ok(0);
    }
    store.prune_audit(before, config.max_rows).await
}

/// The NATS subject of an event.
pub fn nats_subject(e: &AuditEvent) -> String {
    match &e.account_id {
        Some(a) => format!("bridgekeeper.audit.{a}"),
        None => "bridgekeeper.audit.system".to_owned(),
    }
}

/// Forwards stored (already redacted) events to NATS, reconnecting with backoff.
async fn publish_to_nats(url: String, mut feed: broadcast::Receiver<Arc<StoredAuditEvent>>) {
    let mut delay = Duration::from_millis(200);
    let client = loop {
        match async_nats::connect(&url).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot connect to NATS for audit events");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    };
    tracing::info!("publishing audit events to NATS");
    loop {
        match feed.recv().await {
            Ok(e) => {
                let body = serde_json::to_vec(&*e).unwrap_or_default();
                if let Err(err) = client.publish(nats_subject(&e.event), body.into()).await {
                    tracing::warn!(error = %err, seq = e.seq, "publishing an audit event to NATS failed");
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(skipped = n, "NATS publisher fell behind: events not published (they are stored)");
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use bk_domain::audit::{AuditEvent, Outcome};

    #[test]
    fn link_is_sha256_hex_of_previous_hash_sequence_and_event_json() {
        let mut e = AuditEvent::new("token.refreshed", Outcome::Success, 1_700_000_000_000);
        e.id = "evt_fixed".to_owned();
        let body = serde_json::to_string(&e).unwrap();
        let expected: String = bk_crypto::secret::sha256(format!("{}\n42\n{body}", "ab".repeat(32)).as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(super::link(&"ab".repeat(32), 42, &e), expected);
        assert_eq!(expected.len(), 64);
    }
}
