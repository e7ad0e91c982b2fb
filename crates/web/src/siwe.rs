//! Sign-In with Ethereum (EIP-4361): `GET /api/v1/auth/nonce` hands out a nonce (128 random bits,
//! 32 hexadecimal characters, kept server-side by digest, single use, `siwe.nonce_ttl_secs`, limited
//! per source address); `POST /api/v1/auth/authenticate {message, signature}` checks the signed
//! message (`bk_domain::siwe`: this server's domain and origin, version 1, an allowed chain, its
//! times, an EIP-55 address, an EIP-191 signature by that address), spends its nonce in the same
//! transaction as what it does, and then:
//!
//! - signed out, address known: signs its account in (the password sign-in's session cookie and
//!   second-factor rule; a disabled account is refused);
//! - signed out, address unknown: creates an account for it (no password, no email address yet:
//!   `bk_domain::wallet`) and signs it in;
//! - signed in: links the address to the signed-in account (409 if another account holds it; never
//!   a sign-in to that other account) and mails a security notice.
//!
//! The answer sets a session cookie, so the request must come from this site: its `Origin` must be
//! the issuer's origin and its body `application/json` (which no cross-site form can send); a
//! signed-in browser must also send its page's CSRF token in `X-CSRF-Token`, as the passkey
//! ceremonies do, before an address is added to its account. Refusals are problem JSON with a
//! stable `code`, change nothing, count as failed sign-ins from their source, and are audited —
//! never with the signature. Contract wallets (EIP-1271) are not supported.
//!
//! Also here: the account's wallets page (`/account/security/wallets`: its addresses, each
//! removable unless it is the last way to sign in), and `/static/siwe.js`, the script of the login
//! page's "Sign in with Ethereum" and the wallets page's "Link an Ethereum wallet" buttons
//! (EIP-1193 `eth_requestAccounts`, `personal_sign`; shown only when a wallet is present).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bk_access::browser::BrowserSession;
use bk_crypto::secret::{hex, random_bytes, sha256};
use bk_domain::UnixTime;
use bk_domain::account::Account;
use bk_domain::audit::Outcome;
use bk_domain::ids::AccountId;
use bk_domain::ports::wallets::WalletStore;
use bk_domain::siwe::{Address, Audience, PersonalSignature, SiweError, SiweMessage};
use bk_domain::wallet::{
    StoredSiweNonce, WalletAction, WalletRedemption, WalletUnlink, is_placeholder_email, new_wallet_account,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{OpenApi, ToSchema};

use crate::pages::{session_of, signed_in};
use crate::sign_in_limits::source_key;
use crate::{WebState, safe_next, see_other};

pub(crate) const NONCE_PATH: &str = "/api/v1/auth/nonce";
pub(crate) const AUTHENTICATE_PATH: &str = "/api/v1/auth/authenticate";
pub(crate) const PAGE: &str = "/account/security/wallets";
pub(crate) const UNLINK_PATH: &str = "/account/security/wallets/{address}/unlink";
pub(crate) const SCRIPT_PATH: &str = "/static/siwe.js";
/// The limiter bucket of nonces handed out per source address.
const NONCES_BUCKET: &str = "siwe_nonces";
/// The longest signature text read (130 digits and `0x`; more is refused before parsing).
const MAX_SIGNATURE_CHARS: usize = 200;
/// The largest body `POST /api/v1/auth/authenticate` reads: a sign-in message is a few hundred
/// bytes (resources and a statement included, a few KiB).
pub(crate) const AUTHENTICATE_BODY_LIMIT: usize = 16 * 1024;

/// Sign-In with Ethereum's settings (`siwe.*`).
#[derive(Clone, Debug)]
pub struct SiweSettings {
    /// Off: both endpoints answer 404; linked addresses stay listed (and removable) but sign nobody in.
    pub enabled: bool,
    /// The EIP-155 chain ids a message may name.
    pub chain_ids: Vec<u64>,
    /// How long a nonce may wait for its message.
    pub nonce_ttl_secs: i64,
    /// Nonces handed out per source address (IPv6: per /64) per minute.
    pub nonces_per_minute: u32,
    /// Whether an unknown address signed out creates an account (otherwise 403).
    pub create_accounts: bool,
}

impl Default for SiweSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            chain_ids: vec![1],
            nonce_ttl_secs: bk_domain::siwe::DEFAULT_NONCE_TTL_SECS,
            nonces_per_minute: 30,
            create_accounts: true,
        }
    }
}

