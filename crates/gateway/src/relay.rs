//! A tool call's notifications relayed to the client while it runs: an upstream server's progress
//! (re-addressed to the client's own `progressToken`) and log messages (at the level the client
//! asked for), written into the call's SSE response stream before its result.
//!
//! A call that can be relayed runs in a task of its own. Its response waits for the first
//! notification or the result, whichever comes first: a result before any notification is
//! answered exactly as an unrelayed call (any status); a notification first starts a 200 event
//! stream that carries every later notification and ends with the result. When the client goes
//! away (the 2026-07-28 revision's cancellation: closing the stream) or cancels the request
//! (`notifications/cancelled`, legacy sessions), the task is aborted, which cancels the upstream
//! request in turn.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle};

use crate::dispatch::{LOG_LEVELS, Reply};

/// Where a call's notifications go, and which the client wants. Cheap to clone; a tool source
/// keeps a clone only while the call runs.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<String>,
    /// How the client may be asked something (sampling, elicitation), when it can be.
    asker: Option<Asker>,
    /// The client's `_meta.progressToken` (`None`: it wants no progress).
    progress_token: Option<Value>,
    /// The least severe level relayed (an index into `LOG_LEVELS`; `None`: no logs).
    min_level: Option<usize>,
}

impl Relay {
    pub(crate) fn new(
        tx: mpsc::Sender<String>,
        progress_token: Option<Value>,
        log_level: Option<&str>,
        asker: Option<Asker>,
    ) -> Self {
        let min_level = log_level.and_then(|l| LOG_LEVELS.iter().position(|x| *x == l));
        Self { inner: Arc::new(Inner { tx, asker, progress_token, min_level }) }
    }

    /// Does the client want anything relayed at all (or can it be asked something)?
    pub fn wants_anything(&self) -> bool {
        self.inner.progress_token.is_some() || self.inner.min_level.is_some() || self.inner.asker.is_some()
    }

    /// Asks the client (`sampling/createMessage` or `elicitation/create`) and waits for its answer:
    /// the result, or why there is none. Refused at once when the client did not declare the
    /// capability or reads no stream it could be asked on.
    pub async fn ask(&self, method: &str, params: Value, wait: std::time::Duration) -> Result<Value, String> {
        let Some(asker) = &self.inner.asker else {
            return Err(format!(
                "the client cannot be asked for {method} here (it needs a 2025-11-25 session reading this call's event stream)"
            ));
        };
        let declared = match method {
            "sampling/createMessage" => asker.features.sampling,
            "elicitation/create" => match params.get("mode").and_then(Value::as_str) {
                Some("url") => asker.features.elicit_url,
                _ => asker.features.elicit_form,
            },
            _ => false,
        };
        if !declared {
            return Err(format!("the client did not declare the capability {method} needs"));
        }
        let answer = match &asker.via {
            AskVia::Session { pending, session } => {
                let id = format!("bk-{}", bk_crypto::secret::b64url(&bk_crypto::secret::random_bytes::<16>()));
                let key = (session.clone(), Value::String(id.clone()).to_string());
                let (done, answer) = oneshot::channel();
                pending.waiting.lock().unwrap().insert(key.clone(), done);
                let _forget = Forget { pending: pending.clone(), key };
                let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
                // A question waits for room in the stream (progress and logs are dropped when it is full).
                let sent = tokio::time::timeout(wait, self.inner.tx.send(request)).await;
                if !matches!(sent, Ok(Ok(()))) {
                    return Err("the client is not reading its stream".into());
                }
                // The stream gone (the call ended or was cancelled), nobody can answer.
                tokio::select! {
                    a = tokio::time::timeout(wait, answer) => a,
                    _ = self.inner.tx.closed() => return Err("the call this question belonged to has ended".into()),
                }
            }
            AskVia::Rounds(questions) => {
                let (done, answer) = oneshot::channel();
                let q = Question { method: method.to_owned(), params, answer: done };
                if questions.try_send(q).is_err() {
                    return Err(format!("the call has too many questions open (at most {MAX_QUESTIONS})"));
                }
                tokio::time::timeout(wait, answer).await
            }
        };
        match answer {
            Ok(Ok(Ok(result))) => Ok(result),
            Ok(Ok(Err(error))) => Err(format!(
                "the client answered with an error: {}",
                error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("(no message)")
                    .chars()
                    .take(300)
                    .collect::<String>()
            )),
            Ok(Err(_)) => Err("the client went away".into()),
            Err(_) => Err(format!("the client did not answer within {} s", wait.as_secs())),
        }
    }

