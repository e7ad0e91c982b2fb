//! Sign-up, sign-in, sign-out and the home page.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bk_domain::account::{
    Account, MAX_EMAIL_BYTES, SignInInputError, check_new_account, check_sign_in_input, typed_email_for_audit,
};
use bk_domain::audit::Outcome;
use bk_domain::ids::AccountId;
use bk_domain::ports::{AccountStore, StoreError};
use minijinja::context;
use serde::Deserialize;

use crate::sign_in_limits::source_key;
use crate::{WebState, safe_next, see_other};
use bk_access::browser::BrowserSession;

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
    /// Set by the answer to a sign-up: the sign-in page says what to do next.
    signed_up: Option<String>,
    /// Set by the answer to a password reset.
    reset: Option<String>,
}

/// What the sign-in page says after every sign-up, whether the email was new or already registered
/// (so the answer does not tell which).
const SIGNED_UP: &str = "Thanks for signing up. Sign in with your email address and password to continue. If the \
                         address is new here, we sent it a link to verify it.";
/// What the sign-in page says after a password reset.
const RESET_DONE: &str = "Your password was changed. Sign in with the new one.";

/// The browser session of the request, or a new anonymous one (and whether it must be set).
pub(crate) fn session_of(state: &WebState, headers: &HeaderMap) -> (BrowserSession, bool) {
    let now = state.auth.clock.now();
    match BrowserSession::read(headers, &state.auth.cookie_keys, now) {
        Some(s) => (s, false),
        None => (BrowserSession::anonymous(now), true),
    }
}

pub(crate) fn with_cookie(mut res: Response, value: HeaderValue) -> Response {
    res.headers_mut().append(header::SET_COOKIE, value);
    res
}

pub(crate) fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

pub(crate) fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The signed-in account of a browser session: the server must still hold the session live (not
/// signed out, not expired) and the account must still exist.
pub(crate) async fn signed_in(state: &WebState, s: &BrowserSession) -> Option<(Account, i64)> {
    s.account.as_ref()?;
    let checked = match state.browser_sessions.check(s.clone(), state.auth.clock.now_ms()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "browser session lookup failed");
            return None;
        }
    };
    let (id, auth_time) = checked.account.as_ref()?;
    // A page seen keeps the session from its idle timeout (noted at most every five minutes).
    state.browser_sessions.seen(&checked, None, state.auth.clock.now_ms()).await;
    match state.auth.store.account(id).await {
        // (A disabled account's sessions end when it is disabled; one that slipped in meanwhile counts for nothing.)
        Ok(Some(a)) if !a.is_disabled() => Some((a, *auth_time)),
        _ => None,
    }
}

/// The browser's `User-Agent`, for the list of signed-in browsers (bounded; shown, never trusted).
pub(crate) fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|ua| ua.get(..ua.len().min(256)).unwrap_or(""))
}

/// A form's fields, in order.
pub(crate) type FormPairs = Vec<(String, String)>;

