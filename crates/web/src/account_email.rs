//! The account lifecycle that goes through a person's mailbox: verifying the address (a link sent at
//! sign-up and on request), resetting a forgotten password (a single-use link valid for 30
//! minutes), changing the password while signed in, and the security notices these send.
//!
//! A link carries a random token; only its digest is stored (`email_tokens`), with the address it
//! was sent to and its purpose, and it works once. A reset request answers the same, in the same
//! time, whether or not an account uses the address: the lookup, the link and the message happen
//! after the answer, in a task of their own.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bk_crypto::secret::{b64url, random_bytes, sha256};
use bk_domain::UnixTime;
use bk_domain::account::{Account, MAX_EMAIL_BYTES, check_password, normalize_email};
use bk_domain::audit::Outcome;
use bk_domain::browser_session::BrowserSessionEnd;
use bk_domain::email_token::{EmailChange, EmailPurpose, StoredEmailToken};
use bk_mail::Email;
use minijinja::context;
use serde::Deserialize;

use crate::pages::{field, session_of, signed_in, with_cookie};
use crate::sign_in_limits::source_key;
use crate::{WebState, see_other};
use bk_access::browser::BrowserSession;

pub(crate) const VERIFY_PATH: &str = "/verify-email";
pub(crate) const RESET_PATH: &str = "/reset-password";
pub(crate) const FORGOT_PATH: &str = "/forgot-password";
pub(crate) const CHANGE_PATH: &str = "/account/email";
pub(crate) const CONFIRM_CHANGE_PATH: &str = "/confirm-email-change";
const SECURITY_PAGE: &str = "/account/security";

/// Verification links a signed-in person may ask for, per account per hour.
const VERIFY_SENDS_PER_HOUR: u32 = 5;
/// Reset requests per source address per hour, and per typed address per hour (whether or not an
/// account uses it: the limit is no oracle).
const RESETS_PER_SOURCE_PER_HOUR: u32 = 20;
const RESETS_PER_ADDRESS_PER_HOUR: u32 = 3;
/// Failed current-password checks per account per minute on the change form.
const PASSWORD_CHANGE_FAILURES_PER_MINUTE: u32 = 5;
/// How recent the sign-in of an account without a password and without an email address must be for
/// it to add an address (its re-authentication: it has no password to type).
const ADD_EMAIL_SIGN_IN_MAX_AGE_SECS: i64 = 15 * 60;

/// What the forgot-password form answers, whatever was typed (once it is a plausible address).
const RESET_REQUESTED: &str = "If an account uses this address, we sent it a link to choose a new password. The link \
                               works once, for 30 minutes. Check your spam folder if it does not arrive.";

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
    /// The authorization request the link was asked for on the way through (sign-up, forgotten
    /// password): the page carries that white-label client's brand and leads back to it.
    next: Option<String>,
}

/// The `next` of an emailed link and its brand: a link asked for on the way through a white-label
/// client's authorization request carries it (see [`link_for`]); any other `next` counts as none.
async fn next_and_brand(state: &WebState, next: Option<&str>) -> (String, Option<minijinja::Value>) {
    let next = crate::safe_next(next);
    match crate::brand_of_next(state, &next).await {
        Some(brand) => (next, Some(brand)),
        None => ("/".to_owned(), None),
    }
}

/// A new link of `purpose` for `account`, stored by digest; the token for the URL.
async fn new_link(state: &WebState, account: &Account, purpose: EmailPurpose, now: UnixTime) -> Option<String> {
    let token = b64url(&random_bytes::<32>());
    let stored = StoredEmailToken::new(
        sha256(token.as_bytes()).to_vec(),
        account.id.clone(),
        purpose,
        account.email.clone(),
        now,
    );
    match state.email_tokens.create_email_token(&stored).await {
        Ok(()) => Some(token),
        Err(e) => {
            tracing::error!(error = %e, purpose = purpose.as_str(), "storing an emailed link failed");
            None
        }
    }
}

fn link(state: &WebState, path: &str, token: &str) -> String {
    format!("{}{path}?token={token}", state.auth.issuer)
}

/// [`link`], carrying `next` when it continues a white-label client's authorization request (so the
/// page the link opens shows that client's brand); otherwise the plain link.
async fn link_for(state: &WebState, path: &str, token: &str, next: &str) -> String {
    let plain = link(state, path, token);
    if crate::brand_of_next(state, next).await.is_none() {
        return plain;
    }
    let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    format!("{plain}&next={next}")
}