/// What the Sign-In with Ethereum routes need.
pub struct Siwe {
    pub(crate) wallets: Arc<dyn WalletStore>,
    pub(crate) settings: SiweSettings,
    pub(crate) audience: Audience,
}

impl WebState {
    /// Turns Sign-In with Ethereum on (as `settings` say), with the wallet identities in `wallets`.
    /// An issuer that is not an http(s) URL with a host leaves it off (said in the log).
    pub fn with_siwe(mut self, wallets: Arc<dyn WalletStore>, settings: SiweSettings) -> Self {
        let Some(audience) = Audience::of_issuer(&self.auth.issuer) else {
            tracing::warn!(issuer = %self.auth.issuer, "Sign-In with Ethereum is off: the issuer has no host");
            return self;
        };
        // The login and security pages show their buttons only when it is on.
        self.templates.add_global("siwe", settings.enabled);
        // A syntax error is a build defect every test meets (as for the other templates).
        self.templates
            .add_template("wallets.html", include_str!("templates/wallets.html"))
            .unwrap_or_else(|e| panic!("template wallets.html: {e}"));
        self.siwe = Some(Arc::new(Siwe { wallets, settings, audience }));
        self
    }
}

/// The Sign-In with Ethereum state, when it is on.
fn enabled(state: &WebState) -> Option<Arc<Siwe>> {
    state.siwe.clone().filter(|s| s.settings.enabled)
}

/// The OpenAPI operations of Sign-In with Ethereum, merged into the REST face's document
/// (`bk_api::router_documenting`): these routes are served here, by the web face, because their
/// answer signs a browser in.
#[derive(OpenApi)]
#[openapi(
    paths(nonce, authenticate),
    tags((name = "siwe", description = "Sign-In with Ethereum (EIP-4361): a wallet signs in, signs up or links its address"))
)]
pub struct SiweDoc;

/// The body of every refusal of Sign-In with Ethereum (RFC 9457 problem details).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"type": "about:blank", "title": "Unauthorized", "status": 401,
    "detail": "the nonce is unknown or was used already: ask for a new one and sign again", "code": "nonce_unknown"}))]
pub struct SiweProblem {
    /// Always `about:blank`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// The HTTP status phrase.
    title: &'static str,
    /// The HTTP status code, repeated.
    status: u16,
    /// What went wrong, in words fit to show a person (never the signature).
    detail: String,
    /// What went wrong, stable for a program to act on (`nonce_unknown`, `domain_mismatch`,
    /// `origin_missing`, `address_linked_elsewhere`, `too_many_requests`, …).
    code: String,
}

/// An RFC 9457 problem with a stable `code` (an extension member) the caller can act on.
fn problem(status: StatusCode, code: &str, detail: &str) -> Response {
    let body = SiweProblem {
        kind: "about:blank",
        title: status.canonical_reason().unwrap_or("Error"),
        status: status.as_u16(),
        detail: detail.to_owned(),
        code: code.to_owned(),
    };
    let mut res = (status, axum::Json(body)).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn with_retry_after(mut res: Response, secs: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

fn unavailable(what: &str, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "{what} failed");
    problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the server could not do this right now; try again")
}

fn disabled() -> Response {
    problem(StatusCode::NOT_FOUND, "siwe_disabled", "Sign-In with Ethereum is not enabled on this server")
}

/// What `GET /api/v1/auth/nonce` answers: a nonce and what the message to sign must name.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"nonce": "3f2a9c0d7e1b4a5f8c6d2e0b9a7f1c3e", "expiresAt": 1767225900,
    "domain": "auth.example.com", "uri": "https://auth.example.com", "chainIds": [1],
    "address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"}))]
pub struct SiweNonce {
    /// 128 random bits as 32 hexadecimal characters; single use.
    nonce: String,
    /// When the nonce stops being accepted (Unix seconds).
    expires_at: i64,
    /// The `domain` the message must name (this server's host and port).
    domain: String,
    /// The origin the message's `URI` must have (this server's issuer).
    uri: String,
    /// The EIP-155 chain ids a message may name.
    chain_ids: Vec<u64>,
    /// The `address` asked about, in its EIP-55 checksummed form (only when one was given).
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
}

