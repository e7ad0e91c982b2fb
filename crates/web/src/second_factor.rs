//! Two-factor sign-in with a TOTP authenticator (RFC 6238) and recovery codes.
//!
//! - **Enrolment** (`/account/security/totp`, signed in): a fresh 160-bit secret, shown as a QR
//!   code (an `otpauth://` URL, rendered as SVG) and as text; it is kept in the form itself, sealed
//!   under the master key and bound to the account and this browser session, until the person
//!   types a code it produced. Then it is stored (sealed, bound to the account) with ten recovery
//!   codes, shown once and kept as keyed digests; a security notice is mailed.
//! - **Sign-in**: after the right password, an account with an authenticator is not signed in yet:
//!   the browser gets a five-minute marker (`bk_mfa`, signed, bound to its session id) and the page
//!   asks for a code (or a recovery code). A code is accepted only for a TOTP step later than the
//!   last one accepted (no replay within its window); five wrong codes a minute per account.
//! - **Required** (`accounts.require_second_factor`): an account without an authenticator enrols
//!   right after its password, before it is signed in.
//! - **Turning it off** needs the current password, and is refused while the operator requires it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bk_access::browser::BrowserSession;
use bk_crypto::mac::MacKey;
use bk_crypto::secret::{b64url, b64url_decode, random_bytes};
use bk_domain::UnixTime;
use bk_domain::account::Account;
use bk_domain::audit::Outcome;
use bk_domain::ids::AccountId;
use bk_domain::ports::StoredTotp;
use bk_domain::second_factor::{
    RECOVERY_ALPHABET, RECOVERY_CODE_CHARS, RECOVERY_CODES, SecondFactorInput, TOTP_DIGITS, TOTP_STEP_SECS,
    parse_second_factor, show_recovery_code, totp_binding,
};
use minijinja::context;
use serde::Deserialize;
use totp_rs::{Algorithm, Totp};

use crate::pages::{field, form_expired, session_of, signed_in, with_cookie};
use crate::{WebState, safe_next, see_other};

pub(crate) const SIGN_IN_PATH: &str = "/login/second-factor";
pub(crate) const ENROL_PATH: &str = "/account/security/totp";
pub(crate) const DISABLE_PATH: &str = "/account/security/totp/disable";
const MARKER: &str = "bk_mfa";
const MARKER_SECS: i64 = 300;
const FAILURES_PER_MINUTE: u32 = 5;
const FAILURES: &str = "second_factor_failures";

/// What the sign-in marker is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pending {
    /// The account has an authenticator: ask for a code.
    Verify,
    /// The operator requires one and the account has none: enrol it now.
    Enrol,
}

/// The half-done sign-in: the password was right; the browser session and account it is for.
#[derive(Debug)]
struct Marker {
    account: AccountId,
    sid: String,
    pending: Pending,
    expires_at: UnixTime,
}

fn marker_key(state: &WebState) -> MacKey {
    MacKey::derive(state.auth.master.raw(), "second-factor-pending")
}

fn marker_cookie(state: &WebState, m: &Marker) -> HeaderValue {
    let kind = if m.pending == Pending::Verify { "verify" } else { "enrol" };
    let payload = b64url(format!("v1|{}|{}|{kind}|{}", m.account, m.sid, m.expires_at).as_bytes());
    let tag = b64url(&marker_key(state).sign(payload.as_bytes()));
    let secure = if state.auth.cookie_keys.secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{MARKER}={payload}.{tag}; Path=/; HttpOnly; SameSite=Lax; Max-Age={MARKER_SECS}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("bk_mfa=; Path=/; Max-Age=0"))
}

/// The cookie that drops the sign-in marker (a sign-in completed elsewhere: a passkey).
pub(crate) fn clear_marker_cookie(state: &WebState) -> HeaderValue {
    clear_marker(state)
}

/// The account whose password this browser gave, waiting for its second factor.
pub(crate) fn pending_account(state: &WebState, headers: &HeaderMap, s: &BrowserSession) -> Option<AccountId> {
    read_marker(state, headers, s, state.auth.clock.now()).filter(|m| m.pending == Pending::Verify).map(|m| m.account)
}