/// Sends `account` a link to verify its address (at sign-up, or when asked). False if no link could be made.
pub(crate) async fn send_verification(state: &WebState, account: &Account, now: UnixTime) -> bool {
    send_verification_for(state, account, "/", now).await
}

/// [`send_verification`] for a sign-up on the way to `next`: the link carries it when it continues a
/// white-label client's authorization request.
pub(crate) async fn send_verification_for(state: &WebState, account: &Account, next: &str, now: UnixTime) -> bool {
    let Some(token) = new_link(state, account, EmailPurpose::VerifyEmail, now).await else { return false };
    let url = link_for(state, VERIFY_PATH, &token, next).await;
    state.mail.send_later(Email {
        to: account.email.clone(),
        subject: "Verify your email address".into(),
        text: format!(
            "Hello,\n\nconfirm that {email} is your address by opening this link (it works once, for 24 hours):\n\n\
             {url}\n\nIf you did not create an account at {issuer}, ignore this message.\n",
            email = account.email,
            issuer = state.auth.issuer,
        ),
    });
    true
}

/// A security notice: something changed on the account, and what to do if it was not the owner.
pub(crate) fn notify(state: &WebState, to: &str, subject: &str, what: &str) {
    state.mail.send_later(Email {
        to: to.to_owned(),
        subject: subject.to_owned(),
        text: format!(
            "Hello,\n\n{what}\n\nIf this was you, there is nothing to do. If it was not, reset your password at \
             {issuer}{FORGOT_PATH} and review the apps and tokens that hold access at {issuer}/account.\n",
            issuer = state.auth.issuer,
        ),
    });
}

fn hash_of(token: &str) -> Vec<u8> {
    sha256(token.as_bytes()).to_vec()
}

/// Why a link no longer works, told from what is stored about it.
async fn dead_link(
    state: &WebState,
    token: &str,
    purpose: EmailPurpose,
    now: UnixTime,
    brand: Option<minijinja::Value>,
) -> Response {
    let stored = state.email_tokens.email_token(&hash_of(token)).await.ok().flatten().filter(|t| t.purpose == purpose);
    let again = match purpose {
        EmailPurpose::VerifyEmail => "Ask for a new one on your account's security page.",
        EmailPurpose::ResetPassword => "Ask for a new one on the “Forgot your password?” page.",
        EmailPurpose::ChangeEmail => "Ask for a new one on your account's email page.",
    };
    let (title, why) = match stored {
        Some(t) if t.used_at.is_some() => ("This link was used already", "Each link works once."),
        Some(t) if t.expires_at <= now => ("This link has expired", "Links work for a limited time."),
        _ => ("This link is not valid", "It may have been copied incompletely."),
    };
    state.branded_message(StatusCode::BAD_REQUEST, title, &format!("{why} {again}"), brand)
}

/// `GET /verify-email?token=…`: proves the address the link was sent to.
pub async fn verify_email(State(state): State<Arc<WebState>>, Query(q): Query<TokenQuery>) -> Response {
    let now = state.auth.clock.now();
    let token = q.token.unwrap_or_default();
    let (_, brand) = next_and_brand(&state, q.next.as_deref()).await;
    let used = match state.email_tokens.use_email_token(&hash_of(&token), EmailPurpose::VerifyEmail, now).await {
        Ok(Some(t)) => t,
        Ok(None) => return dead_link(&state, &token, EmailPurpose::VerifyEmail, now, brand).await,
        Err(e) => return unavailable(&state, "verifying the address", &e),
    };
    match state.auth.store.mark_email_verified(&used.account_id, &used.email, now).await {
        Ok(true) => {
            tracing::info!(account = %used.account_id, "email address verified");
            state.auth.emit(state.auth.event("account.email_verified", Outcome::Success).account(&used.account_id));
            let msg = format!("{} is verified. Thank you.", used.email);
            state.branded_message(StatusCode::OK, "Email address verified", &msg, brand)
        }
        Ok(false) => match state.auth.store.account(&used.account_id).await {
            Ok(Some(a)) if a.email == used.email && a.email_verified() => {
                let msg = format!("{} was verified already.", a.email);
                state.branded_message(StatusCode::OK, "Email address verified", &msg, brand)
            }
            _ => state.branded_message(
                StatusCode::BAD_REQUEST,
                "This link is for another address",
                "The account no longer uses the address this link was sent to.",
                brand,
            ),
        },
        Err(e) => unavailable(&state, "verifying the address", &e),
    }
}