    /// Progress of the call, under the client's token (dropped when it gave none).
    pub fn progress(&self, progress: f64, total: Option<f64>, message: Option<String>) {
        let Some(token) = &self.inner.progress_token else { return };
        let mut params = json!({"progressToken": token, "progress": progress});
        if let Some(t) = total {
            params["total"] = json!(t);
        }
        if let Some(m) = message {
            params["message"] = json!(m);
        }
        self.send("notifications/progress", params);
    }

    /// A log message from the tool (dropped when less severe than the client asked for).
    pub fn log(&self, level: &str, logger: Option<String>, data: Value) {
        let Some(min) = self.inner.min_level else { return };
        match LOG_LEVELS.iter().position(|x| *x == level) {
            Some(rank) if rank >= min => {}
            _ => return,
        }
        let mut params = json!({"level": level, "data": data});
        if let Some(l) = logger {
            params["logger"] = json!(l);
        }
        self.send("notifications/message", params);
    }

    fn send(&self, method: &str, params: Value) {
        // The client gone (the call is being aborted), or not reading: progress and logs are dropped
        // rather than held without bound.
        let _ = self.inner.tx.try_send(crate::jsonrpc::notification_text(method, params));
    }
}

/// What a call may ask its client, and how.
#[derive(Clone)]
pub(crate) struct Asker {
    pub(crate) via: AskVia,
    pub(crate) features: bk_domain::mcp_session::ClientFeatures,
}

#[derive(Clone)]
pub(crate) enum AskVia {
    /// A legacy session: a request in the call's stream, answered by a response POSTed on the
    /// session.
    Session { pending: Arc<Pending>, session: String },
    /// 2026-07-28: an input round — the call is parked, its questions become the `inputRequests`
    /// of an `input_required` result, and the client's retry brings the answers.
    Rounds(mpsc::Sender<Question>),
}

/// A question of a running call for an input round.
pub(crate) struct Question {
    method: String,
    params: Value,
    answer: Waiter,
}

/// Requests to clients awaiting their answers, by (session, request id): the ids are random, so
/// an answer is only taken from the session it was asked on, for a question it was asked.
#[derive(Default)]
pub(crate) struct Pending {
    waiting: Mutex<HashMap<(String, String), Waiter>>,
}

/// Where a client's answer goes: its `result`, or its `error`.
type Waiter = oneshot::Sender<Result<Value, Value>>;

impl Pending {
    /// A client's response (`result` or `error`) on its session; `false` when nothing here waits
    /// for it (unknown, answered already, timed out, or asked on another instance).
    pub(crate) fn answer(&self, session: &str, message: &Value) -> bool {
        let Some(id) = message.get("id") else { return false };
        let key = (session.to_owned(), id.to_string());
        let Some(done) = self.waiting.lock().unwrap().remove(&key) else { return false };
        let answer = match (message.get("result"), message.get("error")) {
            (Some(r), _) => Ok(r.clone()),
            (None, Some(e)) => Err(e.clone()),
            (None, None) => Err(serde_json::json!({"message": "a response with neither result nor error"})),
        };
        done.send(answer).is_ok()
    }
}

/// What one instance passes to the others (see `bk_limits::bus`).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum BusMessage {
    /// A client's response on a session, to a question another instance may have asked.
    Answer { from: String, session: String, message: Value },
    /// A session's `notifications/cancelled` for a call another instance may run.
    Cancel { from: String, session: String, request: Value },
}

/// Applies what other instances publish, for as long as the bus runs.
pub(crate) fn apply_from_bus(
    mut messages: tokio::sync::broadcast::Receiver<String>,
    instance: String,
    pending: Arc<Pending>,
    in_flight: Arc<InFlight>,
) {
    use tokio::sync::broadcast::error::RecvError;
    tokio::spawn(async move {
        loop {
            let payload = match messages.recv().await {
                Ok(p) => p,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "this instance fell behind the instance bus");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            match serde_json::from_str::<BusMessage>(&payload) {
                Ok(BusMessage::Answer { from, session, message }) if from != instance => {
                    pending.answer(&session, &message);
                }
                Ok(BusMessage::Cancel { from, session, request }) if from != instance => {
                    in_flight.cancel(&session, &request);
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "an unreadable message on the instance bus"),
            }
        }
    });
}