/// `GET /api/v1/auth/nonce[?address=0x…]`: a fresh nonce, with what a message must name (domain,
/// URI origin, accepted chains) and, when asked, an address in its EIP-55 form (a page's script
/// has no Keccak-256 of its own).
#[utoipa::path(
    get,
    path = "/api/v1/auth/nonce",
    operation_id = "getSiweNonce",
    tag = "siwe",
    description = "A fresh single-use nonce for a Sign-In with Ethereum (EIP-4361) message, with what the message \
        must name: this server's domain, the origin of its URI and the chain ids it accepts. Given `address`, also \
        that address in its EIP-55 checksummed form (which the message must use). No credential needed; limited \
        per source network (`siwe.nonces_per_minute`). 404 when Sign-In with Ethereum is off.",
    params(("address" = Option<String>, Query, description = "An Ethereum address (`0x` and 40 hexadecimal digits, \
        any case), answered in its checksummed form", pattern = "^0x[0-9a-fA-F]{40}$")),
    responses(
        (status = 200, description = "A fresh nonce", body = SiweNonce),
        (status = 400, description = "`address` is not an Ethereum address (`invalid_address`)",
            content_type = "application/problem+json", body = SiweProblem),
        (status = 404, description = "Sign-In with Ethereum is off on this server (`siwe_disabled`)",
            content_type = "application/problem+json", body = SiweProblem),
        (status = 429, description = "Too many nonces from this network (`too_many_requests`)",
            content_type = "application/problem+json", body = SiweProblem,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The server could not store the nonce just now (`unavailable`)",
            content_type = "application/problem+json", body = SiweProblem),
    )
)]
pub async fn nonce(
    State(state): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(siwe) = enabled(&state) else { return disabled() };
    let source = source_key(peer.ip());
    let per_minute = siwe.settings.nonces_per_minute;
    if let Err(wait) = state.auth.limiter.acquire(NONCES_BUCKET, &source, per_minute, 60).await {
        state
            .auth
            .emit(state.auth.event("ratelimit.refused", Outcome::Denied).ip(peer.ip()).detail("limit", NONCES_BUCKET));
        let detail = format!("too many nonces from this network: {per_minute} a minute; try again in {wait} s");
        return with_retry_after(problem(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", &detail), wait);
    }
    let pairs: Vec<(String, String)> = crate::pages::form_pairs(query.unwrap_or_default().as_bytes());
    let address = match crate::pages::field(&pairs, "address") {
        None => None,
        Some(a) => match Address::parse_any_case(a) {
            Some(a) => Some(a.checksummed()),
            None => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "invalid_address",
                    "address must be 0x and 40 hexadecimal digits",
                );
            }
        },
    };
    let now = state.auth.clock.now();
    // 128 random bits as 32 hexadecimal characters: alphanumeric, as EIP-4361 requires.
    let nonce = hex(&random_bytes::<16>());
    let stored = StoredSiweNonce {
        nonce_hash: sha256(nonce.as_bytes()).to_vec(),
        created_at: now,
        expires_at: now + siwe.settings.nonce_ttl_secs,
    };
    if let Err(e) = siwe.wallets.create_siwe_nonce(&stored).await {
        return unavailable("storing a sign-in nonce", &e);
    }
    let body = SiweNonce {
        nonce,
        expires_at: stored.expires_at,
        domain: siwe.audience.domain(),
        uri: state.auth.issuer.clone(),
        chain_ids: siwe.settings.chain_ids.clone(),
        address,
    };
    ([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], axum::Json(body)).into_response()
}

/// The body of `POST /api/v1/auth/authenticate`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"message": "auth.example.com wants you to sign in with your Ethereum account:\n\
    0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed\n\nSign in to auth.example.com.\n\nURI: https://auth.example.com\n\
    Version: 1\nChain ID: 1\nNonce: 3f2a9c0d7e1b4a5f8c6d2e0b9a7f1c3e\nIssued At: 2026-01-01T00:00:00Z",
    "signature": "0x…", "next": "/"}))]
pub struct AuthenticateBody {
    /// The EIP-4361 message, exactly as signed.
    message: String,
    /// Its EIP-191 (`personal_sign`) signature by the message's address: `0x` and 130 hexadecimal digits.
    signature: String,
    /// Where the page goes once signed in (a path of this site).
    #[serde(default)]
    next: Option<String>,
}

/// A refusal: its status, code and sentence (all the caller gets).
struct Refusal {
    status: StatusCode,
    code: &'static str,
    detail: String,
    /// Audited as denied by policy (rather than failed).
    denied: bool,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self { status, code, detail: detail.into(), denied: false }
    }
    fn denied(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self { status, code, detail: detail.into(), denied: true }
    }
}