/// `POST /account/email/verify`: sends the signed-in person a new verification link.
pub async fn resend_verification(State(state): State<Arc<WebState>>, headers: HeaderMap, body: Bytes) -> Response {
    let (account, _, _) = match crate::pages::signed_in_form(&state, &headers, &body, SECURITY_PAGE).await {
        Ok(found) => found,
        Err(res) => return res,
    };
    if account.email_verified() {
        return back("error", "already_verified");
    }
    if state.auth.limiter.acquire("verify_email_sends", account.id.as_str(), VERIFY_SENDS_PER_HOUR, 3600).await.is_err()
    {
        return back("error", "too_many");
    }
    if !send_verification(&state, &account, state.auth.clock.now()).await {
        return state.message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "The server could not send the link right now.",
        );
    }
    state.auth.emit(state.auth.event("account.email_verification_sent", Outcome::Success).account(&account.id));
    back("notice", "verification_sent")
}

/// `POST /account/password`: a signed-in person changes their password, proving the current one.
/// Every other browser session ends; this one continues under a new session id.
pub async fn change_password(
    State(state): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (account, _, pairs) = match crate::pages::signed_in_form(&state, &headers, &body, SECURITY_PAGE).await {
        Ok(found) => found,
        Err(res) => return res,
    };
    let new = field(&pairs, "new_password").unwrap_or("").to_owned();
    if let Err(e) = check_password(&new) {
        return back("error", e.code());
    }
    match check_current_password(&state, &account, field(&pairs, "current_password").unwrap_or("")).await {
        CurrentPassword::Right => {}
        CurrentPassword::TooMany => return back("error", "too_many"),
        CurrentPassword::Wrong => {
            state.auth.emit(
                state
                    .auth
                    .event("account.password_changed", Outcome::Failure)
                    .account(&account.id)
                    .ip(peer.ip())
                    .detail("reason", "wrong_current_password"),
            );
            return back("error", "wrong_password");
        }
    }
    let now = state.auth.clock.now();
    if let Err(res) = replace_password(&state, &account, new, now).await {
        return res;
    }
    // This browser goes on under a fresh session id (the old one ended with the others).
    let fresh =
        match state.browser_sessions.sign_in_from(account.id.clone(), crate::pages::user_agent(&headers), now).await {
            Ok(f) => f,
            Err(e) => return unavailable(&state, "signing this browser in again", &e),
        };
    state.auth.emit(state.auth.event("account.password_changed", Outcome::Success).account(&account.id).ip(peer.ip()));
    notify(
        &state,
        &account.email,
        "Your password was changed",
        "the password of your account was changed, and every browser signed in to it was signed out.",
    );
    with_cookie(back("notice", "password_changed"), fresh.set_cookie(&state.auth.cookie_keys))
}

/// What the current password typed into a form proved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CurrentPassword {
    Right,
    Wrong,
    /// Too many wrong ones this minute: not even checked.
    TooMany,
}

/// Checks the current password a signed-in person typed to confirm a change (password, address,
/// second factor): argon2 off the async threads; five wrong ones a minute per account.
pub(crate) async fn check_current_password(state: &WebState, account: &Account, typed: &str) -> CurrentPassword {
    const BUCKET: &str = "password_change_failures";
    let limiter = state.auth.limiter.as_ref();
    if limiter.retry_after(BUCKET, account.id.as_str(), PASSWORD_CHANGE_FAILURES_PER_MINUTE, 60).await.is_some() {
        return CurrentPassword::TooMany;
    }
    let (typed, phc) = (typed.to_owned(), account.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || {
        typed.len() <= 1024 && phc.is_some_and(|h| bk_crypto::password::verify_password(&typed, &h))
    })
    .await
    .unwrap_or(false);
    if ok {
        return CurrentPassword::Right;
    }
    limiter.record(BUCKET, account.id.as_str(), PASSWORD_CHANGE_FAILURES_PER_MINUTE, 60).await;
    CurrentPassword::Wrong
}