/// Removes a question from `Pending` when its asker stops waiting.
struct Forget {
    pending: Arc<Pending>,
    key: (String, String),
}

impl Drop for Forget {
    fn drop(&mut self) {
        self.pending.waiting.lock().unwrap().remove(&self.key);
    }
}

/// Notifications and questions held for a stream its client is slow to read.
const RELAY_BUFFER: usize = 64;

/// Calls running in tasks of their own that a legacy session may cancel by request id.
#[derive(Default)]
pub(crate) struct InFlight {
    calls: Mutex<HashMap<(String, String), AbortHandle>>,
}

impl InFlight {
    fn key(session: &str, id: &Value) -> (String, String) {
        (session.to_owned(), id.to_string())
    }

    /// Aborts the session's call with this request id; `true` when one was running.
    pub(crate) fn cancel(&self, session: &str, id: &Value) -> bool {
        let handle = self.calls.lock().unwrap().remove(&Self::key(session, id));
        handle.map(|h| h.abort()).is_some()
    }
}

/// Keeps a call cancellable by its session while it runs.
pub(crate) struct Registered {
    in_flight: Arc<InFlight>,
    key: (String, String),
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.in_flight.calls.lock().unwrap().remove(&self.key);
    }
}

/// Aborts the call's task when the response (or the stream carrying it) is dropped.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Questions one call may have open in one round.
const MAX_QUESTIONS: usize = 4;
/// Calls parked for their client's answers on this instance (beyond it, a question is refused).
const MAX_PARKED: usize = 10_000;

/// A call running in its task: its result, notifications and questions.
pub(crate) struct Running {
    task: JoinHandle<Reply>,
    _abort: AbortOnDrop,
    notes: mpsc::Receiver<String>,
    questions: mpsc::Receiver<Question>,
}

/// Calls waiting for their clients' answers to an input round (2026-07-28), by a random id the
/// sealed `requestState` carries; a call not resumed within the state's lifetime is aborted.
#[derive(Default)]
pub(crate) struct Parked {
    calls: Mutex<HashMap<String, ParkedCall>>,
}

struct ParkedCall {
    since: std::time::Instant,
    running: Running,
    /// The open questions by their key in `inputRequests`.
    waiting: Vec<(String, Waiter)>,
}

impl Parked {
    /// Parks the call with its open questions; `None` when too many calls are parked here.
    fn park(&self, running: Running, waiting: Vec<(String, Waiter)>) -> Option<String> {
        let ttl = std::time::Duration::from_millis(crate::rounds::STATE_TTL_MS as u64);
        let mut calls = self.calls.lock().unwrap();
        calls.retain(|_, c| c.since.elapsed() < ttl);
        if calls.len() >= MAX_PARKED {
            return None;
        }
        let id = bk_crypto::secret::b64url(&bk_crypto::secret::random_bytes::<16>());
        calls.insert(id.clone(), ParkedCall { since: std::time::Instant::now(), running, waiting });
        Some(id)
    }

    /// The parked call `id`, its questions answered from the client's `inputResponses` (a
    /// question left unanswered is answered with an error).
    pub(crate) fn resume(&self, id: &str, responses: Option<&Value>) -> Option<Running> {
        let call = self.calls.lock().unwrap().remove(id)?;
        for (key, waiter) in call.waiting {
            let answer = match responses.and_then(|r| r.get(&key)) {
                Some(v) => Ok(v.clone()),
                None => Err(json!({"message": "the client gave no answer"})),
            };
            let _ = waiter.send(answer);
        }
        Some(call.running)
    }
}

/// How the answer is framed, by era: `respond` as a whole response (nothing relayed yet), or
/// `messages` as the last messages of a stream (after notifications).
pub(crate) trait Frame: Send + 'static {
    fn respond(self, reply: Reply) -> Response;
    fn messages(self, reply: Reply) -> Vec<String>;
}

/// The message for a call that was aborted after its stream started (the client cancelled).
const CANCELLED: &str = "the request was cancelled";

