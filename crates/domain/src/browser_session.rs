//! Browser sessions: a person signed in to these pages in one browser. The cookie carries a random
//! session id; the server keeps only its digest, the account and the session's lifetime, so that
//! signing out (and, later, changing the password) ends the session for every copy of the cookie,
//! not just in the browser that asked.

use crate::UnixTime;
use crate::ids::AccountId;

/// A signed-in browser session as stored (never the session id itself, only its digest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBrowserSession {
    /// SHA-256 of the session id the cookie carries.
    pub id_hash: Vec<u8>,
    pub account_id: AccountId,
    /// When the person signed in.
    pub created_at: UnixTime,
    /// The cookie's own expiry: the session ends then even if nobody signs out.
    pub expires_at: UnixTime,
    pub ended_at: Option<UnixTime>,
    /// The browser's `User-Agent` as it was first seen (bounded, printable), shown on the account's
    /// security page so the person can tell their browsers apart. `None` until known.
    pub user_agent: Option<String>,
    /// When a page of this site last saw the session (at most every few minutes, not every request).
    pub last_seen_at: Option<UnixTime>,
}

/// The most browser sessions of one account a listing returns (newest first).
pub const MAX_LISTED_BROWSER_SESSIONS: i64 = 100;

/// The longest `User-Agent` kept with a browser session, in characters.
pub const MAX_USER_AGENT_CHARS: usize = 256;

/// A `User-Agent` header as kept with a session: printable characters only, at most
/// [`MAX_USER_AGENT_CHARS`]; `None` when nothing printable is left.
pub fn bounded_user_agent(raw: &str) -> Option<String> {
    let ua: String = raw.chars().filter(|c| !c.is_control()).take(MAX_USER_AGENT_CHARS).collect();
    let ua = ua.trim();
    (!ua.is_empty()).then(|| ua.to_owned())
}

/// A signed-in browser not seen for this long is signed out (the idle timeout; the cookie's own
/// lifetime, 12 hours, is the absolute one). Pages note a session as seen at most every five
/// minutes, so it ends between 115 and 120 minutes after the last page.
pub const IDLE_TIMEOUT_SECS: i64 = 2 * 3600;

impl StoredBrowserSession {
    /// May a request carrying this session act as its account at `now`: not ended, not past its
    /// absolute expiry, and seen (or signed in) within the idle timeout?
    pub fn is_live(&self, now: UnixTime) -> bool {
        let last_active = self.last_seen_at.unwrap_or(self.created_at).max(self.created_at);
        self.ended_at.is_none() && now < self.expires_at && now - last_active < IDLE_TIMEOUT_SECS
    }
}

/// Why a browser session ended before it expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrowserSessionEnd {
    /// The person signed out in that browser.
    SignedOut,
    /// The account's password changed: every browser must sign in again.
    PasswordChanged,
    /// The person ended this session from another browser (the security page's "End").
    EndedByOwner,
    /// The person signed out everywhere (every browser session of the account, this one included).
    SignedOutEverywhere,
}

impl BrowserSessionEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            BrowserSessionEnd::SignedOut => "signed_out",
            BrowserSessionEnd::PasswordChanged => "password_changed",
            BrowserSessionEnd::EndedByOwner => "ended_by_owner",
            BrowserSessionEnd::SignedOutEverywhere => "signed_out_everywhere",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(expires_at: UnixTime, ended_at: Option<UnixTime>) -> StoredBrowserSession {
        StoredBrowserSession {
            id_hash: vec![1; 32],
            account_id: AccountId::from_string("acc_1"),
            created_at: 100,
            expires_at,
            ended_at,
            user_agent: None,
            last_seen_at: None,
        }
    }

    #[test]
    fn live_until_it_expires() {
        assert!(session(200, None).is_live(100));
        assert!(session(200, None).is_live(199));
        assert!(!session(200, None).is_live(200), "expiry is exclusive");
        assert!(!session(200, None).is_live(10_000));
    }

    #[test]
    fn an_idle_session_is_not_live() {
        let mut s = session(100 + 12 * 3600, None);
        assert!(s.is_live(100 + IDLE_TIMEOUT_SECS - 1), "signed in, never seen since: live until the idle timeout");
        assert!(!s.is_live(100 + IDLE_TIMEOUT_SECS), "idle");
        s.last_seen_at = Some(100 + 3600);
        assert!(s.is_live(100 + 3600 + IDLE_TIMEOUT_SECS - 1), "seen: the idle timeout counts from then");
        assert!(!s.is_live(100 + 3600 + IDLE_TIMEOUT_SECS));
        assert!(!s.is_live(100 + 12 * 3600), "the absolute expiry holds whatever was seen");
    }

    #[test]
    fn an_ended_session_is_never_live() {
        assert!(!session(200, Some(150)).is_live(120), "ended: dead even before its end time is reached");
        assert!(!session(200, Some(150)).is_live(160));
    }

    #[test]
    fn end_reasons_have_stable_names() {
        assert_eq!(BrowserSessionEnd::SignedOut.as_str(), "signed_out");
        assert_eq!(BrowserSessionEnd::PasswordChanged.as_str(), "password_changed");
        assert_eq!(BrowserSessionEnd::EndedByOwner.as_str(), "ended_by_owner");
        assert_eq!(BrowserSessionEnd::SignedOutEverywhere.as_str(), "signed_out_everywhere");
    }

    #[test]
    fn user_agents_are_bounded_and_printable() {
        assert_eq!(bounded_user_agent("  Mozilla/5.0 (X11)  ").as_deref(), Some("Mozilla/5.0 (X11)"));
        assert_eq!(bounded_user_agent("a\u{0}b\nc").as_deref(), Some("abc"));
        assert_eq!(bounded_user_agent(" \t "), None);
        assert_eq!(bounded_user_agent(&"x".repeat(1000)).map(|u| u.chars().count()), Some(MAX_USER_AGENT_CHARS));
    }
}
