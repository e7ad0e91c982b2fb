//! The protocol half of the authorization endpoint: validating an authorization request and
//! issuing a code. The browser half (login, consent) is in the web crate, which calls these.
//!
//! Validation order follows RFC 6749 §4.1.2.1: a bad `client_id` or `redirect_uri` is shown to the
//! person and never redirected; every other error is redirected to the client with `state` and `iss`.

use std::collections::HashMap;

use bk_crypto::secret::{new_token, token_hash};
use bk_domain::UnixTime;
use bk_domain::client::Client;
use bk_domain::code::AuthorizationCode;
use bk_domain::ids::AccountId;
use bk_domain::pkce::CodeChallenge;
use bk_domain::restrictions::Restrictions;
use bk_domain::scope::ScopeSet;
use url::Url;

use crate::AuthServer;
use crate::issue::CODE_PREFIX;

/// The parameters of an authorization request that this server understands.
pub const PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "resource",
    "nonce",
    "prompt",
    "provider_permissions",
    "default_provider_permission",
    "agent_ids",
    "knowledge_base_ids",
];

/// A validated authorization request.
#[derive(Clone, Debug)]
pub struct AuthorizeRequest {
    pub client: Client,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub challenge: CodeChallenge,
    pub scopes: ScopeSet,
    pub resource: String,
    pub nonce: Option<String>,
    pub prompt: Option<String>,
    /// Provider permissions and agent / knowledge-base restrictions, within the client's allow-list.
    pub restrictions: Restrictions,
    /// The parameters as received, to carry through login and consent.
    pub raw: Vec<(String, String)>,
}

impl AuthorizeRequest {
    /// What the person approves: the scopes and the restrictions together, as canonical text. A
    /// remembered consent covers exactly this — asking for wider provider permissions asks again.
    pub fn consent_key(&self) -> String {
        format!("{}|{}", self.scopes, self.restrictions.to_json())
    }
}

#[derive(Debug)]
pub enum AuthorizeError {
    /// Shown to the person; never redirected (unknown client, bad redirect URI).
    Page(String),
    /// Sent back to the client's redirect URI.
    Redirect(String),
}

/// The redirect URI a request for `client` names (or its only one), if registered.
fn redirect_of(client: &bk_domain::client::Client, map: &HashMap<&str, &str>) -> Result<String, String> {
    match map.get("redirect_uri") {
        Some(uri) if client.redirect_uri_allowed(uri) => Ok((*uri).to_owned()),
        Some(_) => Err("The redirect_uri is not registered for this application.".into()),
        None if client.redirect_uris.len() == 1 => Ok(client.redirect_uris[0].clone()),
        None => Err("The request has no redirect_uri.".into()),
    }
}