fn clear_marker(state: &WebState) -> HeaderValue {
    let secure = if state.auth.cookie_keys.secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{MARKER}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"))
        .unwrap_or_else(|_| HeaderValue::from_static("bk_mfa=; Path=/; Max-Age=0"))
}

/// The marker of this request, if it is validly signed, unexpired and for this browser session.
fn read_marker(state: &WebState, headers: &HeaderMap, s: &BrowserSession, now: UnixTime) -> Option<Marker> {
    let raw = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.split(';').find_map(|p| p.trim().strip_prefix(&format!("{MARKER}=")).map(str::to_owned)))?;
    let (payload, tag) = raw.split_once('.')?;
    if !marker_key(state).verify(payload.as_bytes(), &b64url_decode(tag)?) {
        return None;
    }
    let text = String::from_utf8(b64url_decode(payload)?).ok()?;
    let parts: Vec<&str> = text.split('|').collect();
    let [ver, account, sid, kind, exp] = parts[..] else { return None };
    let expires_at: UnixTime = exp.parse().ok()?;
    let pending = match kind {
        "verify" => Pending::Verify,
        "enrol" => Pending::Enrol,
        _ => return None,
    };
    (ver == "v1" && sid == s.sid && now < expires_at).then(|| Marker {
        account: AccountId::from_string(account),
        sid: sid.to_owned(),
        pending,
        expires_at,
    })
}

/// Called after the right password: `Some(answer)` when a second factor must be given (or enrolled)
/// before the person is signed in; `None` to sign in now.
pub(crate) async fn after_password(
    state: &WebState,
    s: &BrowserSession,
    account: &Account,
    next: &str,
    now: UnixTime,
) -> Result<Option<Response>, Response> {
    // Two-factor sign-in is on when an authenticator app is set up (it comes with recovery codes);
    // a passkey then also answers. Passkeys alone sign in without the password instead, and are
    // not demanded after it (no recovery codes would stand in for a lost device) — unless the
    // operator requires a second factor, when a passkey is one.
    let (totp, passkeys) =
        match (state.second_factors.totp(&account.id).await, state.passkeys.passkeys_of(&account.id).await) {
            (Ok(t), Ok(keys)) => (t.is_some(), !keys.is_empty() && state.webauthn.is_some()),
            (Err(e), _) | (_, Err(e)) => return Err(unavailable(state, "reading the second factor", &e)),
        };
    let pending = match (totp, passkeys, state.require_second_factor) {
        (true, _, _) | (false, true, true) => Pending::Verify,
        (false, false, true) => Pending::Enrol,
        (false, _, false) => return Ok(None),
    };
    let marker = Marker { account: account.id.clone(), sid: s.sid.clone(), pending, expires_at: now + MARKER_SECS };
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("next", next);
    Ok(Some(with_cookie(see_other(&format!("{SIGN_IN_PATH}?{}", q.finish())), marker_cookie(state, &marker))))
}

#[derive(Deserialize)]
pub struct NextQuery {
    pub(crate) next: Option<String>,
}

/// `GET /login/second-factor`: the code form (or, when enrolment is required, the enrolment page).
pub async fn sign_in_form(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let now = state.auth.clock.now();
    let (s, _) = session_of(&state, &headers);
    let next = safe_next(q.next.as_deref());
    let Some(marker) = read_marker(&state, &headers, &s, now) else { return start_over(&state, &next).await };
    match marker.pending {
        Pending::Verify => code_page(&state, &s, &marker.account, &next, StatusCode::OK, None).await,
        Pending::Enrol => match state.auth.store.account(&marker.account).await {
            Ok(Some(a)) => enrol_page(&state, &s, &a, SIGN_IN_PATH, &next, None, true).await,
            _ => start_over(&state, &next).await,
        },
    }
}

/// The sign-in expired or belongs to another browser (under the brand of the authorization request it was for).
async fn start_over(state: &WebState, next: &str) -> Response {
    state.branded_message(
        StatusCode::BAD_REQUEST,
        "Sign in again",
        "This sign-in took too long or was started in another browser. Sign in again with your email and password.",
        crate::brand_of_next(state, next).await,
    )
}