/// A form POST's browser session and fields, its CSRF token checked first (a stale or forged form
/// gets "This form has expired" and nothing is read further).
pub(crate) fn csrf_form(
    state: &WebState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(BrowserSession, FormPairs), Box<Response>> {
    let now = state.auth.clock.now();
    let expired = || Box::new(form_expired(state));
    let s = BrowserSession::read(headers, &state.auth.cookie_keys, now).ok_or_else(expired)?;
    let pairs = form_pairs(body);
    if !field(&pairs, "csrf_token").is_some_and(|t| s.csrf_ok(&state.auth.cookie_keys, t)) {
        return Err(expired());
    }
    Ok((s, pairs))
}

/// A signed-in person's form POST from `page`: [`csrf_form`], then the session checked live and its
/// account; signed out, off to sign in and back to `page`.
pub(crate) async fn signed_in_form(
    state: &WebState,
    headers: &HeaderMap,
    body: &[u8],
    page: &str,
) -> Result<(Account, BrowserSession, FormPairs), Response> {
    let (s, pairs) = csrf_form(state, headers, body).map_err(|res| *res)?;
    match signed_in(state, &s).await {
        Some((account, _)) => Ok((account, s, pairs)),
        None => {
            let next: String = url::form_urlencoded::byte_serialize(page.as_bytes()).collect();
            Err(see_other(&format!("/login?next={next}")))
        }
    }
}

pub(crate) fn form_expired(state: &WebState) -> Response {
    state.message(
        StatusCode::BAD_REQUEST,
        "This form has expired",
        "The page you submitted is out of date or was not sent by this site. Go back, reload the page and try again.",
    )
}

pub async fn home(State(state): State<Arc<WebState>>, headers: HeaderMap) -> Response {
    let (s, fresh) = session_of(&state, &headers);
    let email = signed_in(&state, &s).await.map(|(a, _)| a.email);
    let res = state.page(
        StatusCode::OK,
        "home.html",
        context! { email, csrf_token => s.csrf_token(&state.auth.cookie_keys), issuer => state.auth.issuer.clone() },
    );
    if fresh { with_cookie(res, s.set_cookie(&state.auth.cookie_keys)) } else { res }
}

fn render_login(
    state: &WebState,
    s: &BrowserSession,
    status: StatusCode,
    next: &str,
    email: &str,
    error: Option<&str>,
    brand: Option<minijinja::Value>,
) -> Response {
    render_login_page(state, s, status, next, email, error, None, brand)
}

#[allow(clippy::too_many_arguments)]
fn render_login_page(
    state: &WebState,
    s: &BrowserSession,
    status: StatusCode,
    next: &str,
    email: &str,
    error: Option<&str>,
    notice: Option<&str>,
    brand: Option<minijinja::Value>,
) -> Response {
    state.page(
        status,
        "login.html",
        context! {
            csrf_token => s.csrf_token(&state.auth.cookie_keys), next, email, error, notice, brand,
            passkeys => state.webauthn.is_some(),
        },
    )
}

/// What of a typed email may be shown back on a page: nothing when it is over-long.
fn echo_email(typed: &str) -> &str {
    let t = typed.trim();
    if t.len() <= MAX_EMAIL_BYTES { t } else { "" }
}

fn render_signup(
    state: &WebState,
    s: &BrowserSession,
    status: StatusCode,
    next: &str,
    email: &str,
    error: Option<&str>,
    brand: Option<minijinja::Value>,
) -> Response {
    state.page(
        status,
        "signup.html",
        context! { csrf_token => s.csrf_token(&state.auth.cookie_keys), next, email, error, brand },
    )
}

pub async fn login_form(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let (s, fresh) = session_of(&state, &headers);
    let next = safe_next(q.next.as_deref());
    let brand = crate::client_of_next(&state, &next).await.as_ref().and_then(crate::brand_of);
    let notice = if q.signed_up.is_some() {
        Some(SIGNED_UP)
    } else if q.reset.is_some() {
        Some(RESET_DONE)
    } else {
        None
    };
    let res = render_login_page(&state, &s, StatusCode::OK, &next, "", None, notice, brand);
    if fresh { with_cookie(res, s.set_cookie(&state.auth.cookie_keys)) } else { res }
}

fn too_many(
    state: &WebState,
    s: &BrowserSession,
    next: &str,
    email: &str,
    msg: &str,
    wait: u64,
    brand: Option<minijinja::Value>,
) -> Response {
    let mut res = render_login(state, s, StatusCode::TOO_MANY_REQUESTS, next, email, Some(msg), brand);
    if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

pub async fn login(
    State(state): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = state.auth.clock.now();
    let Some(s) = BrowserSession::read(&headers, &state.auth.cookie_keys, now) else {
        return form_expired(&state);
    };
    let pairs = form_pairs(&body);
    if !field(&pairs, "csrf_token").is_some_and(|t| s.csrf_ok(&state.auth.cookie_keys, t)) {
        return form_expired(&state);
    }
    let next = safe_next(field(&pairs, "next"));
    let brand = crate::client_of_next(&state, &next).await.as_ref().and_then(crate::brand_of);
    let limiter = state.auth.limiter.as_ref();
    let limits = state.sign_in_limits;
    let source = source_key(peer.ip());
    // One source may fail only so often, whatever accounts it tries: checked before anything typed is read.
    if let Some(wait) = limits.source_refused(limiter, &source).await {
        state.auth.emit(
            state
                .auth
                .event("ratelimit.refused", Outcome::Denied)
                .ip(peer.ip())
                .detail("limit", "sign_in_failures_by_source"),
        );
        let msg = format!("Too many failed sign-in attempts from this network. Try again in {wait} seconds.");
        return too_many(&state, &s, &next, "", &msg, wait, brand);
    }
    let typed = field(&pairs, "email").unwrap_or("");
    let password = field(&pairs, "password").unwrap_or("");
    // Bounded before it is counted, looked up, audited or hashed: an over-long email or password
    // matches no account, and what was typed is neither kept nor shown back.
    let email = match check_sign_in_input(typed, password) {
        Ok(email) => email,
        Err(e) => {
            if e != SignInInputError::Missing {
                limits.record_failure(limiter, None, &source).await;
                state.auth.emit(
                    state
                        .auth
                        .event("auth.signin", Outcome::Failure)
                        .ip(peer.ip())
                        .detail(
                            "reason",
                            if e == SignInInputError::EmailTooLong { "email_too_long" } else { "password_too_long" },
                        )
                        .detail("email", typed_email_for_audit(typed)),
                );
            }
            return render_login(
                &state,
                &s,
                StatusCode::BAD_REQUEST,
                &next,
                echo_email(typed),
                Some(&e.to_string()),
                brand,
            );
        }
    };
    let password = password.to_owned();
    // Failed attempts are counted per account name (whether or not it exists, so the limit is no
    // oracle) and source, and per account name from every source (a higher ceiling).
    if let Some(wait) = limits.account_refused(limiter, &email, &source).await {
        state.auth.emit(
            state
                .auth
                .event("ratelimit.refused", Outcome::Denied)
                .ip(peer.ip())
                .detail("limit", "sign_in_failures")
                .detail("email", typed_email_for_audit(&email)),
        );
        let msg = format!("Too many failed sign-in attempts for this account. Try again in {wait} seconds.");
        return too_many(&state, &s, &next, &email, &msg, wait, brand);
    }
    let account = match state.auth.store.account_by_email(&email).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "account lookup failed");
            return state.branded_message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "The server could not sign you in right now.",
                brand,
            );
        }
    };
    let phc = account.as_ref().and_then(|a| a.password_hash.clone());
    // argon2 is CPU-heavy: off the async threads. Unknown accounts verify against a dummy hash so both cost the same.
    let ok = tokio::task::spawn_blocking(move || match phc {
        Some(h) => bk_crypto::password::verify_password(&password, &h),
        None => {
            bk_crypto::password::verify_password(&password, bk_crypto::password::dummy_hash());
            false
        }
    })
    .await
    .unwrap_or(false);
    match account {
        Some(a) if ok && a.is_disabled() => {
            // The right password proves who asks, so saying why is no oracle.
            state.auth.emit(
                state
                    .auth
                    .event("auth.signin", Outcome::Denied)
                    .account(&a.id)
                    .ip(peer.ip())
                    .detail("reason", "disabled"),
            );
            let msg = "This account is disabled. Ask the operator of this server.";
            render_login(&state, &s, StatusCode::FORBIDDEN, &next, &email, Some(msg), brand)
        }
        Some(a) if ok => {
            // The password was right; a second factor may still be due (or, required, to be set up).
            match crate::second_factor::after_password(&state, &s, &a, &next, now).await {
                Ok(Some(ask)) => ask,
                Ok(None) => complete_sign_in(&state, &s, &a, &next, peer.ip(), None, &headers).await,
                Err(res) => res,
            }
        }
        _ => {
            limits.record_failure(limiter, Some(&email), &source).await;
            tracing::info!("sign-in failed");
            let mut event = state.auth.event("auth.signin", Outcome::Failure).ip(peer.ip());
            event = match &account {
                Some(a) => event.account(&a.id).detail("email", email.clone()),
                // Nobody's account: keep the address only if it looks like one (not a mistyped password).
                None => event.detail("email", typed_email_for_audit(&email)),
            };
            state.auth.emit(event);
            let msg = "Invalid email or password.";
            render_login(&state, &s, StatusCode::UNAUTHORIZED, &next, &email, Some(msg), brand)
        }
    }
}