/// Runs `work` with a relay in a task of its own (see the module's comment). `cancellable`: the
/// legacy session and request id under which `notifications/cancelled` may abort it. `parked`:
/// where the call waits when it asks its client something in an input round (2026-07-28).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<W, Fut, F>(
    progress_token: Option<Value>,
    log_level: Option<&str>,
    asker: Option<Asker>,
    cancellable: Option<(Arc<InFlight>, &str, &Value)>,
    parked: Option<Arc<Parked>>,
    features: bk_domain::mcp_session::ClientFeatures,
    work: W,
    frame: F,
) -> Response
where
    W: FnOnce(Relay) -> Fut,
    Fut: Future<Output = Reply> + Send + 'static,
    F: Frame,
{
    let (tx, notes) = mpsc::channel(RELAY_BUFFER);
    let (qtx, questions) = mpsc::channel(MAX_QUESTIONS);
    let asker = match (&parked, asker) {
        (Some(_), _) => Some(Asker { via: AskVia::Rounds(qtx), features }),
        (None, a) => a,
    };
    let relay = Relay::new(tx, progress_token, log_level, asker);
    let task: JoinHandle<Reply> = tokio::spawn(work(relay));
    let _abort = AbortOnDrop(task.abort_handle());
    // A request id the session reuses while its first call runs leaves the first one cancellable.
    let registered = cancellable.and_then(|(in_flight, session, id)| {
        let key = InFlight::key(session, id);
        let mut calls = in_flight.calls.lock().unwrap();
        if calls.contains_key(&key) {
            return None;
        }
        calls.insert(key.clone(), task.abort_handle());
        drop(calls);
        Some(Registered { in_flight, key })
    });
    drive(Running { task, _abort, notes, questions }, parked, registered, frame).await
}

/// Waits for what the running call does first: its result (answered as a whole), a question
/// (the call is parked, answered `input_required`), or a notification (an event stream starts).
pub(crate) async fn drive<F: Frame>(
    mut running: Running,
    parked: Option<Arc<Parked>>,
    registered: Option<Registered>,
    frame: F,
) -> Response {
    let first = tokio::select! {
        biased;
        done = &mut running.task => {
            drop(registered);
            return match done {
                Ok(reply) => frame.respond(reply),
                Err(_) => frame.respond(Reply::Error { code: crate::jsonrpc::INTERNAL_ERROR, message: CANCELLED.into() }),
            };
        }
        Some(q) = running.questions.recv(), if parked.is_some() => {
            let reply = park(parked.as_deref(), running, q);
            return frame.respond(reply);
        }
        Some(note) = running.notes.recv() => note,
    };
    let state = Streaming {
        first: Some(first),
        running: Some(running),
        parked,
        frame: Some(frame),
        tail: Vec::new(),
        _registered: registered,
    };
    let body = futures_util::stream::unfold(state, |mut s| async move {
        s.next().await.map(|chunk| (Ok::<_, Infallible>(chunk), s))
    });
    crate::jsonrpc::event_stream(Body::from_stream(body))
}

/// Parks the call for an input round with `first` and any other question already asked; the
/// reply asking the client (or, when nothing more can be parked here, the refusal).
fn park(parked: Option<&Parked>, mut running: Running, first: Question) -> Reply {
    let mut questions = vec![first];
    while let Ok(q) = running.questions.try_recv() {
        questions.push(q);
    }
    let mut requests = serde_json::Map::new();
    let mut waiting = Vec::new();
    for (i, q) in questions.into_iter().enumerate() {
        let key = format!("upstream-{i}");
        requests.insert(key.clone(), json!({"method": q.method, "params": q.params}));
        waiting.push((key, q.answer));
    }
    match parked.and_then(|p| p.park(running, waiting)) {
        Some(id) => Reply::InputRequired { requests: Value::Object(requests), state: json!({RESUME: id}) },
        None => Reply::Error {
            code: crate::jsonrpc::INTERNAL_ERROR,
            message: "the server holds too many calls waiting for input; try again later".into(),
        },
    }
}

/// The key of a parked call's id in the data of a sealed `requestState`.
pub(crate) const RESUME: &str = "io.bridgekeeper/resume";

struct Streaming<F> {
    first: Option<String>,
    running: Option<Running>,
    parked: Option<Arc<Parked>>,
    frame: Option<F>,
    /// The last messages, once the call ended or asked for input.
    tail: Vec<String>,
    _registered: Option<Registered>,
}

fn event(message: &str) -> String {
    format!("event: message\ndata: {message}\n\n")
}

