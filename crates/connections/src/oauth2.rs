//! The upstream half of an `oauth2` connection: the authorization URL the tenant is sent to, and the
//! code exchange, user-info and revocation calls at the provider, made through the request-forgery-safe
//! outbound client (https only, public addresses only unless the operator allows private ones, no
//! redirects, bounded size and time). A provider's refusal (`error`, `error_description`) is kept
//! apart from its being unavailable, so the tenant is told which it was.

use bk_outbound::{Answer, FetchError, FetchPolicy, SafeFetcher};
use serde::Deserialize;
use serde_json::Value;
use url::Url;
use zeroize::Zeroizing;

use crate::catalog::{OAuth2, TokenAuth, TokenBody};
use crate::vault::Credential;

/// Why a call to the provider did not give what was asked.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The provider refused, with its OAuth error code (passed on to the tenant).
    #[error("the provider refused: {error}")]
    Refused { error: String, description: Option<String> },
    /// The provider could not be reached, failed (5xx), was too slow or too large, or redirected.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider answered something that is not a token response.
    #[error("the provider's answer was not understood: {0}")]
    Malformed(&'static str),
}

impl From<FetchError> for UpstreamError {
    fn from(e: FetchError) -> Self {
        UpstreamError::Unavailable(e.to_string())
    }
}

/// What a code exchange gave.
pub struct Tokens {
    /// `Credential::OAuth`: zeroized when dropped.
    pub credential: Credential,
    /// Seconds, when the provider said.
    pub expires_in: Option<i64>,
    /// The scopes granted, when the provider said.
    pub scopes: Option<Vec<String>>,
}

/// The fields of a token response (or of its `token_path` member).
#[derive(Deserialize)]
struct TokenFields {
    access_token: Option<String>,
    refresh_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<Value>,
    scope: Option<Value>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Whether a revocation answer says the grant was revoked (RFC 7009: any 2xx), treating a 2xx
/// whose body is a refusal as one (Slack answers `200 {"ok": false, "error": …}`).
fn revocation_outcome(answer: &Answer) -> Result<bool, UpstreamError> {
    match answer.status {
        // Some providers answer 200 with a refusal in the body (Slack: `{"ok": false, "error": …}`).
        200..=299 => match serde_json::from_slice::<Value>(&answer.body).ok() {
            Some(v) if v.get("ok") == Some(&Value::Bool(false)) || v.get("error").is_some_and(Value::is_string) => {
                let error = v.get("error").and_then(Value::as_str).unwrap_or("not_revoked");
                Err(UpstreamError::Refused { error: error.chars().take(MAX_ERROR_CHARS).collect(), description: None })
            }
            _ => Ok(true),
        },
        s if s >= 500 => Err(UpstreamError::Unavailable(format!("the revocation endpoint answered HTTP {s}"))),
        s => Err(UpstreamError::Refused { error: format!("http_{s}"), description: None }),
    }
}

/// The longest error text passed on from a provider.
const MAX_ERROR_CHARS: usize = 200;

fn bounded(s: String) -> String {
    s.chars().filter(|c| !c.is_control()).take(MAX_ERROR_CHARS).collect()
}

/// Where the tenant is sent to approve the connection.
pub fn authorization_url(
    o: &OAuth2,
    client_id: &str,
    redirect_uri: &str,
    state: &str,
    code_challenge: Option<&str>,
) -> Url {
    let mut url = o.authorize_url.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri);
        if !o.scopes.is_empty() {
            q.append_pair(&o.scope_param, &o.scopes.join(&o.scope_separator));
        }
        q.append_pair("state", state);
        if let Some(c) = code_challenge {
            q.append_pair("code_challenge", c).append_pair("code_challenge_method", "S256");
        }
        if let Some(r) = &o.resource {
            q.append_pair("resource", r);
        }
        for (k, v) in &o.authorize_params {
            q.append_pair(k, v);
        }
    }
    url
}

/// The outbound client for providers.
pub struct Upstream {
    http: SafeFetcher,
}

impl Upstream {
    pub fn new(policy: FetchPolicy) -> Result<Self, String> {
        Ok(Self { http: SafeFetcher::new(policy)? })
    }

    pub(crate) fn http(&self) -> &SafeFetcher {
        &self.http
    }

