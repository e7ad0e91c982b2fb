//! `POST /api/v1/auth/handoff/init`: the white-label handoff. A white-label client's backend,
//! holding its customer's access token, asks for a one-time code that opens this server's
//! connection-management page (`/connections`, intent `connections`) or its account dashboard
//! (`/account` without its security page, intent `account`, which needs the scope `account`) in the
//! client's branding, signed in as that customer with no second sign-in.
//!
//! The request carries the customer's access token as `Authorization: Bearer …` (issued to this
//! very client, with the scope `connections`) and the client's own credentials in the JSON body
//! (`clientId`, `clientSecret`: the token endpoint's secret check, failure limits and audit). The
//! code lives 30 seconds, is stored only as its SHA-256, is used once, and is bound to the client,
//! the account and `redirectUri` — one of the client's redirect URIs or an https URL on its
//! domains, never anywhere else (the page's "back to the app" link). Redeeming it is the web
//! crate's (`GET /connections/handoff?code=…`), through [`redeem`].

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bk_access::bearer_token;
use bk_access::browser::{BrowserSession, CookieKeys};
use bk_crypto::secret::{b64url, b64url_decode, new_token, token_hash};
use bk_domain::UnixTime;
use bk_domain::account::Account;
use bk_domain::audit::Outcome;
use bk_domain::client::{Client, ClientRole, ClientType};
use bk_domain::connection::return_url_allowed;
use bk_domain::handoff::{HANDOFF_TTL_SECS, HandoffCode, HandoffIntent};
use bk_domain::ids::{AccountId, ClientId};
use bk_domain::scope::Scope;
use serde::{Deserialize, Serialize};
use url::Url;
use utoipa::ToSchema;

use crate::Api;
use crate::caller::{Caller, caller};
use crate::openapi::HandoffIntentName;
use crate::problem::{Body, Problem, json_body};

/// Authenticates a client by id and secret (implemented by the authorization server, whose secret
/// check, failure limits and audit the token endpoint uses too).
pub trait ClientAuthenticator: Send + Sync {
    fn authenticate<'a>(
        &'a self,
        client_id: &'a str,
        secret: &'a str,
        source: IpAddr,
    ) -> Pin<Box<dyn Future<Output = Result<Client, Problem>> + Send + 'a>>;
}

/// The handed-off sign-in's cookie: sent only to the connections page and the connect callback,
/// never read by the rest of the site or the REST API.
pub const HANDOFF_COOKIE: &str = "bk_handoff";
/// Where oauth2 providers send the browser back (the handed-off sign-in finishes its connects there).
pub const CALLBACK_PATH: &str = "/api/v1/connections/callback";

/// A handed-off sign-in as its cookie carries it (signed; the session itself is checked server-side).
pub struct HandoffCookie {
    pub session: BrowserSession,
    pub client_id: ClientId,
    /// The app's page the "back" link leads to.
    pub back: String,
}

impl HandoffCookie {
    /// The `Set-Cookie` value for one path (the page, or the connect callback).
    pub fn encode(&self, keys: &CookieKeys, path: &str, max_age: i64) -> HeaderValue {
        let (account, at) = match &self.session.account {
            Some((a, t)) => (a.as_str().to_owned(), *t),
            None => (String::new(), 0),
        };
        let payload = b64url(
            format!(
                "h1|{}|{}|{}|{}|{}|{}",
                self.session.sid, account, at, self.session.expires_at, self.client_id, self.back
            )
            .as_bytes(),
        );
        let tag = b64url(&keys.cookie.sign(format!("handoff.{payload}").as_bytes()));
        let secure = if keys.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{HANDOFF_COOKIE}={payload}.{tag}; Path={path}; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("bk_handoff=; Path=/connections; Max-Age=0"))
    }

    pub fn read(headers: &HeaderMap, keys: &CookieKeys, now: UnixTime) -> Option<Self> {
        let value = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(';'))
            .filter_map(|part| part.trim().split_once('='))
            .find(|(name, _)| *name == HANDOFF_COOKIE)
            .map(|(_, v)| v)?;
        let (payload, tag) = value.split_once('.')?;
        if !keys.cookie.verify(format!("handoff.{payload}").as_bytes(), &b64url_decode(tag)?) {
            return None;
        }
        let raw = String::from_utf8(b64url_decode(payload)?).ok()?;
        let mut it = raw.splitn(7, '|');
        let (ver, sid, account, at, exp, client, back) =
            (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
        let expires_at: UnixTime = exp.parse().ok()?;
        if ver != "h1" || account.is_empty() || expires_at <= now {
            return None;
        }
        Some(Self {
            session: BrowserSession {
                sid: sid.to_owned(),
                account: Some((AccountId::from_string(account), at.parse().ok()?)),
                expires_at,
            },
            client_id: ClientId::from_string(client),
            back: back.to_owned(),
        })
    }
}

