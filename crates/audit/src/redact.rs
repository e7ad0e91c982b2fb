//! The redactor: runs on every event before it is stored or streamed. It removes our own token
//! formats, JWTs, `Authorization` values, and the values of fields whose names say they are secret
//! (password, secret, token, code, authorization, cookie), plus operator-configured patterns.

use regex::Regex;
use serde_json::Value;

pub const REDACTED: &str = "[REDACTED]";

pub struct Redactor {
    patterns: Vec<Regex>,
    /// One pass over the text tells which patterns (if any) apply: most strings need no work.
    any: regex::RegexSet,
}

#[derive(Debug, thiserror::Error)]
#[error("audit.redact pattern {pattern:?} is not a valid regular expression: {error}")]
pub struct PatternError {
    pub pattern: String,
    pub error: String,
}

const BUILT_IN: &[&str] = &[
    // Our own opaque tokens: refresh, code, PAT, operator, client secret.
    r"\bbk[rcpos]_[A-Za-z0-9_\-]{16,}",
    // JWTs (three base64url parts, the first two JSON objects).
    r"\beyJ[A-Za-z0-9_\-]+\.eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*",
    // Authorization header values.
    r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}",
    // Common upstream token shapes (Google, Slack, GitHub).
    r"\bya29\.[A-Za-z0-9_\-\.]+",
    r"\bxox[abposr]-[A-Za-z0-9\-]+",
    r"\bgh[pousr]_[A-Za-z0-9]{20,}",
];

/// Field names whose values are never kept.
fn secret_key(k: &str) -> bool {
    let contains = |needle: &str| k.as_bytes().windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle.as_bytes()));
    ["password", "secret", "token", "authorization", "cookie", "code_verifier", "credential"]
        .iter()
        .any(|s| contains(s))
        || k.eq_ignore_ascii_case("code")
}

impl Redactor {
    pub fn new(extra: &[String]) -> Result<Self, PatternError> {
        let mut patterns = Vec::new();
        let all: Vec<String> = BUILT_IN.iter().map(|s| s.to_string()).chain(extra.iter().cloned()).collect();
        for p in &all {
            patterns.push(Regex::new(p).map_err(|e| PatternError { pattern: p.clone(), error: e.to_string() })?);
        }
        let any =
            regex::RegexSet::new(&all).map_err(|e| PatternError { pattern: all.join(" | "), error: e.to_string() })?;
        Ok(Self { patterns, any })
    }

    pub fn redact_str(&self, s: &str) -> String {
        self.redacted(s).unwrap_or_else(|| s.to_owned())
    }

    /// The text with every match replaced, or `None` when nothing matches (most text: one pass, no copy).
    pub fn redacted(&self, s: &str) -> Option<String> {
        let hits = self.any.matches(s);
        if !hits.matched_any() {
            return None;
        }
        let mut out = s.to_owned();
        for i in hits.iter() {
            out = self.patterns[i].replace_all(&out, REDACTED).into_owned();
        }
        Some(out)
    }

    /// Every string in `v` with token-shaped text replaced; field names are not judged (for data
    /// from elsewhere, whose fields are its own).
    pub fn redact_strings(&self, v: &mut Value) {
        match v {
            Value::String(s) => {
                if let Some(r) = self.redacted(s) {
                    *s = r;
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| self.redact_strings(x)),
            Value::Object(m) => m.values_mut().for_each(|x| self.redact_strings(x)),
            _ => {}
        }
    }

    pub fn redact_value(&self, v: &mut Value) {
        match v {
            Value::String(s) => {
                if let Some(r) = self.redacted(s) {
                    *s = r;
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| self.redact_value(x)),
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if secret_key(k) {
                        *x = Value::String(REDACTED.into());
                    } else {
                        self.redact_value(x);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn removes_every_secret_kind() {
        let r = Redactor::new(&["sk-[a-z0-9]{10,}".into()]).unwrap();
        let mut v = json!({
            "note": "refresh bkr_abcdefghijklmnopqrstuvwxyz012345 and bkp_ABCDEFGHIJKLMNOPQRSTUVWX",
            "jwt": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
            "header": "Authorization: Bearer abcdefghijklmnop",
            "password": "hunter2",
            "client_secret": "anything",
            "nested": [{"refresh_token": "x"}, "custom sk-abcdefghijk"],
            "safe": "hello",
        });
        r.redact_value(&mut v);
        let s = v.to_string();
        for leak in ["bkr_abc", "bkp_ABC", "eyJhbGci", "abcdefghijklmnop", "hunter2", "anything", "sk-abc"] {
            assert!(!s.contains(leak), "{leak} leaked: {s}");
        }
        assert_eq!(v["safe"], "hello");
        for (key, secret) in [("Password", true), ("X-Auth-TOKEN", true), ("CODE", true), ("codename", false)] {
            assert_eq!(secret_key(key), secret, "{key}");
        }
        assert!(Redactor::new(&["(".into()]).is_err());
    }
}