impl AuthServer {
    /// Validates raw authorization-request parameters.
    pub async fn validate_authorize(&self, params: &[(String, String)]) -> Result<AuthorizeRequest, AuthorizeError> {
        let mut map: HashMap<&str, &str> = HashMap::new();
        for (k, v) in params {
            if v.is_empty() {
                continue;
            }
            if map.insert(k.as_str(), v.as_str()).is_some() {
                if matches!(k.as_str(), "client_id" | "redirect_uri") {
                    return Err(AuthorizeError::Page(format!("The parameter {k} is repeated.")));
                }
                let redirect = self.redirect_target(&map).await.map_err(AuthorizeError::Page)?;
                return Err(self.error_redirect(
                    &redirect,
                    &map,
                    "invalid_request",
                    &format!("parameter {k} is repeated"),
                ));
            }
        }
        let Some(client_id) = map.get("client_id").copied() else {
            return Err(AuthorizeError::Page("The request has no client_id.".into()));
        };
        // One lookup per request (a metadata document is fetched at most once).
        let client = self.authorizing_client(client_id).await.map_err(AuthorizeError::Page)?;
        let redirect_uri = redirect_of(&client, &map).map_err(AuthorizeError::Page)?;
        let fail = |code: &str, desc: &str| self.error_redirect(&redirect_uri, &map, code, desc);

        match map.get("response_type").copied() {
            Some("code") => {}
            None => return Err(fail("invalid_request", "response_type is required")),
            Some(_) => {
                return Err(fail("unsupported_response_type", "only response_type=code is supported"));
            }
        }
        // A client an operator made for other grants only (a machine client) runs no authorization.
        let caps = match self.capable_client(&client.id).await {
            Ok(found) => found.map(|(_, caps)| caps).unwrap_or_default(),
            Err(_) => return Err(AuthorizeError::Page("The server could not look up the application.".into())),
        };
        if !caps.allows(bk_domain::client::GrantType::AuthorizationCode) {
            return Err(fail("unauthorized_client", "this client is not allowed the authorization code flow"));
        }
        let challenge =
            CodeChallenge::from_request(map.get("code_challenge").copied(), map.get("code_challenge_method").copied())
                .map_err(|e| fail("invalid_request", &e.to_string()))?;
        let scopes = client.grantable_scope(map.get("scope").copied());
        if scopes.is_empty() {
            return Err(fail("invalid_scope", "none of the requested scopes is available to this application"));
        }
        let resource = match map.get("resource").copied() {
            None => self.mcp_resource(),
            Some(r) if self.resource_allowed(r) => r.trim_end_matches('/').to_owned(),
            Some(_) => {
                return Err(fail("invalid_target", "the requested resource is not served by this server"));
            }
        };
        let prompt = map.get("prompt").map(|p| p.to_string());
        if let Some(p) = &prompt
            && p.split(' ').any(|v| !matches!(v, "none" | "login" | "consent" | "select_account"))
        {
            return Err(fail("invalid_request", "prompt must be none, login, consent or select_account"));
        }
        let restrictions = Restrictions::from_params(
            map.get("provider_permissions").copied(),
            map.get("default_provider_permission").copied(),
            map.get("agent_ids").copied(),
            map.get("knowledge_base_ids").copied(),
        )
        .map_err(|m| fail("invalid_request", &m))?
        .within_client(client.allowed_providers.as_deref());
        Ok(AuthorizeRequest {
            state: map.get("state").map(|s| s.to_string()),
            nonce: map.get("nonce").map(|s| s.to_string()),
            prompt,
            restrictions,
            raw: params.iter().filter(|(k, _)| PARAMS.contains(&k.as_str())).cloned().collect(),
            client,
            redirect_uri,
            challenge,
            scopes,
            resource,
        })
    }

    /// The redirect URI to use, or a message for the person if there is none we may redirect to.
    async fn redirect_target(&self, map: &HashMap<&str, &str>) -> Result<String, String> {
        let Some(client_id) = map.get("client_id") else {
            return Err("The request has no client_id.".into());
        };
        let client = self.authorizing_client(client_id).await?;
        redirect_of(&client, map)
    }

    fn error_redirect(&self, redirect_uri: &str, map: &HashMap<&str, &str>, code: &str, desc: &str) -> AuthorizeError {
        let mut pairs: Vec<(&str, &str)> = vec![("error", code), ("error_description", desc)];
        if let Some(s) = map.get("state") {
            pairs.push(("state", s));
        }
        AuthorizeError::Redirect(self.response_url(redirect_uri, &pairs))
    }

    /// The redirect to the client, with `iss` (RFC 9207) on every authorization response.
    pub fn response_url(&self, redirect_uri: &str, pairs: &[(&str, &str)]) -> String {
        match Url::parse(redirect_uri) {
            Ok(mut url) => {
                {
                    let mut q = url.query_pairs_mut();
                    for (k, v) in pairs {
                        q.append_pair(k, v);
                    }
                    q.append_pair("iss", &self.issuer);
                }
                url.to_string()
            }
            Err(_) => redirect_uri.to_owned(),
        }
    }