/// The account a handed-off browser is signed in as, checked server-side like any browser session
/// (for the connect callback: a customer handed off to the page connects without signing in here).
pub async fn handed_off_account(server: &Api, headers: &HeaderMap) -> Option<AccountId> {
    let now_ms = server.clock.now_ms();
    let cookie = HandoffCookie::read(headers, &server.cookie_keys, now_ms.div_euclid(1000))?;
    match server.browser_sessions.check(cookie.session, now_ms).await {
        Ok(s) => s.account.map(|(a, _)| a),
        Err(e) => {
            tracing::error!(error = %e, "browser session lookup failed");
            None
        }
    }
}

const MAX_CLIENT_ID_BYTES: usize = 512;
const MAX_SECRET_BYTES: usize = 512;
const MAX_REDIRECT_URI_BYTES: usize = 2048;
/// Where a handoff code is redeemed.
pub const REDEEM_PATH: &str = "/connections/handoff";

/// The white-label client's own credentials and where its customer goes back to.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Init {
    /// The white-label client's id (1 to 512 characters).
    client_id: String,
    /// Its secret, checked as the token endpoint checks it (failures count towards its lockout).
    #[schema(format = Password)]
    client_secret: String,
    /// Where the page's "back" link leads: one of the client's redirect URIs or an https URL on its domains.
    redirect_uri: String,
    /// Parsed into `HandoffIntent` at once, so that an unknown one is refused naming the field.
    #[schema(value_type = HandoffIntentName)]
    intent: String,
}

/// A handoff code: open `url` in the customer's browser within `expiresIn` seconds, once.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HandoffCodeView {
    /// `bkh_…`, single use.
    pub code: String,
    /// This server's page that redeems the code.
    pub url: String,
    /// Seconds.
    pub expires_in: i64,
    #[schema(value_type = HandoffIntentName)]
    pub intent: &'static str,
}

