//! Sign-up, sign-in, sign-out and the home page.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bk_domain::account::{Account, NewAccountError, check_new_account, normalize_email};
use bk_domain::audit::Outcome;
use bk_domain::ids::AccountId;
use bk_domain::ports::{AccountStore, StoreError};
use minijinja::context;
use serde::Deserialize;

use crate::{WebState, safe_next, see_other};
use bk_access::browser::BrowserSession;

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

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

/// The signed-in account of a browser session, if the account still exists.
pub(crate) async fn signed_in(state: &WebState, s: &BrowserSession) -> Option<(Account, i64)> {
    let (id, auth_time) = s.account.as_ref()?;
    match state.auth.store.account(id).await {
        Ok(Some(a)) => Some((a, *auth_time)),
        _ => None,
    }
}

fn form_expired(state: &WebState) -> Response {
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
    state.page(
        status,
        "login.html",
        context! { csrf_token => s.csrf_token(&state.auth.cookie_keys), next, email, error, brand },
    )
}

fn render_signup(
    state: &WebState,
    s: &BrowserSession,
    status: StatusCode,
    next: &str,
    email: &str,
    error: Option<&str>,
) -> Response {
    state.page(
        status,
        "signup.html",
        context! { csrf_token => s.csrf_token(&state.auth.cookie_keys), next, email, error },
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
    let res = render_login(&state, &s, StatusCode::OK, &next, "", None, brand);
    if fresh { with_cookie(res, s.set_cookie(&state.auth.cookie_keys)) } else { res }
}

pub async fn login(State(state): State<Arc<WebState>>, headers: HeaderMap, body: Bytes) -> Response {
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
    let email = normalize_email(field(&pairs, "email").unwrap_or(""));
    let password = field(&pairs, "password").unwrap_or("").to_owned();
    if email.is_empty() || password.is_empty() {
        let msg = "Enter your email and password.";
        return render_login(&state, &s, StatusCode::BAD_REQUEST, &next, &email, Some(msg), brand);
    }
    // Failed attempts are counted per account name (whether or not it exists, so the limit is no oracle).
    let wait = state.auth.limiter.retry_after("sign_in_failures", &email, state.login_failures_per_minute, 60).await;
    if let Some(wait) = wait {
        let msg = format!("Too many failed sign-in attempts for this account. Try again in {wait} seconds.");
        let mut res = render_login(&state, &s, StatusCode::TOO_MANY_REQUESTS, &next, &email, Some(&msg), brand);
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        state.auth.emit(
            state
                .auth
                .event("ratelimit.refused", Outcome::Denied)
                .detail("limit", "sign_in_failures")
                .detail("email", email.clone()),
        );
        return res;
    }
    let account = match state.auth.store.account_by_email(&email).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "account lookup failed");
            return state.message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "The server could not sign you in right now.",
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
        Some(a) if ok => {
            tracing::info!(account = %a.id, "signed in");
            state.auth.emit(state.auth.event("auth.signin", Outcome::Success).account(&a.id));
            let fresh = BrowserSession::signed_in(a.id, now);
            with_cookie(see_other(&next), fresh.set_cookie(&state.auth.cookie_keys))
        }
        _ => {
            state.auth.limiter.record("sign_in_failures", &email, state.login_failures_per_minute, 60).await;
            tracing::info!("sign-in failed");
            let mut event = state.auth.event("auth.signin", Outcome::Failure).detail("email", email.clone());
            if let Some(a) = &account {
                event = event.account(&a.id);
            }
            state.auth.emit(event);
            let msg = "Invalid email or password.";
            render_login(&state, &s, StatusCode::UNAUTHORIZED, &next, &email, Some(msg), brand)
        }
    }
}

pub async fn signup_form(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let (s, fresh) = session_of(&state, &headers);
    let next = safe_next(q.next.as_deref());
    let res = render_signup(&state, &s, StatusCode::OK, &next, "", None);
    if fresh { with_cookie(res, s.set_cookie(&state.auth.cookie_keys)) } else { res }
}

/// Creates a password account for the sign-up page: the domain's rules, argon2 off the async threads,
/// then the store. The admin command does the same in the binary's CLI. On failure, the status and the
/// message for the page (a taken email is 409; every other failure, server ones included, has always
/// answered 400).
async fn create_account(
    store: &dyn AccountStore,
    email: &str,
    password: String,
    now: i64,
) -> Result<AccountId, (StatusCode, String)> {
    let refused = |e: NewAccountError| {
        let status = if e == NewAccountError::EmailTaken { StatusCode::CONFLICT } else { StatusCode::BAD_REQUEST };
        (status, e.to_string())
    };
    let failed = |msg: &str| (StatusCode::BAD_REQUEST, msg.to_owned());
    let email = check_new_account(email, &password).map_err(refused)?;
    let hash = tokio::task::spawn_blocking(move || bk_crypto::password::hash_password(&password))
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| failed("The server could not hash the password."))?;
    let account = Account::with_password(AccountId::generate(), email, hash, now);
    match store.create_account(&account).await {
        Ok(()) => Ok(account.id),
        Err(StoreError::Conflict(_)) => Err(refused(NewAccountError::EmailTaken)),
        Err(e) => {
            tracing::error!(error = %e, "account creation failed");
            Err(failed("The server could not create the account right now."))
        }
    }
}

pub async fn signup(State(state): State<Arc<WebState>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = state.auth.clock.now();
    let Some(s) = BrowserSession::read(&headers, &state.auth.cookie_keys, now) else {
        return form_expired(&state);
    };
    let pairs = form_pairs(&body);
    if !field(&pairs, "csrf_token").is_some_and(|t| s.csrf_ok(&state.auth.cookie_keys, t)) {
        return form_expired(&state);
    }
    let next = safe_next(field(&pairs, "next"));
    let email = field(&pairs, "email").unwrap_or("").to_owned();
    let password = field(&pairs, "password").unwrap_or("").to_owned();
    match create_account(state.auth.store.as_ref(), &email, password, now).await {
        Ok(id) => {
            tracing::info!(account = %id, "account created by sign-up");
            state.auth.emit(state.auth.event("account.signup", Outcome::Success).account(&id));
            let fresh = BrowserSession::signed_in(id, now);
            with_cookie(see_other(&next), fresh.set_cookie(&state.auth.cookie_keys))
        }
        Err((status, msg)) => render_signup(&state, &s, status, &next, email.trim(), Some(&msg)),
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
    with_cookie(see_other("/login"), BrowserSession::clear_cookie(&state.auth.cookie_keys))
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