/// `POST /login/second-factor`: a code (or, when enrolling, the new authenticator's first code).
pub async fn sign_in(
    State(state): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = state.auth.clock.now();
    let (s, pairs) = match crate::pages::csrf_form(&state, &headers, &body) {
        Ok(found) => found,
        Err(res) => return *res,
    };
    let next = safe_next(field(&pairs, "next"));
    let Some(marker) = read_marker(&state, &headers, &s, now) else { return start_over(&state, &next).await };
    let account = match state.auth.store.account(&marker.account).await {
        Ok(Some(a)) => a,
        Ok(None) => return start_over(&state, &next).await,
        Err(e) => return unavailable(&state, "reading the account", &e),
    };
    let limiter = state.auth.limiter.as_ref();
    if limiter.retry_after(FAILURES, account.id.as_str(), FAILURES_PER_MINUTE, 60).await.is_some() {
        let msg = "Too many wrong codes. Wait a minute and try again.";
        return code_page(&state, &s, &account.id, &next, StatusCode::TOO_MANY_REQUESTS, Some(msg)).await;
    }
    let typed = field(&pairs, "code").unwrap_or("");
    let factor = match marker.pending {
        Pending::Verify => check_code(&state, &account, typed, now).await,
        Pending::Enrol => match confirm_enrolment(&state, &s, &account, &pairs, now).await {
            Ok(Some(codes)) => {
                // Enrolled: signed in, and the recovery codes are shown once on the way.
                let res = crate::pages::complete_sign_in(
                    &state,
                    &s,
                    &account,
                    &next,
                    peer.ip(),
                    Some("totp_enrolled"),
                    &headers,
                )
                .await;
                let res = with_cookie(res, clear_marker(&state));
                return codes_page(&state, res, &codes, &next, crate::brand_of_next(&state, &next).await);
            }
            Ok(None) => None,
            Err(res) => return res,
        },
    };
    match factor {
        Some(how) => {
            let res = crate::pages::complete_sign_in(&state, &s, &account, &next, peer.ip(), Some(how), &headers).await;
            with_cookie(res, clear_marker(&state))
        }
        None => {
            limiter.record(FAILURES, account.id.as_str(), FAILURES_PER_MINUTE, 60).await;
            state
                .auth
                .emit(state.auth.event("auth.second_factor", Outcome::Failure).account(&account.id).ip(peer.ip()));
            let msg = "That code is not right. Enter the current code from your authenticator app, or a recovery code.";
            match marker.pending {
                Pending::Verify => code_page(&state, &s, &account.id, &next, StatusCode::UNAUTHORIZED, Some(msg)).await,
                Pending::Enrol => enrol_page(&state, &s, &account, SIGN_IN_PATH, &next, Some(msg), true).await,
            }
        }
    }
}

/// The second-factor page: the code form when the account has an authenticator app, the passkey
/// button when it has passkeys.
async fn code_page(
    state: &WebState,
    s: &BrowserSession,
    account: &AccountId,
    next: &str,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let totp = state.second_factors.totp(account).await.ok().flatten().is_some();
    let passkeys =
        state.webauthn.is_some() && state.passkeys.passkeys_of(account).await.map(|k| !k.is_empty()).unwrap_or(false);
    let brand = crate::brand_of_next(state, next).await;
    state.page(
        status,
        "second_factor.html",
        context! { csrf_token => s.csrf_token(&state.auth.cookie_keys), next, error, totp, passkeys, brand },
    )
}

/// Checks a TOTP code (once per step) or a recovery code (once); which one worked.
async fn check_code(state: &WebState, account: &Account, typed: &str, now: UnixTime) -> Option<&'static str> {
    match parse_second_factor(typed)? {
        SecondFactorInput::Totp(code) => {
            let stored = state.second_factors.totp(&account.id).await.ok().flatten()?;
            let secret = open_secret(state, &account.id, &stored)?;
            let step = totp(&secret, &account.email)?.check(&code, now.max(0) as u64)?;
            // Accepted only for a step later than the last one: a code works once.
            state.second_factors.use_totp_step(&account.id, step as i64).await.ok()?.then_some("totp")
        }
        SecondFactorInput::Recovery(code) => {
            let hash = recovery_hash(state, &account.id, &code);
            let used = state.second_factors.use_recovery_code(&account.id, &hash, now).await.ok()?;
            if used {
                let left = state.second_factors.recovery_codes_left(&account.id).await.unwrap_or(0);
                crate::account_email::notify(
                    state,
                    &account.email,
                    "A recovery code was used",
                    &format!("a recovery code was used to sign in to your account; {left} are left."),
                );
            }
            used.then_some("recovery_code")
        }
    }
}

