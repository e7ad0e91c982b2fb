//! Who is calling a REST endpoint: an operator token, a person through an access token or PAT
//! (verified by the access crate, with its scopes and restrictions), or a person signed in to
//! these pages in this browser.

use axum::http::{HeaderMap, StatusCode, header};
use bk_access::browser::BrowserSession;
use bk_access::operator::{is_operator_token, verify_operator_token};
use bk_access::{AccessContext, VerifyError, bearer_token};
use bk_domain::grant::GrantKind;
use bk_domain::ids::AccountId;
use bk_domain::restrictions::{ProviderReach, Restrictions};
use bk_domain::scope::{Scope, ScopeSet};

use crate::Api;
use crate::problem::Problem;

/// Who is calling a REST endpoint.
#[derive(Clone, Debug)]
pub enum Caller {
    /// An operator API token: may manage every client.
    Operator { token_id: String },
    /// A person, through an access token or PAT (with its scopes and restrictions) …
    Token(AccessContext),
    /// … or signed in to these pages in this browser (acts with every scope, unrestricted).
    Browser { account_id: AccountId, email: String },
}

impl Caller {
    /// The providers this caller may reach: a token's grant and client decide; a person in the
    /// browser and an operator reach every provider.
    pub fn reach(&self) -> ProviderReach {
        match self {
            Caller::Token(c) => c.restrictions.reach(c.client_providers.as_deref()),
            Caller::Operator { .. } | Caller::Browser { .. } => ProviderReach::default(),
        }
    }

    /// The account acting, if a person is calling.
    pub fn account(&self) -> Option<&AccountId> {
        match self {
            Caller::Operator { .. } => None,
            Caller::Token(c) => Some(&c.account_id),
            Caller::Browser { account_id, .. } => Some(account_id),
        }
    }

    /// Requires a person with `scope` (a browser session has every scope).
    pub fn person_with(&self, scope: Scope) -> Result<(&AccountId, &str), Problem> {
        match self {
            Caller::Operator { .. } => {
                Err(Problem::forbidden("this endpoint acts for an account; an operator token has none"))
            }
            Caller::Token(c) if !c.scopes.contains(scope) => Err(Problem::insufficient_scope(scope)),
            Caller::Token(c) => Ok((&c.account_id, &c.email)),
            Caller::Browser { account_id, email } => Ok((account_id, email)),
        }
    }

    /// The most a PAT created by this caller may carry.
    pub fn ceiling(&self) -> (ScopeSet, Restrictions) {
        match self {
            Caller::Token(c) => (c.scopes.clone(), c.restrictions.clone()),
            _ => (ScopeSet::all(), Restrictions::unrestricted()),
        }
    }

    /// Stamps an audit event with who acted.
    pub fn stamp(&self, e: bk_domain::audit::AuditEvent) -> bk_domain::audit::AuditEvent {
        match self {
            Caller::Operator { token_id } => e.operator(token_id),
            Caller::Token(c) => e.account(&c.account_id).client(&c.client_id).session(&c.session_id),
            Caller::Browser { account_id, .. } => e.account(account_id).detail("via", "browser"),
        }
    }

    pub fn is_pat(&self) -> bool {
        matches!(self, Caller::Token(c) if c.kind == GrantKind::PersonalAccessToken)
    }
}

tokio::task_local! {
    /// The method and path of the REST request being served: a DPoP proof must name them.
    static TARGET: (axum::http::Method, String);
}

/// Middleware of the REST router: keeps the request's method and path for [`caller`].
pub(crate) async fn with_target(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let target = (req.method().clone(), req.uri().path().to_owned());
    TARGET.scope(target, next.run(req)).await
}

/// Identifies the caller: a bearer credential if one is sent, else the browser session cookie.
/// Cookie-authenticated writes must come from our own origin (a cross-site page cannot send JSON
/// with cookies without a CORS preflight we never grant, and `Origin`, when sent, must be ours).
pub async fn caller(server: &Api, headers: &HeaderMap, writes: bool) -> Result<Caller, Problem> {
    if let Some(token) = bearer_token(headers) {
        if is_operator_token(token) {
            return match verify_operator_token(server.store.as_ref(), token).await? {
                Some(token_id) => Ok(Caller::Operator { token_id }),
                None => Err(Problem::unauthorized("the operator token is unknown or revoked")),
            };
        }
        return token_caller(server, headers).await;
    }
    if bk_access::bearer::dpop_token(headers).is_some() {
        return token_caller(server, headers).await;
    }
    let now_ms = server.clock.now_ms();
    if let Some(cookie) = BrowserSession::read(headers, &server.cookie_keys, now_ms.div_euclid(1000))
        && cookie.account.is_some()
    {
        if writes
            && let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
            && origin.trim_end_matches('/') != server.issuer_origin()
        {
            return Err(Problem::forbidden("cross-origin request refused"));
        }
        // The cookie's signature proves we issued it; only the server-side session says it is still signed in.
        let s = server.browser_sessions.check(cookie, now_ms).await.map_err(|e| {
            tracing::error!(error = %e, "browser session lookup failed");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "the server could not check the session; retry",
            )
        })?;
        let Some((account_id, _)) = s.account else {
            return Err(Problem::unauthorized("this browser session has ended; sign in again"));
        };
        // A disabled account's sessions are ended when it is disabled; this also covers one that
        // slipped in while the disable committed.
        if let Some(a) = server.store.account(&account_id).await?.filter(|a| !a.is_disabled()) {
            return Ok(Caller::Browser { account_id: a.id, email: a.email });
        }
    }
    Err(Problem::unauthorized("a bearer token (or a signed-in browser session) is required"))
}

/// An access token or PAT sent as `Bearer`, or a DPoP-bound access token sent as `DPoP` with its
/// proof for this request (RFC 9449; `htu` is the issuer's URL of the path).
async fn token_caller(server: &Api, headers: &HeaderMap) -> Result<Caller, Problem> {
    let issuer = server.issuer.as_str();
    let mcp = server.mcp_resource();
    let (method, path) = TARGET.try_with(|t| t.clone()).unwrap_or((axum::http::Method::GET, String::new()));
    let url = format!("{issuer}{path}");
    match server.verifier.verify_request(headers, method.as_str(), &url, &[issuer, &mcp]).await {
        Ok(Some(ctx)) => Ok(Caller::Token(ctx)),
        Ok(None) => Err(Problem::unauthorized("a bearer token (or a signed-in browser session) is required")),
        Err(VerifyError::Unavailable) => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "the server could not check the token; retry",
        )),
        Err(e) => {
            let mut p = Problem::unauthorized(e.to_string());
            if let Some(c) = bk_access::dpop::challenge(headers, &e, None) {
                p.headers.retain(|(h, _)| h != header::WWW_AUTHENTICATE);
                p.headers.push((header::WWW_AUTHENTICATE, c.header));
                if c.with_nonce
                    && let Some(n) = server
                        .verifier
                        .dpop
                        .nonce(server.clock.now())
                        .and_then(|n| axum::http::HeaderValue::from_str(&n).ok())
                {
                    p.headers.push((header::HeaderName::from_static("dpop-nonce"), n));
                }
            }
            Err(p)
        }
    }
}