impl From<SiweError> for Refusal {
    fn from(e: SiweError) -> Self {
        // What the message or signature says is bad input (400); a message that is not valid now, or
        // not signed by its address, does not authenticate (401).
        let status = if e.is_about_time() || e == SiweError::SignerMismatch {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        Refusal::new(status, e.code(), e.to_string())
    }
}

/// What the request knew when it was refused, for its audit row.
#[derive(Default)]
struct Known {
    address: Option<Address>,
    account: Option<AccountId>,
    linking: bool,
}

/// The request's context while it is served.
struct Attempt<'a> {
    state: &'a WebState,
    siwe: &'a Siwe,
    peer: SocketAddr,
    source: String,
    known: Known,
}

impl Attempt<'_> {
    /// Audits the refusal, counts it against the source's failed sign-ins, and answers it.
    async fn refuse(&self, r: Refusal) -> Response {
        let limits = self.state.sign_in_limits;
        limits.record_failure(self.state.auth.limiter.as_ref(), None, &self.source).await;
        let outcome = if r.denied { Outcome::Denied } else { Outcome::Failure };
        let mut event = self
            .state
            .auth
            .event("auth.signin", outcome)
            .ip(self.peer.ip())
            .detail("method", "siwe")
            .detail("reason", r.code);
        if let Some(a) = &self.known.address {
            event = event.detail("address", a.checksummed());
        }
        if let Some(a) = &self.known.account {
            event = event.account(a);
        }
        if self.known.linking {
            event = event.detail("link", true);
        }
        self.state.auth.emit(event);
        tracing::info!(reason = r.code, "a Sign-In with Ethereum was refused");
        problem(r.status, r.code, &r.detail)
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// What `POST /api/v1/auth/authenticate` answers when it signed in, signed up or linked.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SiweAuthenticated {
    /// The account signed in (or the signed-in account the address was linked to).
    account_id: String,
    /// The address, EIP-55 checksummed.
    address: String,
    /// Whether the account was created by this sign-in.
    created: bool,
    /// Whether the address was linked to the signed-in account by this request.
    linked: bool,
    /// Where the page goes next (this site's path; the second-factor page when one is due).
    redirect: String,
    /// Signed out only: whether a second factor is still due before the browser is signed in.
    #[serde(skip_serializing_if = "Option::is_none")]
    second_factor_required: Option<bool>,
}

