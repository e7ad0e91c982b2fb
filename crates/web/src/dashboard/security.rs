//! `GET /account/security`: the account's browser sessions (each with its browser, when it signed
//! in, was last seen and expires; "End" for one, "Sign out everywhere" for all, this browser
//! included), the email address and whether it is verified (with the form that sends the link
//! again), and the password change form. The two account forms post to `/account/email/verify`
//! and `/account/password` (`account_email`), which come back here with `?notice=` or `?error=`
//! codes this page words; an unknown code shows nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bk_access::browser::{BrowserSession, BrowserSessions, EndedSession, session_handle};
use bk_domain::account::NewAccountError;
use bk_domain::audit::Outcome;
use bk_domain::browser_session::BrowserSessionEnd;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::{Dashboard, Flash, SECURITY, When, form_viewer, ser, viewer, when};
use crate::pages::{form_pairs, with_cookie};
use crate::see_other;

#[derive(Deserialize, Default)]
pub struct SecurityQuery {
    notice: Option<String>,
    error: Option<String>,
}

/// What the page says for the codes the account forms (and this page's own) come back with.
pub(crate) fn flash_of(notice: Option<&str>, error: Option<&str>, email: &str) -> Flash {
    let notice = match notice {
        Some("password_changed") => Some("Your password was changed. Every other browser was signed out.".to_owned()),
        Some("verification_sent") => Some(format!("We sent a verification link to {email}. It works for 24 hours.")),
        Some("email_verified") => Some("Your email address is verified.".to_owned()),
        Some("session_ended") => Some("That browser was signed out.".to_owned()),
        Some("second_factor_removed") => {
            Some("Two-factor sign-in is off: signing in asks only for the password.".to_owned())
        }
        _ => None,
    };
    let error = match error {
        Some("wrong_password") => Some("The current password is not correct.".to_owned()),
        Some("password_too_short") => Some(NewAccountError::PasswordTooShort.to_string()),
        Some("password_too_long") => Some(NewAccountError::PasswordTooLong.to_string()),
        Some("too_many") => Some("Too many attempts. Wait a minute and try again.".to_owned()),
        Some("already_verified") => Some("Your email address is verified already.".to_owned()),
        _ => None,
    };
    Flash { notice, error }
}

/// A browser, in words, from its `User-Agent` ("Firefox on Linux").
pub(crate) fn browser_of(ua: Option<&str>) -> String {
    let Some(ua) = ua else { return "Unknown browser".to_owned() };
    let has = |s: &str| ua.contains(s);
    let browser = if has("Edg/") {
        Some("Edge")
    } else if has("OPR/") || has("Opera") {
        Some("Opera")
    } else if has("Firefox/") {
        Some("Firefox")
    } else if has("Chrome/") || has("Chromium/") {
        Some("Chrome")
    } else if has("Safari/") {
        Some("Safari")
    } else {
        None
    };
    let os = if has("Windows") {
        Some("Windows")
    } else if has("iPhone") || has("iPad") {
        Some("iOS")
    } else if has("Android") {
        Some("Android")
    } else if has("Mac OS X") || has("Macintosh") {
        Some("macOS")
    } else if has("CrOS") {
        Some("ChromeOS")
    } else if has("Linux") {
        Some("Linux")
    } else {
        None
    };
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_owned(),
        (None, Some(o)) => format!("A browser on {o}"),
        (None, None) => "Unknown browser".to_owned(),
    }
}

#[derive(Serialize)]
struct SessionView {
    handle: String,
    browser: String,
    user_agent: Option<String>,
    current: bool,
    signed_in: When,
    expires: When,
    last_seen: Option<When>,
}

pub async fn page(State(s): State<Arc<Dashboard>>, headers: HeaderMap, Query(q): Query<SecurityQuery>) -> Response {
    let v = match viewer(&s, &headers, SECURITY).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    let now = s.web.auth.clock.now();
    let stored = match s.web.browser_sessions.list_of(&v.account.id, now).await {
        Ok(list) => list,
        Err(e) => return s.unavailable("listing browser sessions", &e),
    };
    let mut sessions: Vec<SessionView> = stored
        .iter()
        .map(|b| SessionView {
            handle: session_handle(&b.id_hash),
            browser: browser_of(b.user_agent.as_deref()),
            user_agent: b.user_agent.clone(),
            current: BrowserSessions::is_current(&v.session, b),
            signed_in: when(b.created_at),
            expires: when(b.expires_at),
            last_seen: b.last_seen_at.map(when),
        })
        .collect();
    // This browser first, then the others, newest first.
    sessions.sort_by_key(|s| !s.current);
    let flash = flash_of(q.notice.as_deref(), q.error.as_deref(), &v.account.email);
    let totp_enabled = s.web.second_factors.totp(&v.account.id).await.ok().flatten().is_some();
    let passkey_count = s.web.passkeys.passkeys_of(&v.account.id).await.map(|k| k.len()).unwrap_or(0);
    let wallet_count = crate::siwe::wallets_of(&s.web, &v.account.id).await.len();
    s.render(
        &v,
        StatusCode::OK,
        "account_security.html",
        SECURITY,
        flash,
        context! {
            sessions => ser(&sessions),
            account_email => v.account.email.clone(),
            email_verified => v.account.email_verified(),
            has_password => v.account.password_hash.is_some(),
            has_email => !bk_domain::wallet::is_placeholder_email(&v.account.email),
            totp_enabled, passkey_count, wallet_count,
        },
    )
}