    /// The error response for a person who denied access.
    pub fn denied_url(&self, req: &AuthorizeRequest) -> String {
        let mut pairs = vec![("error", "access_denied"), ("error_description", "the person denied the request")];
        if let Some(s) = &req.state {
            pairs.push(("state", s));
        }
        self.response_url(&req.redirect_uri, &pairs)
    }

    /// Issues a code for an approved request and returns the redirect URL carrying it. In bridge
    /// mode the company backend is asked first: a refusal is the `access_denied` redirect (and no
    /// code), a failure `temporarily_unavailable`.
    pub async fn issue_code(
        &self,
        req: &AuthorizeRequest,
        account: &AccountId,
        auth_time: UnixTime,
    ) -> Result<String, IssueError> {
        let held = match &self.bridge {
            Some(bridge) => {
                let reach = req.restrictions.reach(req.client.allowed_providers.as_deref());
                match bridge.at_consent(account, &reach).await {
                    Ok(held) => held,
                    Err(refusal) => return Err(self.bridge_refused(req, account, refusal)),
                }
            }
            None => Vec::new(),
        };
        let now = self.clock.now();
        let code = new_token(CODE_PREFIX);
        let hash = token_hash(code.expose());
        self.store
            .insert_code(&AuthorizationCode {
                hash: hash.clone(),
                client_id: req.client.id.clone(),
                account_id: account.clone(),
                redirect_uri: req.redirect_uri.clone(),
                challenge: req.challenge.clone(),
                scopes: req.scopes.clone(),
                restrictions: req.restrictions.clone(),
                resource: req.resource.clone(),
                nonce: req.nonce.clone(),
                auth_time,
                expires_at: now + self.lifetimes.code,
                session_id: None,
                used_at: None,
            })
            .await?;
        if let Some(bridge) = &self.bridge {
            // Until this is stored the code is never handed out (a failure leaves it unknown).
            bridge.hold(account, &hash, &held, now).await?;
        }
        self.emit(
            self.event("auth.code_issued", bk_domain::audit::Outcome::Success)
                .account(account)
                .client(&req.client.id)
                .detail("scope", req.scopes.to_string()),
        );
        let mut pairs = vec![("code", code.expose())];
        if let Some(s) = &req.state {
            pairs.push(("state", s));
        }
        Ok(self.response_url(&req.redirect_uri, &pairs))
    }
}

/// Why no code was issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Store(#[from] bk_domain::ports::StoreError),
    /// Bridge mode: the redirect to the client carrying `access_denied` or
    /// `temporarily_unavailable` (RFC 6749 §4.1.2.1).
    #[error("the sign-in was not let through")]
    Bridge(String),
}

impl AuthServer {
    /// The error redirect for a sign-in bridge mode did not let through, recorded.
    fn bridge_refused(
        &self,
        req: &AuthorizeRequest,
        account: &AccountId,
        refusal: bk_domain::bridge::BridgeRefusal,
    ) -> IssueError {
        use bk_domain::bridge::BridgeRefusal;
        let (code, description, provider) = match &refusal {
            BridgeRefusal::Denied { provider, .. } => {
                ("access_denied", format!("{provider} does not grant this account access"), provider.clone())
            }
            BridgeRefusal::Unavailable { provider, .. } => (
                "temporarily_unavailable",
                format!("{provider} could not verify the account now; try again later"),
                provider.clone(),
            ),
            BridgeRefusal::Store(e) => {
                tracing::error!(error = %e, "bridge mode: storing or reading failed");
                ("server_error", "the server could not complete the request".to_owned(), String::new())
            }
        };
        tracing::info!(account = %account, client = %req.client.id, reason = %refusal, "bridge mode: no code issued");
        self.emit(
            self.event("auth.bridge_refused", bk_domain::audit::Outcome::Denied)
                .account(account)
                .client(&req.client.id)
                .detail("provider", provider)
                .detail("error", code),
        );
        let mut pairs = vec![("error", code), ("error_description", description.as_str())];
        if let Some(s) = &req.state {
            pairs.push(("state", s));
        }
        IssueError::Bridge(self.response_url(&req.redirect_uri, &pairs))
    }
}