/// `POST /api/v1/auth/authenticate {message, signature[, next]}`.
#[utoipa::path(
    post,
    path = "/api/v1/auth/authenticate",
    operation_id = "authenticateSiwe",
    tag = "siwe",
    description = "Signs in with an Ethereum wallet (EIP-4361): the message names this server's domain and origin, \
        version 1, an accepted chain, a nonce from `GET /api/v1/auth/nonce` (spent here), valid times and an \
        EIP-55 address, and is signed by that address (EIP-191). Signed out, it signs in the address's account \
        (or creates one for an unknown address, when the server allows it) and sets the session cookie; signed in, \
        it links the address to the account (then `X-CSRF-Token` must carry the page's CSRF token). Only this \
        site's pages may call it: the `Origin` header must be this server's origin and the body `application/json`. \
        Refusals change nothing and count as failed sign-ins from their source.",
    request_body(content = AuthenticateBody, content_type = "application/json"),
    params(("X-CSRF-Token" = Option<String>, Header, description = "The page's CSRF token, for a signed-in browser \
        that links the address")),
    responses(
        (status = 200, description = "Signed in to the address's account, or the address linked to the signed-in one",
            body = SiweAuthenticated),
        (status = 201, description = "An account was created for the address and signed in", body = SiweAuthenticated),
        (status = 400, description = "The body, message or signature is malformed, or the message names another \
            domain, URI, version or chain", content_type = "application/problem+json", body = SiweProblem),
        (status = 401, description = "The message is not valid now, its nonce is unknown, expired or spent, or it \
            is not signed by its address", content_type = "application/problem+json", body = SiweProblem),
        (status = 403, description = "The request does not come from this site (`origin_missing`, \
            `origin_mismatch`, `csrf_token_invalid`), the account is disabled, or the server creates no accounts \
            for wallets", content_type = "application/problem+json", body = SiweProblem),
        (status = 404, description = "Sign-In with Ethereum is off on this server (`siwe_disabled`)",
            content_type = "application/problem+json", body = SiweProblem),
        (status = 409, description = "The address belongs to another account, or changed hands meanwhile",
            content_type = "application/problem+json", body = SiweProblem),
        (status = 413, description = "The body is larger than 16 KiB (`payload_too_large`)",
            content_type = "application/problem+json", body = SiweProblem),
        (status = 415, description = "The body is not `application/json`", content_type = "application/problem+json",
            body = SiweProblem),
        (status = 429, description = "Too many failed sign-ins from this network (`too_many_requests`)",
            content_type = "application/problem+json", body = SiweProblem,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The server could not finish just now (`unavailable`)",
            content_type = "application/problem+json", body = SiweProblem),
    )
)]
pub async fn authenticate(
    State(state): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let Some(siwe) = enabled(&state) else { return disabled() };
    let mut attempt =
        Attempt { state: &state, siwe: &siwe, peer, source: source_key(peer.ip()), known: Known::default() };
    // A source that failed too often is refused before anything it sent is read.
    if let Some(wait) = state.sign_in_limits.source_refused(state.auth.limiter.as_ref(), &attempt.source).await {
        state.auth.emit(
            state
                .auth
                .event("ratelimit.refused", Outcome::Denied)
                .ip(peer.ip())
                .detail("limit", "sign_in_failures_by_source"),
        );
        let detail = format!("too many failed sign-in attempts from this network; try again in {wait} s");
        return with_retry_after(problem(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", &detail), wait);
    }
    // The answer signs a browser in: only this site's own pages may ask (no login CSRF).
    match headers.get(header::ORIGIN) {
        None => {
            let r = Refusal::denied(
                StatusCode::FORBIDDEN,
                "origin_missing",
                "the request must carry this site's Origin header (send it from this site's pages)",
            );
            return attempt.refuse(r).await;
        }
        Some(o) if o.as_bytes() != siwe.audience.origin().as_bytes() => {
            let r = Refusal::denied(
                StatusCode::FORBIDDEN,
                "origin_mismatch",
                "the request comes from another site: only this site's pages may sign in here",
            );
            return attempt.refuse(r).await;
        }
        Some(_) => {}
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let too_large = e.status() == StatusCode::PAYLOAD_TOO_LARGE;
            let r = if too_large {
                let detail = format!("the body is larger than {AUTHENTICATE_BODY_LIMIT} bytes");
                Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", detail)
            } else {
                Refusal::new(StatusCode::BAD_REQUEST, "invalid_request", "the body could not be read")
            };
            return attempt.refuse(r).await;
        }
    };
    if !is_json(&headers) {
        let r = Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be application/json",
        );
        return attempt.refuse(r).await;
    }
    let req: AuthenticateBody = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => {
            let r = Refusal::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body must be a JSON object with the strings message and signature (and optionally next)",
            );
            return attempt.refuse(r).await;
        }
    };
    let now = state.auth.clock.now();
    let message = match check(&mut attempt, &req, now) {
        Ok(m) => m,
        Err(r) => return attempt.refuse(r).await,
    };
    // The nonce must be ours, unspent and unexpired, and the message no older than it. It is spent
    // only with what the sign-in does (below), so a refusal before that leaves it usable.
    let nonce_hash = sha256(message.nonce.as_bytes());
    match siwe.wallets.siwe_nonce(&nonce_hash).await {
        Ok(None) => return attempt.refuse(nonce_unknown()).await,
        Ok(Some(n)) if n.is_expired(now) => {
            let r = Refusal::new(StatusCode::UNAUTHORIZED, "nonce_expired", "the nonce has expired: ask for a new one");
            return attempt.refuse(r).await;
        }
        Ok(Some(n)) => {
            if let Err(e) = bk_domain::siwe::check_issued_after_nonce(&message, n.created_at) {
                return attempt.refuse(e.into()).await;
            }
        }
        Err(e) => return unavailable("reading a sign-in nonce", &e),
    }
    let next = safe_next(req.next.as_deref());
    let (s, fresh) = session_of(&state, &headers);
    match signed_in(&state, &s).await {
        Some((account, _)) => link(&mut attempt, &headers, &s, &account, &message, &nonce_hash, &next, now).await,
        None => sign_in(&mut attempt, &headers, &s, fresh, &message, &nonce_hash, &next, now).await,
    }
}

fn nonce_unknown() -> Refusal {
    Refusal::new(
        StatusCode::UNAUTHORIZED,
        "nonce_unknown",
        "the nonce is unknown or was used already: ask for a new one and sign again",
    )
}

/// The pure checks: the message, addressed to this server, valid now, signed by its address.
fn check(attempt: &mut Attempt<'_>, req: &AuthenticateBody, now: UnixTime) -> Result<SiweMessage, Refusal> {
    let message = bk_domain::siwe::parse_message(&req.message)?;
    attempt.known.address = Some(message.address);
    bk_domain::siwe::check_message(&message, &attempt.siwe.audience, &attempt.siwe.settings.chain_ids, now)?;
    if req.signature.len() > MAX_SIGNATURE_CHARS {
        return Err(SiweError::SignatureMalformed.into());
    }
    let signer = PersonalSignature::parse(&req.signature)?.signer(&req.message)?;
    if signer != message.address {
        return Err(SiweError::SignerMismatch.into());
    }
    Ok(message)
}