/// Hashes and stores a new password, then ends every browser session of the account.
async fn replace_password(state: &WebState, account: &Account, new: String, now: UnixTime) -> Result<(), Response> {
    let hash = tokio::task::spawn_blocking(move || bk_crypto::password::hash_password(&new))
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| {
            state.message(StatusCode::INTERNAL_SERVER_ERROR, "Try again", "The server could not hash the password.")
        })?;
    match state.auth.store.set_password(&account.id, &hash).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(state.message(StatusCode::NOT_FOUND, "No such account", "The account no longer exists."));
        }
        Err(e) => return Err(unavailable(state, "storing the password", &e)),
    }
    if let Err(e) = state.browser_sessions.end_all_of(&account.id, BrowserSessionEnd::PasswordChanged, now).await {
        // The password is changed; sessions the server could not end are reported, not hidden.
        tracing::error!(error = %e, account = %account.id, "ending browser sessions after a password change failed");
        return Err(state.message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Password changed, sessions not ended",
            "Your password was changed, but the server could not sign out your other browsers. Use “Sign out everywhere” on the security page.",
        ));
    }
    Ok(())
}

/// `GET /forgot-password`.
pub async fn forgot_form(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    Query(q): Query<crate::second_factor::NextQuery>,
) -> Response {
    let (s, fresh) = session_of(&state, &headers);
    let (next, brand) = next_and_brand(&state, q.next.as_deref()).await;
    let res = render_forgot(&state, &s, StatusCode::OK, "", None, None, (&next, brand));
    if fresh { with_cookie(res, s.set_cookie(&state.auth.cookie_keys)) } else { res }
}

fn render_forgot(
    state: &WebState,
    s: &BrowserSession,
    status: StatusCode,
    email: &str,
    error: Option<&str>,
    notice: Option<&str>,
    (next, brand): (&str, Option<minijinja::Value>),
) -> Response {
    state.page(
        status,
        "forgot.html",
        context! { csrf_token => s.csrf_token(&state.auth.cookie_keys), email, error, notice, next, brand },
    )
}

/// `POST /forgot-password`: the same answer, in the same time, for every plausible address.
pub async fn forgot(
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
    let (next, brand) = next_and_brand(&state, field(&pairs, "next")).await;
    let typed = field(&pairs, "email").unwrap_or("");
    let email = normalize_email(typed);
    if email.len() > MAX_EMAIL_BYTES || !bk_domain::account::is_valid_email(&email) {
        return render_forgot(
            &state,
            &s,
            StatusCode::BAD_REQUEST,
            "",
            Some("Enter the email address of your account."),
            None,
            (&next, brand),
        );
    }
    let limiter = state.auth.limiter.as_ref();
    if limiter
        .acquire("password_resets_by_source", &source_key(peer.ip()), RESETS_PER_SOURCE_PER_HOUR, 3600)
        .await
        .is_err()
    {
        let res = render_forgot(
            &state,
            &s,
            StatusCode::TOO_MANY_REQUESTS,
            &email,
            Some("Too many reset requests from this network. Try again later."),
            None,
            (&next, brand),
        );
        return res;
    }
    // Counted per typed address whether or not it is an account's; over the limit, nothing more is
    // sent, and the answer is still the same.
    let address_key = bk_crypto::secret::hex(&sha256(email.as_bytes()));
    let send =
        limiter.acquire("password_resets_by_address", &address_key, RESETS_PER_ADDRESS_PER_HOUR, 3600).await.is_ok();
    if send {
        let state2 = state.clone();
        let ip = peer.ip();
        let next2 = next.clone();
        tokio::spawn(async move { send_reset(&state2, &email, &next2, ip, now).await });
    }
    render_forgot(&state, &s, StatusCode::OK, "", None, Some(RESET_REQUESTED), (&next, brand))
}

async fn send_reset(state: &WebState, email: &str, next: &str, ip: std::net::IpAddr, now: UnixTime) {
    let account = match state.auth.store.account_by_email(email).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            state.auth.emit(
                state
                    .auth
                    .event("account.password_reset_requested", Outcome::Denied)
                    .ip(ip)
                    .detail("reason", "no_such_account"),
            );
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "account lookup for a password reset failed");
            return;
        }
    };
    let Some(token) = new_link(state, &account, EmailPurpose::ResetPassword, now).await else { return };
    let url = link_for(state, RESET_PATH, &token, next).await;
    state.auth.emit(state.auth.event("account.password_reset_requested", Outcome::Success).account(&account.id).ip(ip));
    state.mail.send_later(Email {
        to: account.email.clone(),
        subject: "Reset your password".into(),
        text: format!(
            "Hello,\n\nsomeone (you, we hope) asked to reset the password of the account {email} at {issuer}.\n\
             Choose a new password here (the link works once, for 30 minutes):\n\n{url}\n\n\
             If you did not ask for this, ignore this message: your password stays as it is.\n",
            email = account.email,
            issuer = state.auth.issuer,
        ),
    });
}