/// Hands a white-label client's customer off to this server's pages.
#[utoipa::path(
    post,
    path = "/api/v1/auth/handoff/init",
    operation_id = "initHandoff",
    tag = "handoff",
    description = "A confidential white-label client's backend, holding its customer's access token (issued to \
        this very client; scope `connections` for the connections page, `account` for the dashboard), asks for a \
        one-time code that opens this server's page signed in as that customer. The client authenticates with its \
        id and secret in the body; a wrong secret counts towards its lockout (429 with `Retry-After`).",
    request_body = Init,
    security(("bearer" = ["connections"]), ("bearer" = ["account"])),
    responses(
        (status = 200, description = "A one-time code and the URL that redeems it", body = HandoffCodeView),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 413, response = crate::problem::PayloadTooLarge),
        (status = 415, response = crate::problem::UnsupportedMediaType),
        (status = 429, response = crate::problem::TooManyRequests),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn init(
    State(server): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, Problem> {
    let req: Init = json_body(&headers, &body)?;
    let intent = HandoffIntent::parse(&req.intent).ok_or_else(|| {
        Problem::invalid(
            "intent",
            "intent must be \"connections\" (the connections page) or \"account\" (the dashboard)",
        )
    })?;
    if req.client_id.is_empty() || req.client_id.len() > MAX_CLIENT_ID_BYTES {
        return Err(Problem::invalid("clientId", "clientId must be 1 to 512 characters"));
    }
    if req.client_secret.len() > MAX_SECRET_BYTES {
        return Err(Problem::unauthorized("client authentication failed"));
    }
    // The client first: a wrong secret is refused whatever the token says.
    let client = server.client_auth.authenticate(&req.client_id, &req.client_secret, peer.ip()).await?;
    if client.role != ClientRole::WhitelabelCustomer || client.client_type != ClientType::Confidential {
        return Err(Problem::forbidden(
            "only a confidential white-label (WHITELABEL_CUSTOMER) client may hand a customer off to its pages",
        ));
    }
    if bearer_token(&headers).is_none() {
        return Err(Problem::unauthorized("the customer's access token is required as Authorization: Bearer"));
    }
    let who = caller(&server, &headers, true).await?;
    let ctx = match &who {
        Caller::Token(ctx) if !who.is_pat() => ctx,
        _ => {
            return Err(Problem::forbidden(
                "the bearer token must be an access token this client obtained for its customer",
            ));
        }
    };
    if ctx.client_id != client.id {
        return Err(Problem::forbidden("the access token was issued to another client"));
    }
    // The dashboard manages apps and tokens: it takes a token carrying `account` (the connections
    // page, `connections`).
    let needed = match intent {
        HandoffIntent::Connections => Scope::Connections,
        HandoffIntent::Account => Scope::Account,
    };
    let (account_id, _) = who.person_with(needed)?;
    let refuse = || {
        Problem::invalid(
            "redirectUri",
            "redirectUri must be one of the client's redirect URIs or an https URL on its domains",
        )
    };
    if req.redirect_uri.len() > MAX_REDIRECT_URI_BYTES {
        return Err(refuse());
    }
    let back = Url::parse(&req.redirect_uri).map_err(|_| refuse())?;
    // No issuer origin here: the "back" link leads to the client's app, never to an arbitrary page.
    if !return_url_allowed(&back, &client.redirect_uris, &client.domains, "") {
        return Err(refuse());
    }
    let code = new_token("bkh_");
    let now = server.clock.now();
    let stored = HandoffCode {
        code_hash: token_hash(code.expose()),
        account_id: account_id.clone(),
        client_id: client.id.clone(),
        intent,
        redirect_uri: back.to_string(),
        created_at: now,
        expires_at: now + HANDOFF_TTL_SECS,
    };
    server.store.insert_handoff_code(account_id, &stored).await?;
    server.emit(
        who.stamp(server.event("handoff.issued", Outcome::Success))
            .detail("intent", intent.as_str())
            .detail("redirect_uri", back.to_string()),
    );
    let mut url = Url::parse(&format!("{}{REDEEM_PATH}", server.issuer)).map_err(|_| Problem::server_error())?;
    url.query_pairs_mut().append_pair("code", code.expose());
    let mut res = Json(HandoffCodeView {
        code: code.expose().to_owned(),
        url: url.to_string(),
        expires_in: HANDOFF_TTL_SECS,
        intent: intent.as_str(),
    })
    .into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// A redeemed handoff: who is signed in, for which client, and where "back" leads.
pub struct Handoff {
    pub account: Account,
    pub client: Client,
    pub redirect_uri: String,
    pub intent: HandoffIntent,
}

/// Why a handoff code did not open the page (shown to the person in words).
#[derive(Debug, PartialEq, Eq)]
pub enum RedeemError {
    /// Unknown, already used, or expired: the app must ask for a new one.
    Invalid,
    Unavailable,
}

/// Takes a handoff code — once, on every instance — if it is current and its client is still a
/// white-label client and its account still exists.
pub async fn redeem(server: &Api, code: &str) -> Result<Handoff, RedeemError> {
    if code.is_empty() || code.len() > 256 {
        return Err(RedeemError::Invalid);
    }
    let now = server.clock.now();
    let unavailable = |e: bk_domain::ports::StoreError| {
        tracing::error!(error = %e, "redeeming a handoff code failed");
        RedeemError::Unavailable
    };
    let taken = server.store.take_handoff_code(&token_hash(code), now).await.map_err(unavailable)?;
    let Some(taken) = taken else {
        server.emit(server.event("handoff.redeemed", Outcome::Failure).detail("reason", "unknown_or_used"));
        return Err(RedeemError::Invalid);
    };
    let fail = |reason: &'static str| {
        server.emit(
            server
                .event("handoff.redeemed", Outcome::Failure)
                .account(&taken.account_id)
                .client(&taken.client_id)
                .detail("reason", reason),
        );
        RedeemError::Invalid
    };
    if !taken.is_current(now) {
        return Err(fail("expired"));
    }
    let client = server.store.client(&taken.client_id).await.map_err(unavailable)?;
    let Some(client) = client.filter(|c| c.role == ClientRole::WhitelabelCustomer) else {
        return Err(fail("client_gone"));
    };
    let Some(account) = server.store.account(&taken.account_id).await.map_err(unavailable)? else {
        return Err(fail("account_gone"));
    };
    server.emit(
        server
            .event("handoff.redeemed", Outcome::Success)
            .account(&account.id)
            .client(&client.id)
            .detail("intent", taken.intent.as_str()),
    );
    Ok(Handoff { account, client, redirect_uri: taken.redirect_uri, intent: taken.intent })
}

#[cfg(test)]
mod tests {
    use axum::http::header;

    use super::*;

    #[test]
    fn handoff_cookie_round_trips_and_is_signed() {
        let keys = CookieKeys::derive(&[3u8; 32], false);
        let c = HandoffCookie {
            session: BrowserSession {
                sid: "sid1".into(),
                account: Some((AccountId::from_string("acc_1"), 100)),
                expires_at: 5000,
            },
            client_id: ClientId::from_string("cli_1"),
            back: "https://app.example/settings?a=1|2".into(),
        };
        let set = c.encode(&keys, "/connections", 3600);
        let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
        assert!(set.to_str().unwrap().contains("Path=/connections; HttpOnly; SameSite=Lax"));
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&format!("other=1; {pair}")).unwrap());
        let read = HandoffCookie::read(&headers, &keys, 200).expect("reads back");
        assert_eq!(read.session.sid, "sid1");
        assert_eq!(read.client_id.as_str(), "cli_1");
        assert_eq!(read.back, "https://app.example/settings?a=1|2");
        assert!(HandoffCookie::read(&headers, &keys, 5000).is_none(), "expired");
        let other = CookieKeys::derive(&[4u8; 32], false);
        assert!(HandoffCookie::read(&headers, &other, 200).is_none(), "signed with another key");
        // A site session cookie's value is no handoff cookie.
        let site = BrowserSession::signed_in(AccountId::from_string("acc_1"), 100).set_cookie(&keys);
        let site_value = site.to_str().unwrap().split(';').next().unwrap().split_once('=').unwrap().1.to_owned();
        headers.insert(header::COOKIE, HeaderValue::from_str(&format!("bk_handoff={site_value}")).unwrap());
        assert!(HandoffCookie::read(&headers, &keys, 200).is_none());
    }
}