/// Signed out: the cookie cleared, and off to the sign-in page.
fn signed_out(s: &Dashboard) -> Response {
    with_cookie(see_other("/login"), BrowserSession::clear_cookie(&s.web.auth.cookie_keys))
}

/// `POST /account/sessions/{handle}/end`: ends one browser session of this account.
pub async fn end_one(
    State(s): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(handle): Path<String>,
    body: Bytes,
) -> Response {
    let form = form_pairs(&body);
    let v = match form_viewer(&s, &headers, &form, SECURITY).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    let now = s.web.auth.clock.now();
    match s.web.browser_sessions.end_one_of(&v.account.id, &handle, &v.session, now).await {
        Ok(EndedSession::NotFound) => s.not_found("browser session"),
        Ok(EndedSession::Ended { current }) => {
            tracing::info!(account = %v.account.id, current, "browser session ended by its account");
            s.api.emit(
                v.caller()
                    .stamp(s.api.event("auth.signout", Outcome::Success))
                    .detail("scope", if current { "this_browser" } else { "another_browser" })
                    .detail("reason", BrowserSessionEnd::EndedByOwner.as_str()),
            );
            if current { signed_out(&s) } else { see_other(&format!("{SECURITY}?notice=session_ended")) }
        }
        Err(e) => s.unavailable("ending a browser session", &e),
    }
}

/// `POST /account/sessions/end-all`: "Sign out everywhere" — every browser session of the
/// account, this one included.
pub async fn end_all(State(s): State<Arc<Dashboard>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = form_pairs(&body);
    let v = match form_viewer(&s, &headers, &form, SECURITY).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    let now = s.web.auth.clock.now();
    match s.web.browser_sessions.end_all_of(&v.account.id, BrowserSessionEnd::SignedOutEverywhere, now).await {
        Ok(n) => {
            tracing::info!(account = %v.account.id, sessions = n, "signed out everywhere");
            s.api.emit(
                v.caller()
                    .stamp(s.api.event("auth.signout", Outcome::Success))
                    .detail("scope", "everywhere")
                    .detail("sessions", n),
            );
            signed_out(&s)
        }
        Err(e) => s.unavailable("signing out everywhere", &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_are_named() {
        for (ua, name) in [
            ("Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0", "Firefox on Linux"),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/150.0 Safari/537.36 Edg/150.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1",
                "Safari on iOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 15) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/150.0 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1.15",
                "Safari on macOS",
            ),
            ("curl/8.0", "Unknown browser"),
        ] {
            assert_eq!(browser_of(Some(ua)), name, "{ua}");
        }
        assert_eq!(browser_of(None), "Unknown browser");
    }

    #[test]
    fn every_code_has_its_words_and_unknown_codes_none() {
        let f = flash_of(Some("verification_sent"), None, "a@b.co");
        assert_eq!(f.notice.as_deref(), Some("We sent a verification link to a@b.co. It works for 24 hours."));
        for (code, text) in [
            ("password_changed", "Your password was changed. Every other browser was signed out."),
            ("email_verified", "Your email address is verified."),
        ] {
            assert_eq!(flash_of(Some(code), None, "x").notice.as_deref(), Some(text));
        }
        for (code, text) in [
            ("wrong_password", "The current password is not correct."),
            ("password_too_short", "The password must be at least 8 characters long."),
            ("password_too_long", "The password must be at most 1024 bytes long."),
            ("too_many", "Too many attempts. Wait a minute and try again."),
            ("already_verified", "Your email address is verified already."),
        ] {
            assert_eq!(flash_of(None, Some(code), "x").error.as_deref(), Some(text), "{code}");
        }
        let unknown = flash_of(Some("<script>"), Some("nonsense"), "x");
        assert_eq!((unknown.notice, unknown.error), (None, None));
    }
}