/// The JSON answer of a sign-in, sign-up or link.
fn answer(
    status: StatusCode,
    account: &AccountId,
    address: &Address,
    (created, linked): (bool, bool),
    redirect: &str,
    second_factor_required: Option<bool>,
) -> Response {
    let body = SiweAuthenticated {
        account_id: account.as_str().to_owned(),
        address: address.checksummed(),
        created,
        linked,
        redirect: redirect.to_owned(),
        second_factor_required,
    };
    (status, [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], axum::Json(body)).into_response()
}

/// Signed in: links the address to this account (never signs in to another one).
#[allow(clippy::too_many_arguments)]
async fn link(
    attempt: &mut Attempt<'_>,
    headers: &HeaderMap,
    s: &BrowserSession,
    account: &Account,
    message: &SiweMessage,
    nonce_hash: &[u8],
    next: &str,
    now: UnixTime,
) -> Response {
    let state = attempt.state;
    attempt.known.linking = true;
    attempt.known.account = Some(account.id.clone());
    let token = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !s.csrf_ok(&state.auth.cookie_keys, token) {
        let r = Refusal::denied(
            StatusCode::FORBIDDEN,
            "csrf_token_invalid",
            "a signed-in browser links an address only from this site's pages: send the page's CSRF token in X-CSRF-Token",
        );
        return attempt.refuse(r).await;
    }
    let address = message.address;
    let elsewhere = || {
        Refusal::denied(
            StatusCode::CONFLICT,
            "address_linked_elsewhere",
            "this address belongs to another account: sign out and sign in with it, or unlink it there first",
        )
    };
    match attempt.siwe.wallets.wallet(&address).await {
        Ok(Some(w)) if w.account_id != account.id => return attempt.refuse(elsewhere()).await,
        Ok(_) => {}
        Err(e) => return unavailable("reading a wallet identity", &e),
    }
    let action = WalletAction::Link { account_id: account.id.clone(), address };
    match attempt.siwe.wallets.redeem_siwe_nonce(nonce_hash, now, &action).await {
        Ok(WalletRedemption::Done) => {
            tracing::info!(account = %account.id, "an Ethereum address was linked");
            state.auth.emit(
                state
                    .auth
                    .event("account.wallet_linked", Outcome::Success)
                    .account(&account.id)
                    .ip(attempt.peer.ip())
                    .detail("address", address.checksummed())
                    .detail("chain_id", message.chain_id),
            );
            if !is_placeholder_email(&account.email) {
                crate::account_email::notify(
                    state,
                    &account.email,
                    "An Ethereum wallet was added to your account",
                    &format!(
                        "the Ethereum address {} was linked to your account; it can now sign in to it.",
                        address.checksummed()
                    ),
                );
            }
            answer(StatusCode::OK, &account.id, &address, (false, true), next, None)
        }
        Ok(WalletRedemption::AlreadyLinked) => {
            answer(StatusCode::OK, &account.id, &address, (false, false), next, None)
        }
        Ok(WalletRedemption::AddressTaken) => attempt.refuse(elsewhere()).await,
        Ok(WalletRedemption::NonceSpent) => attempt.refuse(nonce_unknown()).await,
        Ok(WalletRedemption::IdentityGone) => unavailable("linking a wallet", &"unexpected outcome"),
        Err(e) => unavailable("linking a wallet", &e),
    }
}