/// `GET /reset-password?token=…`: the new-password form, if the link still works (not used up by
/// opening it: mail scanners open links).
pub async fn reset_form(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    let now = state.auth.clock.now();
    let token = q.token.unwrap_or_default();
    let (next, brand) = next_and_brand(&state, q.next.as_deref()).await;
    match state.email_tokens.email_token(&hash_of(&token)).await {
        Ok(Some(t)) if t.purpose == EmailPurpose::ResetPassword && t.is_usable(now) => {}
        Ok(_) => return dead_link(&state, &token, EmailPurpose::ResetPassword, now, brand).await,
        Err(e) => return unavailable(&state, "reading the reset link", &e),
    }
    let (s, fresh) = session_of(&state, &headers);
    let res = render_reset(&state, &s, StatusCode::OK, &token, None, (&next, brand));
    if fresh { with_cookie(res, s.set_cookie(&state.auth.cookie_keys)) } else { res }
}

fn render_reset(
    state: &WebState,
    s: &BrowserSession,
    status: StatusCode,
    token: &str,
    error: Option<&str>,
    (next, brand): (&str, Option<minijinja::Value>),
) -> Response {
    state.page(
        status,
        "reset.html",
        context! { csrf_token => s.csrf_token(&state.auth.cookie_keys), token, error, next, brand },
    )
}

/// `POST /reset-password`: uses the link (once), sets the password, ends every browser session,
/// and sends the person to sign in.
pub async fn reset(
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
    let token = field(&pairs, "token").unwrap_or("").to_owned();
    let new = field(&pairs, "new_password").unwrap_or("").to_owned();
    let (next, brand) = next_and_brand(&state, field(&pairs, "next")).await;
    // The password is checked before the link is used, so a too-short one does not spend it.
    if let Err(e) = check_password(&new) {
        return render_reset(&state, &s, StatusCode::BAD_REQUEST, &token, Some(&e.to_string()), (&next, brand));
    }
    let used = match state.email_tokens.use_email_token(&hash_of(&token), EmailPurpose::ResetPassword, now).await {
        Ok(Some(t)) => t,
        Ok(None) => return dead_link(&state, &token, EmailPurpose::ResetPassword, now, brand).await,
        Err(e) => return unavailable(&state, "using the reset link", &e),
    };
    let account = match state.auth.store.account(&used.account_id).await {
        Ok(Some(a)) if a.email == used.email => a,
        Ok(_) => {
            return state.branded_message(
                StatusCode::BAD_REQUEST,
                "This link is for another address",
                "The account no longer uses the address this link was sent to.",
                brand,
            );
        }
        Err(e) => return unavailable(&state, "reading the account", &e),
    };
    if let Err(res) = replace_password(&state, &account, new, now).await {
        return res;
    }
    // Other reset links sent before this one die with it; following this one proved the mailbox.
    if let Err(e) = state.email_tokens.void_email_tokens(&account.id, EmailPurpose::ResetPassword, now).await {
        tracing::warn!(error = %e, "voiding other reset links failed");
    }
    if let Err(e) = state.auth.store.mark_email_verified(&account.id, &used.email, now).await {
        tracing::warn!(error = %e, "marking the address verified after a reset failed");
    }
    tracing::info!(account = %account.id, "password reset");
    state.auth.emit(state.auth.event("account.password_reset", Outcome::Success).account(&account.id).ip(peer.ip()));
    notify(
        &state,
        &account.email,
        "Your password was reset",
        "the password of your account was reset through a link sent to this address, and every browser signed in to it was signed out.",
    );
    // This browser is signed out too (it may hold a session of the account from before).
    let _ = state.browser_sessions.sign_out(&s, now).await;
    // Back to sign in on the way to the authorization request the reset was asked for, if any.
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    if next != "/" {
        q.append_pair("next", &next);
    }
    q.append_pair("reset", "1");
    with_cookie(see_other(&format!("/login?{}", q.finish())), BrowserSession::clear_cookie(&state.auth.cookie_keys))
}