impl<F: Frame> Streaming<F> {
    async fn next(&mut self) -> Option<String> {
        if let Some(first) = self.first.take() {
            return Some(event(&first));
        }
        if !self.tail.is_empty() {
            return Some(event(&self.tail.remove(0)));
        }
        let running = self.running.as_mut()?;
        let asks = self.parked.is_some();
        tokio::select! {
            biased;
            Some(note) = running.notes.recv() => Some(event(&note)),
            Some(q) = running.questions.recv(), if asks => {
                let running = self.running.take()?;
                let frame = self.frame.take()?;
                self.tail.extend(frame.messages(park(self.parked.as_deref(), running, q)));
                Some(event(&self.tail.remove(0)))
            }
            done = &mut running.task => {
                // Notifications sent just before the end still go first.
                while let Ok(note) = running.notes.try_recv() {
                    self.tail.push(note);
                }
                self.running = None;
                let frame = self.frame.take()?;
                // Cancelled by the client (an error here): the spec asks for no response.
                if let Ok(reply) = done {
                    self.tail.extend(frame.messages(reply));
                }
                if self.tail.is_empty() {
                    return None;
                }
                Some(event(&self.tail.remove(0)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(token: Option<Value>, level: Option<&str>) -> (Relay, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(RELAY_BUFFER);
        (Relay::new(tx, token, level, None), rx)
    }

    #[tokio::test]
    async fn a_question_to_the_client_is_answered_only_from_its_own_session() {
        use bk_domain::mcp_session::ClientFeatures;
        let pending = Arc::new(Pending::default());
        let (tx, mut rx) = mpsc::channel(RELAY_BUFFER);
        let asker =
            |features| Asker { via: AskVia::Session { pending: pending.clone(), session: "sess-a".into() }, features };
        // Undeclared: refused at once, nothing sent.
        let r = Relay::new(tx.clone(), None, None, Some(asker(ClientFeatures::default())));
        let refused = r.ask("sampling/createMessage", json!({}), std::time::Duration::from_secs(5)).await;
        assert!(refused.unwrap_err().contains("did not declare"));
        assert!(rx.try_recv().is_err());
        // Declared: the request goes out on the stream; an answer on another session is ignored.
        let r = Relay::new(tx, None, None, Some(asker(ClientFeatures { sampling: true, ..ClientFeatures::default() })));
        let asking = tokio::spawn(async move {
            r.ask("sampling/createMessage", json!({"maxTokens": 5}), std::time::Duration::from_secs(5)).await
        });
        let sent: Value = serde_json::from_str(&rx.recv().await.unwrap()).unwrap();
        assert_eq!(sent["method"], "sampling/createMessage");
        let id = sent["id"].clone();
        assert!(id.as_str().unwrap().starts_with("bk-"));
        assert!(!pending.answer("sess-b", &json!({"id": id, "result": {"stolen": true}})), "another session's answer");
        assert!(!pending.answer("sess-a", &json!({"id": "bk-guess", "result": {}})), "an id never asked");
        assert!(pending.answer("sess-a", &json!({"id": id, "result": {"model": "m"}})));
        assert_eq!(asking.await.unwrap(), Ok(json!({"model": "m"})));
        assert!(!pending.answer("sess-a", &json!({"id": id, "result": {}})), "answered once");
    }

    #[test]
    fn progress_goes_out_under_the_clients_token_and_only_when_it_gave_one() {
        let (r, mut rx) = relay(Some(json!("client-token-7")), None);
        r.progress(2.0, Some(5.0), Some("two of five".into()));
        let note: Value = serde_json::from_str(&rx.try_recv().unwrap()).unwrap();
        assert_eq!(note["method"], "notifications/progress");
        assert_eq!(
            note["params"],
            json!({"progressToken": "client-token-7", "progress": 2.0, "total": 5.0, "message": "two of five"})
        );
        r.log("emergency", None, json!("x"));
        assert!(rx.try_recv().is_err(), "no logs without a level");
        let (r, mut rx) = relay(None, Some("warning"));
        r.progress(1.0, None, None);
        r.log("info", None, json!("too chatty"));
        r.log("error", Some("db".into()), json!({"m": 1}));
        let note: Value = serde_json::from_str(&rx.try_recv().unwrap()).unwrap();
        assert_eq!(note["params"], json!({"level": "error", "logger": "db", "data": {"m": 1}}));
        assert!(rx.try_recv().is_err(), "only the error: no progress without a token, no info below warning");
    }
}