/// Signed out: signs in the address's account, or creates one for it.
#[allow(clippy::too_many_arguments)]
async fn sign_in(
    attempt: &mut Attempt<'_>,
    headers: &HeaderMap,
    s: &BrowserSession,
    fresh: bool,
    message: &SiweMessage,
    nonce_hash: &[u8],
    next: &str,
    now: UnixTime,
) -> Response {
    let state = attempt.state;
    let address = message.address;
    let identity = match attempt.siwe.wallets.wallet(&address).await {
        Ok(i) => i,
        Err(e) => return unavailable("reading a wallet identity", &e),
    };
    let (account, created) = match identity {
        Some(identity) => {
            attempt.known.account = Some(identity.account_id.clone());
            let account = match state.auth.store.account(&identity.account_id).await {
                Ok(Some(a)) => a,
                Ok(None) => return unavailable("reading a wallet's account", &"the account is gone"),
                Err(e) => return unavailable("reading a wallet's account", &e),
            };
            if account.is_disabled() {
                // The signature proves who asks, so saying why is no oracle (as for a right password).
                let r = Refusal::denied(
                    StatusCode::FORBIDDEN,
                    "account_disabled",
                    "this account is disabled: ask the operator of this server",
                );
                return attempt.refuse(r).await;
            }
            let action = WalletAction::SignIn { account_id: account.id.clone(), address };
            match attempt.siwe.wallets.redeem_siwe_nonce(nonce_hash, now, &action).await {
                Ok(WalletRedemption::Done) => (account, false),
                Ok(WalletRedemption::NonceSpent) => return attempt.refuse(nonce_unknown()).await,
                Ok(_) => {
                    let r = Refusal::new(
                        StatusCode::CONFLICT,
                        "identity_changed",
                        "this address was unlinked from its account just now: sign in again",
                    );
                    return attempt.refuse(r).await;
                }
                Err(e) => return unavailable("signing in with a wallet", &e),
            }
        }
        None => {
            if !attempt.siwe.settings.create_accounts {
                let r = Refusal::denied(
                    StatusCode::FORBIDDEN,
                    "sign_up_closed",
                    "no account uses this address, and this server does not create accounts for wallets",
                );
                return attempt.refuse(r).await;
            }
            let account = new_wallet_account(AccountId::generate(), now);
            let action = WalletAction::SignUp { account: account.clone(), address };
            match attempt.siwe.wallets.redeem_siwe_nonce(nonce_hash, now, &action).await {
                Ok(WalletRedemption::Done) => {
                    tracing::info!(account = %account.id, "account created by an Ethereum wallet");
                    state.auth.emit(
                        state
                            .auth
                            .event("account.signup", Outcome::Success)
                            .account(&account.id)
                            .ip(attempt.peer.ip())
                            .detail("method", "siwe")
                            .detail("address", address.checksummed())
                            .detail("chain_id", message.chain_id),
                    );
                    (account, true)
                }
                Ok(WalletRedemption::NonceSpent) => return attempt.refuse(nonce_unknown()).await,
                Ok(_) => {
                    let r = Refusal::new(
                        StatusCode::CONFLICT,
                        "address_taken",
                        "an account was created for this address just now: sign in again",
                    );
                    return attempt.refuse(r).await;
                }
                Err(e) => return unavailable("creating an account for a wallet", &e),
            }
        }
    };
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    // The signature stands where the password does: a second factor may still be due (or, when
    // the operator requires one, to be set up) before the browser is signed in.
    match crate::second_factor::after_password(state, s, &account, next, now).await {
        Ok(Some(ask)) => {
            let redirect = ask.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("/").to_owned();
            let mut res = answer(status, &account.id, &address, (created, false), &redirect, Some(true));
            copy_cookies(&ask, &mut res);
            if fresh {
                // The second-factor marker is bound to this browser session.
                res.headers_mut().append(header::SET_COOKIE, s.set_cookie(&state.auth.cookie_keys));
            }
            res
        }
        Ok(None) => {
            let signed = crate::pages::complete_sign_in(
                state,
                s,
                &account,
                next,
                attempt.peer.ip(),
                Some("siwe_sign_in"),
                headers,
            )
            .await;
            if signed.status() != StatusCode::SEE_OTHER {
                return unavailable("storing the browser session", &"the sign-in did not complete");
            }
            let mut res = answer(status, &account.id, &address, (created, false), next, Some(false));
            copy_cookies(&signed, &mut res);
            res.headers_mut().append(header::SET_COOKIE, crate::second_factor::clear_marker_cookie(state));
            res
        }
        Err(_) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the server could not finish signing you in; try again",
        ),
    }
}

fn copy_cookies(from: &Response, to: &mut Response) {
    for v in from.headers().get_all(header::SET_COOKIE) {
        to.headers_mut().append(header::SET_COOKIE, v.clone());
    }
}

#[derive(Deserialize)]
pub struct PageQuery {
    notice: Option<String>,
    error: Option<String>,
}