/// Back to the security page with a notice or error code (the page words it).
fn back(kind: &str, code: &str) -> Response {
    see_other(&format!("{SECURITY_PAGE}?{kind}={code}"))
}

fn unavailable(state: &WebState, doing: &str, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "{doing} failed");
    state.message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        "The server could not do this right now. Try again in a moment.",
    )
}

/// `GET /account/email`: the form to move the account to another address.
pub async fn change_email_form(State(state): State<Arc<WebState>>, headers: HeaderMap) -> Response {
    let (s, _) = session_of(&state, &headers);
    match signed_in(&state, &s).await {
        Some((account, _)) => render_change(&state, &s, &account, StatusCode::OK, "", None, None),
        None => see_other(&format!(
            "/login?next={}",
            url::form_urlencoded::byte_serialize(CHANGE_PATH.as_bytes()).collect::<String>()
        )),
    }
}

/// An account created by a wallet that has neither an email address (only the placeholder) nor a
/// password: it adds its first address without a current password (it has none), provided it
/// signed in recently.
fn adds_first_email(account: &Account) -> bool {
    bk_domain::wallet::is_placeholder_email(&account.email) && account.password_hash.is_none()
}

/// Whether a sign-in at `auth_time` stands in for the current password at `now` (see
/// [`ADD_EMAIL_SIGN_IN_MAX_AGE_SECS`]).
fn signed_in_recently(auth_time: UnixTime, now: UnixTime) -> bool {
    now - auth_time <= ADD_EMAIL_SIGN_IN_MAX_AGE_SECS
}

fn render_change(
    state: &WebState,
    s: &BrowserSession,
    account: &Account,
    status: StatusCode,
    new_email: &str,
    error: Option<&str>,
    notice: Option<&str>,
) -> Response {
    state.page(
        status,
        "email_change.html",
        context! {
            csrf_token => s.csrf_token(&state.auth.cookie_keys), email => account.email.clone(),
            verified => account.email_verified(), new_email, error, notice,
            adding => adds_first_email(account),
        },
    )
}

/// `POST /account/email`: with the current password, sends a link to the new address; following it
/// moves the account there. The answer is the same whether or not the address is taken (the link
/// then fails when followed, saying why).
///
/// An account a wallet created, with no address and no password, adds its first address here the
/// same way (a link to the address, the placeholder kept until it is followed); instead of a
/// current password it must have signed in within the last 15 minutes (a stolen, older session
/// cannot attach an attacker's mailbox, and through it a password reset).
pub async fn change_email(
    State(state): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, pairs) = match crate::pages::csrf_form(&state, &headers, &body) {
        Ok(found) => found,
        Err(res) => return *res,
    };
    let Some((account, auth_time)) = signed_in(&state, &s).await else {
        let next: String = url::form_urlencoded::byte_serialize(SECURITY_PAGE.as_bytes()).collect();
        return see_other(&format!("/login?next={next}"));
    };
    let typed = field(&pairs, "new_email").unwrap_or("");
    let new_email = normalize_email(typed);
    let echo = if typed.len() <= MAX_EMAIL_BYTES { typed.trim() } else { "" };
    let refuse = |status, msg: &str| render_change(&state, &s, &account, status, echo, Some(msg), None);
    if new_email.len() > MAX_EMAIL_BYTES || !bk_domain::account::is_valid_email(&new_email) {
        return refuse(StatusCode::BAD_REQUEST, "Enter a valid email address.");
    }
    if new_email == account.email {
        return refuse(StatusCode::BAD_REQUEST, "That is your address already.");
    }
    if adds_first_email(&account) {
        if !signed_in_recently(auth_time, state.auth.clock.now()) {
            state.auth.emit(
                state
                    .auth
                    .event("account.email_change_requested", Outcome::Denied)
                    .account(&account.id)
                    .ip(peer.ip())
                    .detail("reason", "sign_in_too_old"),
            );
            return refuse(
                StatusCode::UNAUTHORIZED,
                "For your safety, sign out and sign in again with your wallet, then add the address within 15 minutes.",
            );
        }
    } else {
        match check_current_password(&state, &account, field(&pairs, "current_password").unwrap_or("")).await {
            CurrentPassword::Right => {}
            CurrentPassword::TooMany => {
                return refuse(StatusCode::TOO_MANY_REQUESTS, "Too many attempts. Wait a minute and try again.");
            }
            CurrentPassword::Wrong => {
                return refuse(StatusCode::UNAUTHORIZED, "The current password is not correct.");
            }
        }
    }
    if state.auth.limiter.acquire("verify_email_sends", account.id.as_str(), VERIFY_SENDS_PER_HOUR, 3600).await.is_err()
    {
        return refuse(StatusCode::TOO_MANY_REQUESTS, "Too many links sent this hour. Try again later.");
    }
    let now = state.auth.clock.now();
    let token = b64url(&random_bytes::<32>());
    let stored =
        StoredEmailToken::new(hash_of(&token), account.id.clone(), EmailPurpose::ChangeEmail, new_email.clone(), now);
    if let Err(e) = state.email_tokens.create_email_token(&stored).await {
        return unavailable(&state, "storing an address-change link", &e);
    }
    // An account without an address is named by what it is, never by its placeholder.
    let old = crate::siwe::account_label(&state, &account).await;
    state.mail.send_later(Email {
        to: new_email.clone(),
        subject: "Confirm your new email address".into(),
        text: format!(
            "Hello,\n\nthe account {old} at {issuer} asked to use this address ({new}) from now on. Confirm it by \
             opening this link (it works once, for 24 hours):\n\n{url}\n\nIf you did not ask for this, ignore this message.\n",
            new = new_email,
            issuer = state.auth.issuer,
            url = link(&state, CONFIRM_CHANGE_PATH, &token),
        ),
    });
    state
        .auth
        .emit(state.auth.event("account.email_change_requested", Outcome::Success).account(&account.id).ip(peer.ip()));
    let notice = format!("We sent a link to {new_email}. Your address changes when you open it (within 24 hours).");
    render_change(&state, &s, &account, StatusCode::OK, "", None, Some(&notice))
}

