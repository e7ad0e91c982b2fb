//! The `requestState` of multi-round-trip requests (MCP 2026-07-28, `basic/patterns/mrtr`): what a
//! tool keeps between asking the client for input and the client's retry, carried by the client.
//! The specification makes it attacker-controlled input, so it is sealed here:
//!
//! `base64url(payload JSON) "." base64url(HMAC-SHA256(payload))`, under a key derived from the
//! master key for this purpose only. The payload binds the state to the caller (account, grant,
//! client), the call (tool name and a digest of its arguments) and a short lifetime; any mismatch
//! is refused. The payload is integrity-protected, not encrypted: a tool keeps nothing secret in it.
//! Single use, where an effect must not repeat, is the tool's own business (`restrict-access` binds
//! its state to the grant as it was, and applies it by compare-and-set).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use bk_access::AccessContext;
use bk_crypto::mac::MacKey;
use bk_crypto::secret::{b64url, b64url_decode, sha256};

/// How long a person has to answer (a form, a sign-in page).
pub const STATE_TTL_MS: i64 = 10 * 60 * 1000;
/// Larger states are refused before any work is done.
const MAX_STATE_BYTES: usize = 16 * 1024;
const FORMAT: u8 = 1;

pub struct RequestStates {
    key: Arc<MacKey>,
}

/// Why a presented state was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum StateError {
    /// Not a state this server made (bad encoding, bad tag, or too large).
    Forged,
    /// Made for another account, grant or client.
    OtherCaller,
    /// Made for another tool or other arguments.
    OtherCall,
    Expired,
}