/// Signs `account` in in this browser (after its password and, where due, its second factor): the
/// session it had ends, a fresh one is stored and set, the sign-in is audited; off to `next`.
pub(crate) async fn complete_sign_in(
    state: &WebState,
    s: &BrowserSession,
    account: &Account,
    next: &str,
    ip: std::net::IpAddr,
    second_factor: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    let now = state.auth.clock.now();
    // Signing in again in this browser ends the session it had.
    if let Err(e) = state.browser_sessions.sign_out(s, now).await {
        tracing::warn!(error = %e, "ending the previous browser session failed");
    }
    let fresh = match state.browser_sessions.sign_in_from(account.id.clone(), user_agent(headers), now).await {
        Ok(fresh) => fresh,
        Err(e) => {
            tracing::error!(error = %e, "storing the browser session failed");
            return state.message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "The server could not sign you in right now.",
            );
        }
    };
    tracing::info!(account = %account.id, "signed in");
    let mut event = state.auth.event("auth.signin", Outcome::Success).account(&account.id).ip(ip);
    if let Some(how) = second_factor {
        event = event.detail("second_factor", how);
    }
    state.auth.emit(event);
    with_cookie(see_other(next), fresh.set_cookie(&state.auth.cookie_keys))
}

pub async fn signup_form(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let (s, fresh) = session_of(&state, &headers);
    let next = safe_next(q.next.as_deref());
    let brand = crate::brand_of_next(&state, &next).await;
    let res = render_signup(&state, &s, StatusCode::OK, &next, "", None, brand);
    if fresh { with_cookie(res, s.set_cookie(&state.auth.cookie_keys)) } else { res }
}