fn open_secret(state: &WebState, account: &AccountId, stored: &StoredTotp) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    match state.auth.master.open(totp_binding(account).as_bytes(), &stored.sealed_secret) {
        Ok(s) => Some(zeroize::Zeroizing::new(s)),
        Err(e) => {
            tracing::error!(error = %e, account = %account, "an account's TOTP secret does not open");
            None
        }
    }
}

/// The authenticator of `secret` for `email` (SHA-1, 6 digits, 30 s, one step of skew each way).
fn totp(secret: &[u8], email: &str) -> Option<Totp> {
    totp_rs::Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(TOTP_DIGITS as u8)
        .with_skew(1)
        .with_step_duration(TOTP_STEP_SECS)
        .with_secret(secret.to_vec())
        .with_issuer(Some("Bridgekeeper"))
        .with_account_name(email.replace(':', ""))
        .build()
        .ok()
}

/// The keyed digest of a recovery code (a leaked table cannot be brute-forced without the master key).
fn recovery_hash(state: &WebState, account: &AccountId, code: &str) -> Vec<u8> {
    MacKey::derive(state.auth.master.raw(), "recovery-code").sign(format!("{account}|{code}").as_bytes()).to_vec()
}

fn new_recovery_code() -> String {
    let mut out = String::with_capacity(RECOVERY_CODE_CHARS);
    while out.len() < RECOVERY_CODE_CHARS {
        for b in random_bytes::<16>() {
            // Rejection sampling: only bytes below the largest multiple of the alphabet's size.
            let n = RECOVERY_ALPHABET.len();
            if usize::from(b) < 256 - 256 % n && out.len() < RECOVERY_CODE_CHARS {
                out.push(char::from(RECOVERY_ALPHABET[usize::from(b) % n]));
            }
        }
    }
    out
}

/// The AAD of a secret waiting in an enrolment form: this account, this browser session.
fn pending_binding(account: &AccountId, sid: &str) -> Vec<u8> {
    format!("totp-enrol:{account}:{sid}").into_bytes()
}