    /// Exchanges an authorization code at the provider's token endpoint.
    pub async fn exchange_code(
        &self,
        o: &OAuth2,
        code: &str,
        redirect_uri: &str,
        code_verifier: Option<&str>,
    ) -> Result<Tokens, UpstreamError> {
        let mut params: Vec<(&str, &str)> =
            vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect_uri)];
        if let Some(v) = code_verifier {
            params.push(("code_verifier", v));
        }
        if let Some(r) = &o.resource {
            params.push(("resource", r));
        }
        let req = self.client_request(o, &o.token_url, &mut params)?;
        let answer = self.http.send(req).await?;
        token_response(answer, o.token_path.as_deref())
    }

    /// Exchanges the connection's refresh token for new tokens. A provider that sends no new
    /// refresh token keeps the old one valid: it is carried over.
    pub async fn refresh(&self, o: &OAuth2, credential: &Credential) -> Result<Tokens, UpstreamError> {
        let Credential::OAuth { refresh_token: Some(refresh_token), .. } = credential else {
            return Err(UpstreamError::Malformed("the connection holds no refresh token"));
        };
        let mut params: Vec<(&str, &str)> = vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
        if let Some(r) = &o.resource {
            params.push(("resource", r));
        }
        let req = self.client_request(o, &o.token_url, &mut params)?;
        let answer = self.http.send(req).await?;
        let mut tokens = token_response(answer, o.token_path.as_deref())?;
        if let Credential::OAuth { refresh_token: new @ None, .. } = &mut tokens.credential {
            *new = Some(refresh_token.clone());
        }
        Ok(tokens)
    }

    /// Revokes the connection's grant at the provider (RFC 7009), by its refresh token when it has
    /// one (which ends the access tokens too at providers that follow the RFC), else its access
    /// token. `Ok(false)`: the provider has no revocation endpoint.
    pub async fn revoke(&self, o: &OAuth2, credential: &Credential) -> Result<bool, UpstreamError> {
        let (Some(url), Credential::OAuth { access_token, refresh_token, .. }) = (o.revoke_url.as_ref(), credential)
        else {
            return Ok(false);
        };
        let (token, hint) = match refresh_token {
            Some(r) => (r.as_str(), "refresh_token"),
            None => (access_token.as_str(), "access_token"),
        };
        let mut params: Vec<(&str, &str)> = vec![("token", token), ("token_type_hint", hint)];
        let req = self.client_request(o, url, &mut params)?;
        revocation_outcome(&self.http.send(req).await?)
    }

    /// A POST to one of the provider's endpoints, authenticated as the operator's client and encoded
    /// as the provider wants.
    fn client_request<'a>(
        &self,
        o: &'a OAuth2,
        url: &Url,
        params: &mut Vec<(&'a str, &'a str)>,
    ) -> Result<reqwest::RequestBuilder, UpstreamError> {
        let client_id = o.client.client_id.as_deref();
        let secret = o.client.client_secret.as_ref();
        let mut req = self.http.client().post(url.clone()).header(reqwest::header::ACCEPT, "application/json");
        match (o.token_auth, client_id, secret) {
            (TokenAuth::None, Some(client_id), _) => params.push(("client_id", client_id)),
            (TokenAuth::Body, Some(client_id), Some(secret)) => {
                params.push(("client_id", client_id));
                params.push(("client_secret", secret.expose()));
            }
            (TokenAuth::Basic, Some(client_id), Some(secret)) => {
                // RFC 6749 §2.3.1: both form-encoded before they are joined.
                let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
                req = req.basic_auth(enc(client_id), Some(enc(secret.expose())));
            }
            _ => return Err(UpstreamError::Malformed("the provider's client credentials are not configured")),
        }
        Ok(match o.token_body {
            TokenBody::Form => req.form(&params),
            TokenBody::Json => {
                let body: serde_json::Map<String, Value> =
                    params.iter().map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned()))).collect();
                req.json(&body)
            }
        })
    }

    /// What the provider says about the upstream account, when it has a user-info endpoint and
    /// answers; nothing otherwise (a connection does not fail for want of it).
    pub async fn user_info(&self, o: &OAuth2, credential: &Credential) -> Option<Value> {
        let (url, Credential::OAuth { access_token, .. }) = (o.userinfo_url.as_ref()?, credential) else {
            return None;
        };
        let req = self
            .http
            .client()
            .get(url.clone())
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json");
        match self.http.send(req).await {
            Ok(a) if (200..300).contains(&a.status) => {
                serde_json::from_slice::<Value>(&a.body).ok().filter(Value::is_object)
            }
            Ok(a) => {
                tracing::info!(status = a.status, url = %url, "user info not available");
                None
            }
            Err(e) => {
                tracing::info!(error = %e, url = %url, "user info not available");
                None
            }
        }
    }
}

