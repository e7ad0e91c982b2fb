//! Audit events: what happened, to which tenant, by whom, with what outcome. Emitted on every auth
//! event and tool call; redacted, hash-chained and stored by the audit log (crates/audit).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::AccountId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(Outcome::Success),
            "failure" => Some(Outcome::Failure),
            "denied" => Some(Outcome::Denied),
            _ => None,
        }
    }
}

/// Who acted: the client, session, personal access token or operator token involved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Actor {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pat_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator_token_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    pub id: String,
    pub at_ms: i64,
    /// The tenant; `None` for operator and system events.
    pub account_id: Option<AccountId>,
    pub actor: Actor,
    /// Dotted kind, e.g. `auth.signin`, `token.refresh_replay`, `mcp.tools_call`.
    pub kind: String,
    pub target: Option<String>,
    pub outcome: Outcome,
    pub latency_ms: Option<i64>,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub details: Value,
}

impl AuditEvent {
    pub fn new(kind: &str, outcome: Outcome, at_ms: i64) -> Self {
        Self {
            id: format!("evt_{}", uuid::Uuid::now_v7().simple()),
            at_ms,
            account_id: None,
            actor: Actor::default(),
            kind: kind.to_owned(),
            target: None,
            outcome,
            latency_ms: None,
            request_id: None,
            ip: None,
            details: Value::Object(Default::default()),
        }
    }
    pub fn account(mut self, a: &AccountId) -> Self {
        self.account_id = Some(a.clone());
        self
    }
    pub fn client(mut self, c: impl ToString) -> Self {
        self.actor.client_id = Some(c.to_string());
        self
    }
    pub fn session(mut self, s: impl ToString) -> Self {
        self.actor.session_id = Some(s.to_string());
        self
    }
    pub fn pat(mut self, p: impl ToString) -> Self {
        self.actor.pat_id = Some(p.to_string());
        self
    }
    pub fn operator(mut self, o: impl ToString) -> Self {
        self.actor.operator_token_id = Some(o.to_string());
        self
    }
    pub fn target(mut self, t: impl ToString) -> Self {
        self.target = Some(t.to_string());
        self
    }
    pub fn ip(mut self, ip: impl ToString) -> Self {
        self.ip = Some(ip.to_string());
        self
    }
    pub fn latency_ms(mut self, ms: i64) -> Self {
        self.latency_ms = Some(ms);
        self
    }
    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        if let Value::Object(m) = &mut self.details {
            m.insert(key.to_owned(), value.into());
        }
        self
    }
}

/// An event as stored: with its place and links in the hash chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredAuditEvent {
    pub seq: i64,
    #[serde(flatten)]
    pub event: AuditEvent,
    pub prev_hash: String,
    pub hash: String,
    /// When the row was redacted (its account deleted); it then no longer matches its hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacted_at: Option<i64>,
}

/// Where events go. Recording never blocks and never fails the request that emits it.
pub trait AuditSink: Send + Sync {
    fn record(&self, event: AuditEvent);
}

/// A sink that drops everything (tools and tests that do not audit).
pub struct NoAudit;

impl AuditSink for NoAudit {
    fn record(&self, _event: AuditEvent) {}
}

/// Replaces every occurrence of `needle` in the strings of `value` (object keys and values, at any
/// depth) with `with`; whether anything changed. How a deleted account's email leaves its audit rows.
pub fn redact_value(value: &mut serde_json::Value, needle: &str, with: &str) -> bool {
    use serde_json::Value;
    if needle.is_empty() {
        return false;
    }
    match value {
        Value::String(s) if s.contains(needle) => {
            *s = s.replace(needle, with);
            true
        }
        Value::Array(items) => items.iter_mut().fold(false, |changed, v| redact_value(v, needle, with) | changed),
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().filter(|k| k.contains(needle)).cloned().collect();
            let mut changed = !keys.is_empty();
            for k in keys {
                if let Some(v) = map.remove(&k) {
                    map.insert(k.replace(needle, with), v);
                }
            }
            for v in map.values_mut() {
                changed |= redact_value(v, needle, with);
            }
            changed
        }
        _ => false,
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::redact_value;
    use serde_json::json;

    #[test]
    fn an_address_leaves_every_string_of_a_row() {
        let mut v = json!({"email": "a@b.co", "note": "signed in as a@b.co", "n": 3, "list": ["x", "A@b.co", "a@b.co"], "a@b.co": 1});
        assert!(redact_value(&mut v, "a@b.co", "deleted-acc_1@invalid"));
        assert_eq!(
            v,
            json!({"email": "deleted-acc_1@invalid", "note": "signed in as deleted-acc_1@invalid", "n": 3,
                   "list": ["x", "A@b.co", "deleted-acc_1@invalid"], "deleted-acc_1@invalid": 1})
        );
        assert!(!redact_value(&mut v, "a@b.co", "x"), "nothing left to change");
        assert!(!redact_value(&mut json!({"k": "v"}), "", "x"));
    }
}