/// The enrolment page: a new secret as QR code and text, and the form for its first code.
async fn enrol_page(
    state: &WebState,
    s: &BrowserSession,
    account: &Account,
    action: &str,
    next: &str,
    error: Option<&str>,
    required: bool,
) -> Response {
    let secret = zeroize::Zeroizing::new(random_bytes::<20>().to_vec());
    // The label the app shows (a wallet account's address, never its placeholder); codes do not depend on it.
    let label = crate::siwe::account_label(state, account).await;
    let Some(t) = totp(&secret, &label) else {
        return unavailable(state, "making an authenticator", &"totp");
    };
    let (Ok(url), Ok(sealed)) = (t.to_url(), state.auth.master.seal(&pending_binding(&account.id, &s.sid), &secret))
    else {
        return unavailable(state, "making an authenticator", &"seal");
    };
    let qr = match qrcode::QrCode::new(url.as_bytes()) {
        Ok(code) => {
            let svg = code.render::<qrcode::render::svg::Color>().min_dimensions(220, 220).quiet_zone(true).build();
            format!("data:image/svg+xml;base64,{}", base64_std(svg.as_bytes()))
        }
        Err(e) => return unavailable(state, "drawing the QR code", &e),
    };
    let shown: String = t
        .secret()
        .to_base32()
        .chars()
        .collect::<Vec<_>>()
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ");
    // Required at sign-in, the page is on the way through an authorization request: its brand.
    let brand = if required { crate::brand_of_next(state, next).await } else { None };
    let mut res = state.page(
        if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK },
        "totp_enrol.html",
        context! {
            csrf_token => s.csrf_token(&state.auth.cookie_keys), action, next, error, required,
            qr, secret_text => shown, pending => b64url(&sealed), email => label, brand,
        },
    );
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Checks the first code of the secret in the enrolment form; on success stores the authenticator
/// with new recovery codes and returns them (to be shown once). `Ok(None)`: the code was wrong.
async fn confirm_enrolment(
    state: &WebState,
    s: &BrowserSession,
    account: &Account,
    pairs: &[(String, String)],
    now: UnixTime,
) -> Result<Option<Vec<String>>, Response> {
    let Some(secret) = field(pairs, "pending")
        .and_then(b64url_decode)
        .and_then(|sealed| state.auth.master.open(&pending_binding(&account.id, &s.sid), &sealed).ok())
        .map(zeroize::Zeroizing::new)
    else {
        return Err(form_expired(state));
    };
    let Some(SecondFactorInput::Totp(code)) = parse_second_factor(field(pairs, "code").unwrap_or("")) else {
        return Ok(None);
    };
    let Some(step) = totp(&secret, &account.email).and_then(|t| t.check(&code, now.max(0) as u64)) else {
        return Ok(None);
    };
    let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
    let hashes: Vec<Vec<u8>> = codes.iter().map(|c| recovery_hash(state, &account.id, c)).collect();
    let sealed = state
        .auth
        .master
        .seal(totp_binding(&account.id).as_bytes(), &secret)
        .map_err(|e| unavailable(state, "sealing the authenticator", &e))?;
    // The enrolment's own code is spent: last_step starts at its step.
    let stored =
        StoredTotp { account_id: account.id.clone(), sealed_secret: sealed, created_at: now, last_step: step as i64 };
    match state.second_factors.enable_totp(&stored, &hashes).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(state.message(
                StatusCode::CONFLICT,
                "Already set up",
                "This account has an authenticator already.",
            ));
        }
        Err(e) => return Err(unavailable(state, "storing the authenticator", &e)),
    }
    tracing::info!(account = %account.id, "second factor enrolled");
    state.auth.emit(
        state.auth.event("account.second_factor_added", Outcome::Success).account(&account.id).detail("method", "totp"),
    );
    crate::account_email::notify(
        state,
        &account.email,
        "A sign-in method was added to your account",
        "an authenticator app (two-factor sign-in) was added to your account; signing in now asks for its code.",
    );
    Ok(Some(codes.iter().map(|c| show_recovery_code(c)).collect()))
}

/// The recovery codes, shown once; `continue_to` is where the page's button goes next.
fn codes_page(
    state: &WebState,
    answer: Response,
    codes: &[String],
    continue_to: &str,
    brand: Option<minijinja::Value>,
) -> Response {
    let mut page =
        state.page(StatusCode::OK, "totp_codes.html", context! { codes => codes.to_vec(), continue_to, brand });
    // Keep the sign-in's cookies (a new session) on the page that shows the codes.
    for v in answer.headers().get_all(header::SET_COOKIE) {
        page.headers_mut().append(header::SET_COOKIE, v.clone());
    }
    page.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    page
}

/// `GET /account/security/totp`: enrolment, or the state of the authenticator and how to remove it.
pub async fn enrol_form(State(state): State<Arc<WebState>>, headers: HeaderMap) -> Response {
    let (s, _) = session_of(&state, &headers);
    let Some((account, _)) = signed_in(&state, &s).await else {
        return see_other(&format!("/login?next={}", enc(ENROL_PATH)));
    };
    match state.second_factors.totp(&account.id).await {
        Ok(Some(t)) => {
            let left = state.second_factors.recovery_codes_left(&account.id).await.unwrap_or(0);
            state.page(
                StatusCode::OK,
                "totp_status.html",
                context! {
                    csrf_token => s.csrf_token(&state.auth.cookie_keys), since => crate::connections_page::utc(t.created_at),
                    left, required => state.require_second_factor, error => None::<String>,
                },
            )
        }
        Ok(None) => enrol_page(&state, &s, &account, ENROL_PATH, "/account/security", None, false).await,
        Err(e) => unavailable(&state, "reading the second factor", &e),
    }
}