/// The upstream account's id in a user-info answer (`sub`, `id`, `user_id` or `account_id`).
pub fn provider_user_id(info: &Value) -> Option<String> {
    ["sub", "id", "user_id", "account_id"].iter().find_map(|k| match info.get(*k)? {
        Value::String(s) if !s.is_empty() => Some(bounded(s.clone())),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn token_response(answer: Answer, token_path: Option<&str>) -> Result<Tokens, UpstreamError> {
    let body = Zeroizing::new(answer.body);
    if answer.status >= 500 {
        return Err(UpstreamError::Unavailable(format!("the token endpoint answered HTTP {}", answer.status)));
    }
    let mut doc: Value = serde_json::from_slice(&body).map_err(|_| {
        if answer.status >= 400 {
            UpstreamError::Refused { error: format!("http_{}", answer.status), description: None }
        } else {
            UpstreamError::Malformed("the token response is not JSON")
        }
    })?;
    // An error may sit at the top even when the tokens would not (Slack: HTTP 200, `ok: false`).
    let top_error = doc.get("error").and_then(Value::as_str).map(str::to_owned);
    let fields = match token_path {
        Some(p) if top_error.is_none() => doc.get_mut(p).map(Value::take).unwrap_or(Value::Null),
        _ => doc,
    };
    let f: TokenFields =
        serde_json::from_value(fields).map_err(|_| UpstreamError::Malformed("the token response has no tokens"))?;
    if let Some(error) = f.error.or(top_error) {
        return Err(UpstreamError::Refused { error: bounded(error), description: f.error_description.map(bounded) });
    }
    if answer.status >= 400 {
        return Err(UpstreamError::Refused { error: format!("http_{}", answer.status), description: None });
    }
    let access_token = f
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or(UpstreamError::Malformed("the token response has no access_token"))?;
    let expires_in = match f.expires_in {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    let scopes = match f.scope {
        Some(Value::String(s)) => Some(s.split([' ', ',']).filter(|x| !x.is_empty()).map(str::to_owned).collect()),
        Some(Value::Array(a)) => Some(a.into_iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()),
        _ => None,
    };
    Ok(Tokens {
        credential: Credential::OAuth {
            access_token,
            refresh_token: f.refresh_token.filter(|t| !t.is_empty()),
            token_type: f.token_type.unwrap_or_else(|| "Bearer".into()),
            upstream: None,
        },
        expires_in,
        scopes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, v: Value) -> Answer {
        Answer { status, headers: Default::default(), body: v.to_string().into_bytes() }
    }

    #[test]
    fn a_revocation_refused_in_a_200_body_is_not_counted_as_revoked() {
        assert!(revocation_outcome(&Answer { status: 200, headers: Default::default(), body: Vec::new() }).unwrap());
        assert!(revocation_outcome(&answer(200, serde_json::json!({"ok": true}))).unwrap());
        let slack = revocation_outcome(&answer(200, serde_json::json!({"ok": false, "error": "invalid_auth"})));
        assert!(matches!(slack, Err(UpstreamError::Refused { ref error, .. }) if error == "invalid_auth"));
        assert!(matches!(revocation_outcome(&answer(503, serde_json::json!({}))), Err(UpstreamError::Unavailable(_))));
        assert!(matches!(revocation_outcome(&answer(400, serde_json::json!({}))), Err(UpstreamError::Refused { .. })));
    }

    #[test]
    fn a_token_response_becomes_a_credential() {
        let t = token_response(
            answer(200, serde_json::json!({"access_token": "at", "refresh_token": "rt", "expires_in": 3599, "scope": "a b", "token_type": "bearer"})),
            None,
        )
        .unwrap();
        assert_eq!((t.expires_in, t.scopes), (Some(3599), Some(vec!["a".to_owned(), "b".to_owned()])));
        assert!(
            matches!(&t.credential, Credential::OAuth { access_token, refresh_token: Some(r), .. } if access_token == "at" && r == "rt")
        );
    }

    #[test]
    fn tokens_under_a_path_and_errors_at_the_top() {
        let slack = serde_json::json!({"ok": true, "access_token": "xoxb-bot", "authed_user": {"access_token": "xoxp-user", "scope": "chat:write,users:read"}});
        let t = token_response(answer(200, slack), Some("authed_user")).unwrap();
        assert!(matches!(&t.credential, Credential::OAuth { access_token, .. } if access_token == "xoxp-user"));
        assert_eq!(t.scopes.unwrap(), ["chat:write", "users:read"]);
        let refused =
            token_response(answer(200, serde_json::json!({"ok": false, "error": "invalid_code"})), Some("authed_user"));
        assert!(matches!(refused, Err(UpstreamError::Refused { error, .. }) if error == "invalid_code"));
    }

    #[test]
    fn refusals_outages_and_nonsense_are_told_apart() {
        let r = token_response(
            answer(400, serde_json::json!({"error": "invalid_grant", "error_description": "bad\ncode"})),
            None,
        );
        assert!(
            matches!(r, Err(UpstreamError::Refused { error, description: Some(d) }) if error == "invalid_grant" && d == "badcode")
        );
        assert!(matches!(token_response(answer(503, serde_json::json!({})), None), Err(UpstreamError::Unavailable(_))));
        assert!(matches!(
            token_response(Answer { status: 200, headers: Default::default(), body: b"<html>".to_vec() }, None),
            Err(UpstreamError::Malformed(_))
        ));
        assert!(matches!(
            token_response(answer(200, serde_json::json!({"token_type": "bearer"})), None),
            Err(UpstreamError::Malformed(_))
        ));
        assert!(matches!(
            token_response(Answer { status: 401, headers: Default::default(), body: b"no".to_vec() }, None),
            Err(UpstreamError::Refused { .. })
        ));
    }

    #[test]
    fn user_ids_are_found_under_their_usual_names() {
        assert_eq!(provider_user_id(&serde_json::json!({"sub": "1234"})).as_deref(), Some("1234"));
        assert_eq!(provider_user_id(&serde_json::json!({"id": 583231, "login": "octocat"})).as_deref(), Some("583231"));
        assert_eq!(provider_user_id(&serde_json::json!({"ok": true, "user_id": "U1"})).as_deref(), Some("U1"));
        assert_eq!(provider_user_id(&serde_json::json!({"name": "x"})), None);
    }
}