/// `GET /account/security/wallets`: the account's addresses (each removable), and the button that
/// links another (`/static/siwe.js`).
pub async fn page(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<PageQuery>,
) -> Response {
    let (s, _) = session_of(&state, &headers);
    let Some((account, _)) = signed_in(&state, &s).await else {
        return see_other("/login?next=%2Faccount%2Fsecurity%2Fwallets");
    };
    let Some(siwe) = state.siwe.as_ref() else { return see_other("/account/security") };
    let wallets: Vec<Value> = wallets_of(&state, &account.id)
        .await
        .into_iter()
        .map(|(address, linked, last_used)| {
            json!({
                "address": address,
                "linked": crate::connections_page::utc(linked),
                "last_used": last_used.map(crate::connections_page::utc),
            })
        })
        .collect();
    let notice = match q.notice.as_deref() {
        Some("linked") => Some("The Ethereum address was linked: it can sign in to this account."),
        Some("unlinked") => Some("The Ethereum address was removed: it can no longer sign in to this account."),
        _ => None,
    };
    let error = match q.error.as_deref() {
        Some("not_found") => Some("There is no such Ethereum address in this account."),
        Some("last_sign_in_method") => Some(
            "That address is this account's only way to sign in: add a passkey or another address before removing it.",
        ),
        _ => None,
    };
    state.page(
        StatusCode::OK,
        "wallets.html",
        minijinja::context! {
            csrf_token => s.csrf_token(&state.auth.cookie_keys), notice, error,
            wallets => minijinja::Value::from(minijinja::value::Serde(&wallets)), siwe => siwe.settings.enabled,
        },
    )
}

/// `POST /account/security/wallets/{address}/unlink` (a form of the wallets page).
pub async fn unlink(
    State(state): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(address): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (account, _, _) = match crate::pages::signed_in_form(&state, &headers, &body, PAGE).await {
        Ok(found) => found,
        Err(res) => return res,
    };
    let (Some(siwe), Some(address)) = (state.siwe.clone(), Address::parse_any_case(&address)) else {
        return see_other(&format!("{PAGE}?error=not_found"));
    };
    match siwe.wallets.unlink_wallet(&account.id, &address).await {
        Ok(WalletUnlink::Unlinked) => {
            tracing::info!(account = %account.id, "an Ethereum address was unlinked");
            state.auth.emit(
                state
                    .auth
                    .event("account.wallet_unlinked", Outcome::Success)
                    .account(&account.id)
                    .ip(peer.ip())
                    .detail("address", address.checksummed()),
            );
            if !is_placeholder_email(&account.email) {
                crate::account_email::notify(
                    &state,
                    &account.email,
                    "An Ethereum wallet was removed from your account",
                    &format!(
                        "the Ethereum address {} was removed from your account; it can no longer sign in to it.",
                        address.checksummed()
                    ),
                );
            }
            see_other(&format!("{PAGE}?notice=unlinked"))
        }
        // Another account's address is answered like an unknown one.
        Ok(WalletUnlink::NotFound) => see_other(&format!("{PAGE}?error=not_found")),
        Ok(WalletUnlink::LastSignInMethod) => see_other(&format!("{PAGE}?error=last_sign_in_method")),
        Err(e) => {
            tracing::error!(error = %e, "unlinking a wallet failed");
            state.message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "The server could not do this right now. Try again in a moment.",
            )
        }
    }
}

/// `/static/siwe.js`.
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        include_str!("../static/siwe.js"),
    )
        .into_response()
}

/// An account's addresses: (EIP-55 address, linked at, last used).
pub(crate) async fn wallets_of(state: &WebState, account: &AccountId) -> Vec<(String, UnixTime, Option<UnixTime>)> {
    let Some(siwe) = state.siwe.as_ref() else { return Vec::new() };
    match siwe.wallets.wallets_of(account).await {
        Ok(list) => list.iter().map(|w| (w.address.checksummed(), w.created_at, w.last_used_at)).collect(),
        Err(e) => {
            tracing::error!(error = %e, "listing wallet identities failed");
            Vec::new()
        }
    }
}

/// How an account is named to the person where its email address would be (a passkey's user name
/// on the authenticator, the label in an authenticator app, a mail): the address, or — an account
/// made by a wallet, whose address field holds an undeliverable placeholder — its first Ethereum
/// address, shortened as wallets show it (`0x1234…abcd`).
pub(crate) async fn account_label(state: &WebState, account: &Account) -> String {
    if !is_placeholder_email(&account.email) {
        return account.email.clone();
    }
    match wallets_of(state, &account.id).await.into_iter().next() {
        Some((address, _, _)) => short_address(&address),
        None => "Ethereum wallet account".to_owned(),
    }
}

/// `0x1234…abcd`: the first four and last four digits of an address.
fn short_address(address: &str) -> String {
    match (address.get(..6), address.get(address.len().saturating_sub(4)..)) {
        (Some(head), Some(tail)) if address.len() > 10 => format!("{head}…{tail}"),
        _ => address.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_address_is_shortened_as_wallets_show_it() {
        assert_eq!(super::short_address("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"), "0x5aAe…eAed");
        assert_eq!(super::short_address("0x12"), "0x12");
    }
}