/// `POST /account/security/totp`: the first code of the new authenticator.
pub async fn enrol(State(state): State<Arc<WebState>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = state.auth.clock.now();
    let (account, s, pairs) = match crate::pages::signed_in_form(&state, &headers, &body, ENROL_PATH).await {
        Ok(found) => found,
        Err(res) => return res,
    };
    match confirm_enrolment(&state, &s, &account, &pairs, now).await {
        Ok(Some(codes)) => {
            codes_page(&state, axum::response::IntoResponse::into_response(()), &codes, "/account/security", None)
        }
        Ok(None) => {
            enrol_page(
                &state,
                &s,
                &account,
                ENROL_PATH,
                "/account/security",
                Some("That code is not right. Scan the new QR code below (it changed) and enter the code it shows."),
                false,
            )
            .await
        }
        Err(res) => res,
    }
}

/// `POST /account/security/totp/disable`: removes the authenticator, with the current password.
pub async fn disable(
    State(state): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (account, s, pairs) = match crate::pages::signed_in_form(&state, &headers, &body, ENROL_PATH).await {
        Ok(found) => found,
        Err(res) => return res,
    };
    let status_page = |error: &str, left: i64| {
        state.page(
            StatusCode::BAD_REQUEST,
            "totp_status.html",
            context! { csrf_token => s.csrf_token(&state.auth.cookie_keys), left, required => state.require_second_factor, error },
        )
    };
    let left = state.second_factors.recovery_codes_left(&account.id).await.unwrap_or(0);
    if state.require_second_factor {
        return status_page(
            "This server requires two-factor sign-in for every account: it cannot be turned off.",
            left,
        );
    }
    use crate::account_email::{CurrentPassword, check_current_password};
    match check_current_password(&state, &account, field(&pairs, "current_password").unwrap_or("")).await {
        CurrentPassword::Right => {}
        CurrentPassword::TooMany => return status_page("Too many attempts. Wait a minute and try again.", left),
        CurrentPassword::Wrong => return status_page("The current password is not correct.", left),
    }
    match state.second_factors.disable_totp(&account.id).await {
        Ok(_) => {
            state.auth.emit(
                state
                    .auth
                    .event("account.second_factor_removed", Outcome::Success)
                    .account(&account.id)
                    .ip(peer.ip())
                    .detail("method", "totp"),
            );
            crate::account_email::notify(
                &state,
                &account.email,
                "Two-factor sign-in was turned off",
                "the authenticator app was removed from your account: signing in now asks only for the password.",
            );
            see_other("/account/security?notice=second_factor_removed")
        }
        Err(e) => unavailable(&state, "removing the second factor", &e),
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn unavailable(state: &WebState, doing: &str, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "{doing} failed");
    state.message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        "The server could not do this right now. Try again in a moment.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_in_the_alphabet_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let c = new_recovery_code();
            assert_eq!(c.len(), RECOVERY_CODE_CHARS);
            assert!(c.bytes().all(|b| RECOVERY_ALPHABET.contains(&b)), "{c}");
            assert_eq!(parse_second_factor(&show_recovery_code(&c)), Some(SecondFactorInput::Recovery(c.clone())));
            seen.insert(c);
        }
        assert_eq!(seen.len(), 200, "no repeats");
    }

    #[test]
    fn the_authenticator_follows_rfc_6238() {
        // RFC 6238 appendix B, SHA-1 secret "12345678901234567890", 8 digits; here 6 digits: the last six.
        let t = totp(b"12345678901234567890", "a@b.co").unwrap();
        assert_eq!(t.generate(59).to_string(), "287082");
        assert_eq!(t.generate(1_111_111_109).to_string(), "081804");
        assert_eq!(t.check("287082", 59), Some(1));
        assert_eq!(t.check("287082", 59 + 30), Some(1), "one step of skew");
        assert_eq!(t.check("287082", 59 + 90), None);
        assert!(t.to_url().unwrap().starts_with("otpauth://totp/Bridgekeeper:a%40b.co?"), "{}", t.to_url().unwrap());
    }
}