/// Why the sign-up page did not create an account.
enum SignUpRefused {
    /// The email is registered already. Not shown as such: the answer is the same as a sign-up's.
    EmailTaken,
    /// Shown on the page with this status and message.
    Page(StatusCode, String),
}

/// Creates a password account for the sign-up page: the domain's rules, argon2 off the async threads,
/// then the store. The admin command does the same in the binary's CLI. Every failure but a taken
/// email (server ones included) answers 400, as it always has.
async fn create_account(
    store: &dyn AccountStore,
    email: &str,
    password: String,
    now: i64,
) -> Result<Account, SignUpRefused> {
    let failed = |msg: &str| SignUpRefused::Page(StatusCode::BAD_REQUEST, msg.to_owned());
    let email = check_new_account(email, &password).map_err(|e| failed(&e.to_string()))?;
    // The hash is computed for a taken email too (the store tells at insert), so both take as long.
    let hash = tokio::task::spawn_blocking(move || bk_crypto::password::hash_password(&password))
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| failed("The server could not hash the password."))?;
    let account = Account::with_password(AccountId::generate(), email, hash, now);
    match store.create_account(&account).await {
        Ok(()) => Ok(account),
        Err(StoreError::Conflict(_)) => Err(SignUpRefused::EmailTaken),
        Err(e) => {
            tracing::error!(error = %e, "account creation failed");
            Err(failed("The server could not create the account right now."))
        }
    }
}