impl StateError {
    pub fn message(&self) -> &'static str {
        match self {
            Self::Forged => "requestState was not issued by this server or was altered",
            Self::OtherCaller => "requestState was issued to another caller",
            Self::OtherCall => "requestState was issued for another tool call (name or arguments differ)",
            Self::Expired => "requestState has expired; call the tool again without it",
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Payload {
    v: u8,
    account: String,
    session: String,
    client: String,
    tool: String,
    /// base64url(SHA-256(canonical JSON of the arguments)).
    args: String,
    exp: i64,
    data: Value,
}

impl RequestStates {
    pub fn new(key: Arc<MacKey>) -> Self {
        Self { key }
    }

    pub fn seal(&self, ctx: &AccessContext, tool: &str, args: &Value, data: Value, now_ms: i64) -> String {
        let payload = Payload {
            v: FORMAT,
            account: ctx.account_id.to_string(),
            session: ctx.session_id.to_string(),
            client: ctx.client_id.to_string(),
            tool: tool.to_owned(),
            args: digest(args),
            exp: now_ms + STATE_TTL_MS,
            data,
        };
        let body = b64url(&serde_json::to_vec(&payload).unwrap_or_default());
        let tag = b64url(&self.key.sign(body.as_bytes()));
        format!("{body}.{tag}")
    }

    /// The tool's data, if `state` was sealed here for this caller, tool and arguments and is
    /// still fresh.
    pub fn open(
        &self,
        ctx: &AccessContext,
        tool: &str,
        args: &Value,
        state: &str,
        now_ms: i64,
    ) -> Result<Value, StateError> {
        if state.len() > MAX_STATE_BYTES {
            return Err(StateError::Forged);
        }
        let (body, tag) = state.split_once('.').ok_or(StateError::Forged)?;
        let tag = b64url_decode(tag).ok_or(StateError::Forged)?;
        if !self.key.verify(body.as_bytes(), &tag) {
            return Err(StateError::Forged);
        }
        let payload: Payload = b64url_decode(body)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(|p: &Payload| p.v == FORMAT)
            .ok_or(StateError::Forged)?;
        if payload.account != ctx.account_id.as_str()
            || payload.session != ctx.session_id.as_str()
            || payload.client != ctx.client_id.as_str()
        {
            return Err(StateError::OtherCaller);
        }
        if payload.tool != tool || payload.args != digest(args) {
            return Err(StateError::OtherCall);
        }
        if now_ms >= payload.exp {
            return Err(StateError::Expired);
        }
        Ok(payload.data)
    }
}

/// A digest of a JSON value that does not depend on the order of object members.
fn digest(v: &Value) -> String {
    let mut out = String::new();
    canonical(v, &mut out);
    b64url(&sha256(out.as_bytes()))
}

fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use bk_domain::grant::GrantKind;
    use bk_domain::ids::{AccountId, ClientId, SessionId};
    use bk_domain::restrictions::Restrictions;
    use bk_domain::scope::ScopeSet;
    use serde_json::json;

    use super::*;

    fn ctx(account: &str, session: &str) -> AccessContext {
        AccessContext {
            account_id: AccountId::from_string(account.to_owned()),
            email: "a@example.com".into(),
            client_id: ClientId::from_string("c1".to_owned()),
            session_id: SessionId::from_string(session.to_owned()),
            scopes: ScopeSet::default(),
            restrictions: Restrictions::unrestricted(),
            kind: GrantKind::OAuth,
            machine: false,
            client_providers: None,
            claims: None,
        }
    }

    fn states() -> RequestStates {
        RequestStates::new(Arc::new(MacKey::derive(&[7u8; 32], "mcp-request-state")))
    }

    #[test]
    fn a_sealed_state_opens_only_for_its_caller_call_and_lifetime() {
        let s = states();
        let (me, args) = (ctx("acct-1", "sess-1"), json!({"b": 1, "a": [1, {"y": 2, "x": 1}]}));
        let sealed = s.seal(&me, "restrict-access", &args, json!({"keep": true}), 1_000);
        // Member order does not matter; content does.
        let reordered = json!({"a": [1, {"x": 1, "y": 2}], "b": 1});
        assert_eq!(s.open(&me, "restrict-access", &reordered, &sealed, 2_000), Ok(json!({"keep": true})));
        assert_eq!(s.open(&me, "restrict-access", &json!({"b": 2}), &sealed, 2_000), Err(StateError::OtherCall));
        assert_eq!(s.open(&me, "whoami", &args, &sealed, 2_000), Err(StateError::OtherCall));
        assert_eq!(
            s.open(&ctx("acct-2", "sess-1"), "restrict-access", &args, &sealed, 2_000),
            Err(StateError::OtherCaller)
        );
        assert_eq!(
            s.open(&ctx("acct-1", "sess-2"), "restrict-access", &args, &sealed, 2_000),
            Err(StateError::OtherCaller)
        );
        assert_eq!(s.open(&me, "restrict-access", &args, &sealed, 1_000 + STATE_TTL_MS), Err(StateError::Expired));
    }

    #[test]
    fn an_altered_or_foreign_state_is_forged() {
        let s = states();
        let me = ctx("acct-1", "sess-1");
        let sealed = s.seal(&me, "t", &json!({}), json!({"expected": "read-write"}), 0);
        let (body, tag) = sealed.split_once('.').unwrap();
        // The payload rewritten (keeping the old tag).
        let mut payload: Value = serde_json::from_slice(&b64url_decode(body).unwrap()).unwrap();
        payload["data"]["expected"] = json!("disabled");
        let altered = format!("{}.{tag}", b64url(&serde_json::to_vec(&payload).unwrap()));
        assert_eq!(s.open(&me, "t", &json!({}), &altered, 1), Err(StateError::Forged));
        // A state sealed under another key.
        let other = RequestStates::new(Arc::new(MacKey::derive(&[8u8; 32], "mcp-request-state")));
        let foreign = other.seal(&me, "t", &json!({}), json!({}), 0);
        assert_eq!(s.open(&me, "t", &json!({}), &foreign, 1), Err(StateError::Forged));
        for junk in ["", ".", "abc", "a.b", &"x".repeat(MAX_STATE_BYTES + 1)] {
            assert_eq!(s.open(&me, "t", &json!({}), junk, 1), Err(StateError::Forged), "{junk:.20}");
        }
    }
}