/// `GET /confirm-email-change?token=…`: moves the account to the address the link was sent to.
pub async fn confirm_email_change(State(state): State<Arc<WebState>>, Query(q): Query<TokenQuery>) -> Response {
    let now = state.auth.clock.now();
    let token = q.token.unwrap_or_default();
    match state.email_tokens.use_email_change(&hash_of(&token), now).await {
        Ok(EmailChange::Changed { account_id, old_email, new_email }) => {
            tracing::info!(account = %account_id, "email address changed");
            state.auth.emit(state.auth.event("account.email_changed", Outcome::Success).account(&account_id));
            // The old address hears of it (someone who took over a session could otherwise move it quietly);
            // a wallet account had none (its placeholder is never mailed).
            if !bk_domain::wallet::is_placeholder_email(&old_email) {
                notify(
                    &state,
                    &old_email,
                    "Your email address was changed",
                    &format!("the address of your account was changed to {new_email}."),
                );
            }
            state.message(
                StatusCode::OK,
                "Email address changed",
                &format!("Your account now uses {new_email}, verified."),
            )
        }
        Ok(EmailChange::Taken { .. }) => state.message(
            StatusCode::CONFLICT,
            "That address is taken",
            "Another account uses that address now, so yours was not changed.",
        ),
        Ok(EmailChange::Dead) => dead_link(&state, &token, EmailPurpose::ChangeEmail, now, None).await,
        Err(e) => unavailable(&state, "changing the address", &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_recent_sign_in_stands_in_for_the_password() {
        let signed_in = 1_000_000;
        assert!(signed_in_recently(signed_in, signed_in));
        assert!(signed_in_recently(signed_in, signed_in + ADD_EMAIL_SIGN_IN_MAX_AGE_SECS));
        assert!(!signed_in_recently(signed_in, signed_in + ADD_EMAIL_SIGN_IN_MAX_AGE_SECS + 1));
        assert!(!signed_in_recently(signed_in, signed_in + 86_400));
    }

    #[test]
    fn only_an_account_without_address_and_password_adds_one_without_a_password() {
        let wallet = bk_domain::wallet::new_wallet_account(bk_domain::ids::AccountId::from_string("acc_w"), 1);
        assert!(adds_first_email(&wallet));
        let with_password = Account { password_hash: Some("$argon2id$…".into()), ..wallet.clone() };
        assert!(!adds_first_email(&with_password));
        let with_email = Account { email: "someone@example.com".into(), ..wallet };
        assert!(!adds_first_email(&with_email));
    }
}
