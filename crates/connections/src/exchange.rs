//! The `token_exchange` kind (reference 002's scoped-token bridge): a company that puts its own API
//! behind Bridgekeeper runs a verify endpoint; Bridgekeeper posts it the signed-in person's
//! **verified** email with the operator's admin token, and the backend answers with an API token
//! scoped to that user (and the user's id in the backend). The token is sealed as the connection's
//! credential and sent, as `Authorization: Bearer`, on each of the provider's tools.
//!
//! The backend trusts the address it is sent, so the caller must have proved it: this module only
//! exchanges; `bk_api` refuses accounts whose address is not verified before calling it.

use serde::Deserialize;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::catalog::TokenExchange;
use crate::oauth2::{Upstream, UpstreamError};
use crate::vault::Credential;

/// The longest scoped token accepted from a backend, in bytes.
const MAX_TOKEN_BYTES: usize = 4096;
/// The longest backend user id kept, in characters.
const MAX_USER_ID_CHARS: usize = 256;

/// What the backend answered for a verified email.
pub struct Exchanged {
    /// `Credential::Exchanged`: zeroized when dropped.
    pub credential: Credential,
    /// The user's id in the backend, when it said.
    pub user_id: Option<String>,
    /// Seconds, when the backend said how long the token lives.
    pub expires_in: Option<i64>,
}

#[derive(Deserialize)]
struct VerifyAnswer {
    access_token: Option<String>,
    user_id: Option<Value>,
    expires_in: Option<Value>,
    error: Option<String>,
}

impl Upstream {
    /// Asks the tenant backend's verify endpoint for a token scoped to the user with `email`.
    /// A refusal (4xx but 401) is [`UpstreamError::Refused`] with `access_denied` (or the backend's
    /// own error code); a failure (5xx, 401 — the admin token refused —, unreachable, slow) is
    /// `Unavailable`.
    pub async fn exchange_email(&self, t: &TokenExchange, email: &str) -> Result<Exchanged, UpstreamError> {
        let admin =
            t.admin_token.as_ref().ok_or(UpstreamError::Malformed("the provider's admin token is not configured"))?;
        let req = self
            .http()
            .client()
            .post(t.verify_url.clone())
            .bearer_auth(admin.expose())
            .header(reqwest::header::ACCEPT, "application/json")
            .json(&serde_json::json!({ "email": email }));
        let answer = self.http().send(req).await?;
        let body = Zeroizing::new(answer.body);
        if answer.status >= 500 {
            return Err(UpstreamError::Unavailable(format!("the verify endpoint answered HTTP {}", answer.status)));
        }
        // 401 is the backend refusing the operator's admin token, not the user: a failure of the
        // set-up, never blamed on the person.
        if answer.status == 401 {
            return Err(UpstreamError::Unavailable(
                "the verify endpoint refused the operator's admin token (HTTP 401)".into(),
            ));
        }
        let parsed: Option<VerifyAnswer> = serde_json::from_slice(&body).ok();
        if answer.status >= 400 {
            let code =
                parsed.and_then(|p| p.error).filter(|e| is_error_code(e)).unwrap_or_else(|| "access_denied".into());
            return Err(UpstreamError::Refused {
                error: code,
                description: Some(format!("the verify endpoint answered HTTP {}", answer.status)),
            });
        }
        let a = parsed.ok_or(UpstreamError::Malformed("the verify endpoint's answer is not JSON"))?;
        let token =
            a.access_token.ok_or(UpstreamError::Malformed("the verify endpoint's answer has no access_token"))?;
        let token = Zeroizing::new(token);
        if token.is_empty()
            || token.len() > MAX_TOKEN_BYTES
            || token.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(UpstreamError::Malformed("the verify endpoint's access_token is not a usable bearer token"));
        }
        let user_id = match a.user_id {
            Some(Value::String(s)) => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
        .filter(|s| !s.is_empty() && s.chars().count() <= MAX_USER_ID_CHARS && !s.chars().any(char::is_control));
        let expires_in = match a.expires_in {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .filter(|s| *s > 0);
        Ok(Exchanged { credential: Credential::Exchanged { token: token.to_string() }, user_id, expires_in })
    }
}

/// An OAuth-style error code (`access_denied`, `user_not_found`): passed on only if it looks like one.
fn is_error_code(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_code_shaped_errors_are_passed_on() {
        assert!(is_error_code("access_denied"));
        assert!(is_error_code("user.not-found_2"));
        assert!(!is_error_code(""));
        assert!(!is_error_code("no such user <script>"));
        assert!(!is_error_code(&"x".repeat(65)));
    }
}