/// The answer to every sign-up that was not refused on the page, new email or taken: off to the
/// sign-in page, signed out, so the answer does not tell whether the email was registered.
fn signed_up(next: &str) -> Response {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("next", next).append_pair("signed_up", "1");
    see_other(&format!("/login?{}", q.finish()))
}

pub async fn signup(
    State(state): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = state.auth.clock.now();
    let Some(s) = BrowserSession::read(&headers, &state.auth.cookie_keys, now) else {
        return form_expired(&state);
    };
    let pairs = form_pairs(&body);
    if !field(&pairs, "csrf_token").is_some_and(|t| s.csrf_ok(&state.auth.cookie_keys, t)) {
        return form_expired(&state);
    }
    let next = safe_next(field(&pairs, "next"));
    let email = field(&pairs, "email").unwrap_or("");
    let password = field(&pairs, "password").unwrap_or("").to_owned();
    match create_account(state.auth.store.as_ref(), email, password, now).await {
        Ok(account) => {
            tracing::info!(account = %account.id, "account created by sign-up");
            state.auth.emit(state.auth.event("account.signup", Outcome::Success).account(&account.id).ip(peer.ip()));
            // Mailed after the answer is decided (as for a taken email, which gets nothing).
            crate::account_email::send_verification_for(&state, &account, &next, now).await;
            signed_up(&next)
        }
        Err(SignUpRefused::EmailTaken) => {
            tracing::info!("sign-up with an email already registered");
            // The account's owner sees the attempt in their audit log; the lookup runs after the answer
            // is decided, so it adds nothing to this request's time.
            let (state2, email) = (state.clone(), bk_domain::account::normalize_email(email));
            tokio::spawn(async move {
                let mut event =
                    state2.auth.event("account.signup", Outcome::Denied).ip(peer.ip()).detail("reason", "email_taken");
                if let Ok(Some(a)) = state2.auth.store.account_by_email(&email).await {
                    event = event.account(&a.id);
                }
                state2.auth.emit(event);
            });
            signed_up(&next)
        }
        Err(SignUpRefused::Page(status, msg)) => {
            let brand = crate::brand_of_next(&state, &next).await;
            render_signup(&state, &s, status, &next, echo_email(email), Some(&msg), brand)
        }
    }
}

pub async fn logout(State(state): State<Arc<WebState>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = state.auth.clock.now();
    let Some(s) = BrowserSession::read(&headers, &state.auth.cookie_keys, now) else {
        return see_other("/login");
    };
    let pairs = form_pairs(&body);
    if !field(&pairs, "csrf_token").is_some_and(|t| s.csrf_ok(&state.auth.cookie_keys, t)) {
        return form_expired(&state);
    }
    let clear = BrowserSession::clear_cookie(&state.auth.cookie_keys);
    // Ended server-side, so a copy of the cookie (another tab, a stolen one) is signed out too.
    match state.browser_sessions.sign_out(&s, now).await {
        Ok(ended) => {
            if ended && let Some((account, _)) = &s.account {
                state.auth.emit(state.auth.event("auth.signout", Outcome::Success).account(account));
            }
            with_cookie(see_other("/login"), clear)
        }
        Err(e) => {
            tracing::error!(error = %e, "ending the browser session failed");
            let res = state.message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-out did not complete",
                "The server could not end your session everywhere right now. Try signing out again.",
            );
            with_cookie(res, clear)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_decoded_and_the_first_wins() {
        let pairs = form_pairs(b"email=A%40b.co&next=%2Fconsent%3Fx%3D1&email=second&password=a+b");
        assert_eq!(field(&pairs, "email"), Some("A@b.co"));
        assert_eq!(field(&pairs, "next"), Some("/consent?x=1"));
        assert_eq!(field(&pairs, "password"), Some("a b"));
        assert_eq!(field(&pairs, "csrf_token"), None);
    }
}
