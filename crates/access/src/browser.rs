//! The browser session: a signed, HttpOnly, SameSite=Lax cookie holding a random session id and,
//! once signed in, the account id and when the person authenticated. CSRF tokens are an HMAC of
//! the session id, so every form is bound to the cookie that rendered it.
//!
//! A signed-in session is also kept server-side ([`BrowserSessions`], by the digest of its id), and
//! every request that acts on the cookie's sign-in checks it there: signing out ends the session for
//! every copy of the cookie, on every instance within a second. The account's security page lists
//! its live sessions (by a handle derived from the digest, never the id or the digest itself) and
//! ends one, or all of them.

use std::sync::Arc;

use bk_crypto::mac::MacKey;
use bk_crypto::secret::{b64url, b64url_decode, ct_eq, random_bytes, sha256, sha256_parts};
use bk_domain::UnixTime;
use bk_domain::browser_session::{BrowserSessionEnd, StoredBrowserSession, bounded_user_agent};
use bk_domain::ids::AccountId;
use bk_domain::ports::{BrowserSessionStore, StoreError};
use http::{HeaderMap, HeaderValue, header};

use crate::cache::TtlCache;

pub const COOKIE: &str = "bk_session";
const LIFETIME_SECS: i64 = 12 * 3600;

#[derive(Clone, Debug)]
pub struct BrowserSession {
    pub sid: String,
    pub account: Option<(AccountId, UnixTime)>,
    pub expires_at: UnixTime,
}

pub struct CookieKeys {
    pub cookie: MacKey,
    pub csrf: MacKey,
    pub secure: bool,
}

impl CookieKeys {
    /// The cookie and CSRF keys, derived from the master key (the same on every instance).
    pub fn derive(master: &[u8; 32], secure: bool) -> Self {
        Self { cookie: MacKey::derive(master, "browser-session-cookie"), csrf: MacKey::derive(master, "csrf"), secure }
    }
}

impl BrowserSession {
    pub fn anonymous(now: UnixTime) -> Self {
        Self { sid: b64url(&random_bytes::<18>()), account: None, expires_at: now + LIFETIME_SECS }
    }

    /// A fresh session id on sign-in, so a session id planted before sign-in is worthless.
    pub fn signed_in(account: AccountId, now: UnixTime) -> Self {
        Self { sid: b64url(&random_bytes::<18>()), account: Some((account, now)), expires_at: now + LIFETIME_SECS }
    }

    pub fn read(headers: &HeaderMap, keys: &CookieKeys, now: UnixTime) -> Option<Self> {
        for value in headers.get_all(header::COOKIE) {
            let Ok(s) = value.to_str() else { continue };
            for part in s.split(';') {
                let Some((name, v)) = part.trim().split_once('=') else {
                    continue;
                };
                if name == COOKIE
                    && let Some(sess) = Self::decode(v, keys, now)
                {
                    return Some(sess);
                }
            }
        }
        None
    }

    fn decode(v: &str, keys: &CookieKeys, now: UnixTime) -> Option<Self> {
        let (payload, tag) = v.split_once('.')?;
        if !keys.cookie.verify(payload.as_bytes(), &b64url_decode(tag)?) {
            return None;
        }
        let raw = String::from_utf8(b64url_decode(payload)?).ok()?;
        let mut it = raw.split('|');
        let (ver, sid, acc, at, exp) = (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
        if ver != "v1" || it.next().is_some() {
            return None;
        }
        let expires_at: UnixTime = exp.parse().ok()?;
        if expires_at <= now {
            return None;
        }
        let account = if acc.is_empty() { None } else { Some((AccountId::from_string(acc), at.parse().ok()?)) };
        Some(Self { sid: sid.to_owned(), account, expires_at })
    }

    pub fn set_cookie(&self, keys: &CookieKeys) -> HeaderValue {
        let (acc, at) = match &self.account {
            Some((a, t)) => (a.as_str().to_owned(), t.to_string()),
            None => (String::new(), String::new()),
        };
        let payload = b64url(format!("v1|{}|{}|{}|{}", self.sid, acc, at, self.expires_at).as_bytes());
        let tag = b64url(&keys.cookie.sign(payload.as_bytes()));
        let secure = if keys.secure { "; Secure" } else { "" };
        let cookie =
            format!("{COOKIE}={payload}.{tag}; Path=/; HttpOnly; SameSite=Lax; Max-Age={LIFETIME_SECS}{secure}");
        HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static("bk_session=; Path=/"))
    }

    pub fn clear_cookie(keys: &CookieKeys) -> HeaderValue {
        let secure = if keys.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"))
            .unwrap_or_else(|_| HeaderValue::from_static("bk_session=; Path=/; Max-Age=0"))
    }

    pub fn csrf_token(&self, keys: &CookieKeys) -> String {
        b64url(&keys.csrf.sign(format!("csrf|{}", self.sid).as_bytes()))
    }

    pub fn csrf_ok(&self, keys: &CookieKeys, presented: &str) -> bool {
        match b64url_decode(presented) {
            Some(tag) => ct_eq(&keys.csrf.sign(format!("csrf|{}", self.sid).as_bytes()), &tag),
            None => false,
        }
    }
}

/// How often a session's "last seen" time is written (a page view within this of the last write
/// writes nothing).
const SEEN_EVERY_SECS: i64 = 300;

/// The handle a page names a stored session by: derived from its digest (so neither the cookie's
/// session id nor the database key ever reaches a page or a form), stable, 22 characters.
pub fn session_handle(id_hash: &[u8]) -> String {
    b64url(&sha256_parts(&[b"bk-browser-session-handle|", id_hash])[..16])
}

/// What ending one session of an account did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndedSession {
    /// No live session of this account has that handle (another account's, ended, or unknown).
    NotFound,
    /// Ended; `current`: it was the session of the browser that asked.
    Ended { current: bool },
}

/// How long this instance trusts what it last read about a browser session: the longest a sign-out
/// on another instance goes unseen here (the same bound as access-token sessions).
const LIVE_TTL_MS: i64 = 500;
const MAX_CACHED: usize = 50_000;

/// Signed-in browser sessions, checked against the store on every request that acts on them.
pub struct BrowserSessions {
    store: Arc<dyn BrowserSessionStore>,
    live: TtlCache<[u8; 32], Option<StoredBrowserSession>>,
}

impl BrowserSessions {
    pub fn new(store: Arc<dyn BrowserSessionStore>) -> Self {
        Self { store, live: TtlCache::new("browser_sessions", LIVE_TTL_MS, MAX_CACHED) }
    }

    /// Signs `account` in: a fresh session id (so one planted before sign-in is worthless), stored.
    pub async fn sign_in(&self, account: AccountId, now: UnixTime) -> Result<BrowserSession, StoreError> {
        self.sign_in_from(account, None, now).await
    }

    /// Signs `account` in from a browser whose `User-Agent` header is `user_agent` (kept bounded, so
    /// the security page can tell the person's browsers apart).
    pub async fn sign_in_from(
        &self,
        account: AccountId,
        user_agent: Option<&str>,
        now: UnixTime,
    ) -> Result<BrowserSession, StoreError> {
        let session = BrowserSession::signed_in(account.clone(), now);
        let stored = StoredBrowserSession {
            id_hash: sha256(session.sid.as_bytes()).to_vec(),
            account_id: account,
            created_at: now,
            expires_at: session.expires_at,
            ended_at: None,
            user_agent: user_agent.and_then(bounded_user_agent),
            last_seen_at: Some(now),
        };
        self.store.create_browser_session(&stored).await?;
        Ok(session)
    }

    /// The cookie's session with its sign-in kept only if the server still holds it live (not signed
    /// out, not ended by a password change, not expired, same account). A session the server does not
    /// know stays usable for CSRF on the sign-in form, as an anonymous one.
    pub async fn check(&self, mut session: BrowserSession, now_ms: i64) -> Result<BrowserSession, StoreError> {
        let Some((account, _)) = &session.account else { return Ok(session) };
        let key = sha256(session.sid.as_bytes());
        let stored = match self.live.get(&key, now_ms) {
            Some(s) => s,
            None => {
                let s = self.store.browser_session(&key).await?;
                self.live.put(key, s.clone(), now_ms);
                s
            }
        };
        let live = stored.is_some_and(|s| s.account_id == *account && s.is_live(now_ms.div_euclid(1000)));
        if !live {
            session.account = None;
        }
        Ok(session)
    }

    /// Signs this session out everywhere; true if it was signed in.
    pub async fn sign_out(&self, session: &BrowserSession, now: UnixTime) -> Result<bool, StoreError> {
        if session.account.is_none() {
            return Ok(false);
        }
        let key = sha256(session.sid.as_bytes());
        let ended = self.store.end_browser_session(&key, BrowserSessionEnd::SignedOut, now).await;
        self.live.remove(&key);
        ended
    }

    /// Notes that a page saw this signed-in session at `now` (and its browser's `User-Agent`, kept
    /// if none is yet): written at most every few minutes per session. Best effort: a failure is
    /// logged, never shown.
    pub async fn seen(&self, session: &BrowserSession, user_agent: Option<&str>, now_ms: i64) {
        let Some((account, _)) = &session.account else { return };
        let key = sha256(session.sid.as_bytes());
        let stored = match self.live.get(&key, now_ms) {
            Some(s) => s,
            None => match self.store.browser_session(&key).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "reading a browser session failed");
                    return;
                }
            },
        };
        let now = now_ms.div_euclid(1000);
        let Some(mut stored) = stored.filter(|s| s.account_id == *account && s.is_live(now)) else { return };
        let ua = user_agent.and_then(bounded_user_agent);
        let stale = stored.last_seen_at.is_none_or(|t| now - t >= SEEN_EVERY_SECS);
        if !stale && (stored.user_agent.is_some() || ua.is_none()) {
            return;
        }
        if let Err(e) = self.store.touch_browser_session(&key, ua.as_deref(), now).await {
            tracing::warn!(error = %e, "noting when a browser session was seen failed");
            return;
        }
        stored.last_seen_at = Some(now);
        if stored.user_agent.is_none() {
            stored.user_agent = ua;
        }
        self.live.put(key, Some(stored), now_ms);
    }

    /// The account's live browser sessions, newest first.
    pub async fn list_of(&self, account: &AccountId, now: UnixTime) -> Result<Vec<StoredBrowserSession>, StoreError> {
        // Idle ones are signed out already, though their rows say nothing of it yet.
        Ok(self.store.list_browser_sessions_of(account, now).await?.into_iter().filter(|s| s.is_live(now)).collect())
    }

    /// Is `stored` the session of this cookie?
    pub fn is_current(session: &BrowserSession, stored: &StoredBrowserSession) -> bool {
        ct_eq(&sha256(session.sid.as_bytes()), &stored.id_hash)
    }

    /// Ends the live session of `account` named by `handle` ([`session_handle`]), seen from the
    /// browser of `current`. The store matches the account too, so a handle of another account's
    /// session changes nothing, exactly like an unknown one.
    pub async fn end_one_of(
        &self,
        account: &AccountId,
        handle: &str,
        current: &BrowserSession,
        now: UnixTime,
    ) -> Result<EndedSession, StoreError> {
        let listed = self.store.list_browser_sessions_of(account, now).await?;
        let Some(target) = listed.into_iter().find(|s| ct_eq(session_handle(&s.id_hash).as_bytes(), handle.as_bytes()))
        else {
            return Ok(EndedSession::NotFound);
        };
        let ended =
            self.store.end_browser_session_of(account, &target.id_hash, BrowserSessionEnd::EndedByOwner, now).await;
        if let Ok(key) = <[u8; 32]>::try_from(target.id_hash.as_slice()) {
            self.live.remove(&key);
        }
        Ok(if ended? {
            EndedSession::Ended { current: Self::is_current(current, &target) }
        } else {
            EndedSession::NotFound
        })
    }

    /// Ends every browser session of an account (a password change); how many were open.
    pub async fn end_all_of(
        &self,
        account: &AccountId,
        why: BrowserSessionEnd,
        now: UnixTime,
    ) -> Result<u64, StoreError> {
        let n = self.store.end_browser_sessions_of(account, why, now).await;
        // Entries are keyed by session digest; ending every session of an account is rare enough to drop them all.
        self.live.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    /// The store as a map (the SQL adapter is tested by the store suite).
    #[derive(Default)]
    struct MemoryStore(Mutex<HashMap<Vec<u8>, StoredBrowserSession>>);

    #[async_trait::async_trait]
    impl BrowserSessionStore for MemoryStore {
        async fn create_browser_session(&self, s: &StoredBrowserSession) -> Result<(), StoreError> {
            self.0.lock().unwrap().insert(s.id_hash.clone(), s.clone());
            Ok(())
        }
        async fn browser_session(&self, id_hash: &[u8]) -> Result<Option<StoredBrowserSession>, StoreError> {
            Ok(self.0.lock().unwrap().get(id_hash).cloned())
        }
        async fn end_browser_session(&self, h: &[u8], _: BrowserSessionEnd, now: UnixTime) -> Result<bool, StoreError> {
            Ok(self.0.lock().unwrap().get_mut(h).is_some_and(|s| s.ended_at.replace(now).is_none()))
        }
        async fn end_browser_sessions_of(
            &self,
            a: &AccountId,
            _: BrowserSessionEnd,
            now: UnixTime,
        ) -> Result<u64, StoreError> {
            let mut n = 0;
            for s in self.0.lock().unwrap().values_mut().filter(|s| s.account_id == *a && s.ended_at.is_none()) {
                s.ended_at = Some(now);
                n += 1;
            }
            Ok(n)
        }
        async fn list_browser_sessions_of(
            &self,
            a: &AccountId,
            now: UnixTime,
        ) -> Result<Vec<StoredBrowserSession>, StoreError> {
            let mut v: Vec<_> =
                self.0.lock().unwrap().values().filter(|s| s.account_id == *a && s.is_live(now)).cloned().collect();
            v.sort_by(|x, y| y.created_at.cmp(&x.created_at).then(x.id_hash.cmp(&y.id_hash)));
            Ok(v)
        }
        async fn end_browser_session_of(
            &self,
            a: &AccountId,
            h: &[u8],
            _: BrowserSessionEnd,
            now: UnixTime,
        ) -> Result<bool, StoreError> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .get_mut(h)
                .is_some_and(|s| s.account_id == *a && s.ended_at.replace(now).is_none()))
        }
        async fn touch_browser_session(&self, h: &[u8], ua: Option<&str>, now: UnixTime) -> Result<(), StoreError> {
            if let Some(s) = self.0.lock().unwrap().get_mut(h).filter(|s| s.ended_at.is_none()) {
                s.last_seen_at = Some(now);
                if s.user_agent.is_none() {
                    s.user_agent = ua.map(str::to_owned);
                }
            }
            Ok(())
        }
    }

    fn account() -> AccountId {
        AccountId::from_string("acc_1")
    }

    #[tokio::test]
    async fn a_signed_out_session_is_anonymous_on_every_instance() {
        let store = Arc::new(MemoryStore::default());
        let (here, there) = (BrowserSessions::new(store.clone()), BrowserSessions::new(store.clone()));
        let s = here.sign_in(account(), 1_000).await.unwrap();
        assert!(store.0.lock().unwrap().keys().all(|k| k.as_slice() != s.sid.as_bytes()), "only the digest is stored");
        assert!(there.check(s.clone(), 1_000_000).await.unwrap().account.is_some(), "signed in on the other instance");
        assert!(here.sign_out(&s, 1_001).await.unwrap());
        let checked = here.check(s.clone(), 1_001_000).await.unwrap();
        assert!(checked.account.is_none(), "signed out here at once");
        assert_eq!(checked.sid, s.sid, "the session id stays (CSRF on the sign-in form)");
        // The other instance trusted its read for at most LIVE_TTL_MS.
        assert!(there.check(s.clone(), 1_000_000 + LIVE_TTL_MS).await.unwrap().account.is_none());
        assert!(!here.sign_out(&s, 1_002).await.unwrap(), "already signed out");
    }

    #[tokio::test]
    async fn an_idle_session_is_signed_out() {
        use bk_domain::browser_session::IDLE_TIMEOUT_SECS;
        let sessions = BrowserSessions::new(Arc::new(MemoryStore::default()));
        let s = sessions.sign_in(account(), 1_000).await.unwrap();
        let at = |secs: i64| (1_000 + secs) * 1000;
        // Seen an hour in: the idle timeout counts from there.
        sessions.seen(&s, None, at(3600)).await;
        let fresh = BrowserSessions::new(sessions.store.clone());
        assert!(fresh.check(s.clone(), at(3600 + IDLE_TIMEOUT_SECS - 1)).await.unwrap().account.is_some());
        let later = BrowserSessions::new(sessions.store.clone());
        assert!(later.check(s.clone(), at(3600 + IDLE_TIMEOUT_SECS)).await.unwrap().account.is_none(), "idle");
        assert!(later.list_of(&account(), 1_000 + 3600 + IDLE_TIMEOUT_SECS).await.unwrap().is_empty(), "not listed");
    }

    #[tokio::test]
    async fn unknown_expired_or_foreign_sessions_are_anonymous() {
        let sessions = BrowserSessions::new(Arc::new(MemoryStore::default()));
        // A validly signed cookie the server never stored (issued before sign-out existed, or forged with the key).
        let unknown = BrowserSession::signed_in(account(), 1_000);
        assert!(sessions.check(unknown, 1_000_000).await.unwrap().account.is_none());
        let s = sessions.sign_in(account(), 1_000).await.unwrap();
        assert!(sessions.check(s.clone(), 1_060_000).await.unwrap().account.is_some());
        let late = BrowserSessions::new(sessions.store.clone());
        assert!(late.check(s.clone(), s.expires_at * 1000).await.unwrap().account.is_none(), "expired");
        // The same session id claiming another account.
        let mut other = s.clone();
        other.account = Some((AccountId::from_string("acc_2"), 1_000));
        assert!(late.check(other, 1_000_000).await.unwrap().account.is_none());
        // Anonymous sessions are never looked up.
        let anon = BrowserSession::anonymous(1_000);
        assert!(sessions.check(anon, 1_000_000).await.unwrap().account.is_none());
    }

    #[tokio::test]
    async fn ending_every_session_of_an_account() {
        let store = Arc::new(MemoryStore::default());
        let sessions = BrowserSessions::new(store);
        let (a, b) =
            (sessions.sign_in(account(), 1_000).await.unwrap(), sessions.sign_in(account(), 1_000).await.unwrap());
        assert!(sessions.check(a.clone(), 1_000_000).await.unwrap().account.is_some());
        assert_eq!(sessions.end_all_of(&account(), BrowserSessionEnd::PasswordChanged, 1_001).await.unwrap(), 2);
        for s in [a, b] {
            assert!(sessions.check(s, 1_001_000).await.unwrap().account.is_none());
        }
    }

    #[tokio::test]
    async fn an_account_ends_only_its_own_sessions_by_handle() {
        let store = Arc::new(MemoryStore::default());
        let sessions = BrowserSessions::new(store.clone());
        let mine = sessions.sign_in_from(account(), Some("Firefox/140"), 1_000).await.unwrap();
        let other = sessions.sign_in(account(), 1_001).await.unwrap();
        let bobs = sessions.sign_in(AccountId::from_string("acc_2"), 1_002).await.unwrap();
        let listed = sessions.list_of(&account(), 1_100).await.unwrap();
        assert_eq!(listed.len(), 2, "bob's session is not alice's");
        assert_eq!(listed[1].user_agent.as_deref(), Some("Firefox/140"));
        assert!(BrowserSessions::is_current(&mine, &listed[1]) && !BrowserSessions::is_current(&mine, &listed[0]));
        let handle = |s: &BrowserSession| session_handle(&sha256(s.sid.as_bytes()));
        assert_eq!(handle(&mine).len(), 22);
        assert!(!handle(&mine).contains(&mine.sid), "the handle is not the session id");

        // Alice cannot end bob's session with its handle; nothing changes.
        assert_eq!(
            sessions.end_one_of(&account(), &handle(&bobs), &mine, 1_100).await.unwrap(),
            EndedSession::NotFound
        );
        assert!(sessions.check(bobs.clone(), 1_100_000).await.unwrap().account.is_some());
        assert_eq!(sessions.end_one_of(&account(), "nonsense", &mine, 1_100).await.unwrap(), EndedSession::NotFound);

        // She ends her other browser's session, then her own.
        assert_eq!(
            sessions.end_one_of(&account(), &handle(&other), &mine, 1_100).await.unwrap(),
            EndedSession::Ended { current: false }
        );
        assert!(sessions.check(other.clone(), 1_100_000).await.unwrap().account.is_none(), "ended at once here");
        assert_eq!(
            sessions.end_one_of(&account(), &handle(&other), &mine, 1_101).await.unwrap(),
            EndedSession::NotFound,
            "already ended"
        );
        assert_eq!(
            sessions.end_one_of(&account(), &handle(&mine), &mine, 1_102).await.unwrap(),
            EndedSession::Ended { current: true }
        );
        assert!(sessions.check(mine, 1_102_000).await.unwrap().account.is_none());
    }

    #[tokio::test]
    async fn seen_notes_the_browser_and_writes_at_most_every_few_minutes() {
        let store = Arc::new(MemoryStore::default());
        let sessions = BrowserSessions::new(store.clone());
        let s = sessions.sign_in(account(), 1_000).await.unwrap();
        let stored = || store.0.lock().unwrap().get(&sha256(s.sid.as_bytes()).to_vec()).cloned().unwrap();
        assert_eq!(stored().last_seen_at, Some(1_000));
        sessions.seen(&s, Some("Chromium/150\n"), 1_010_000).await;
        assert_eq!((stored().user_agent.as_deref(), stored().last_seen_at), (Some("Chromium/150"), Some(1_010)));
        sessions.seen(&s, Some("Other/1"), 1_100_000).await;
        assert_eq!((stored().user_agent.as_deref(), stored().last_seen_at), (Some("Chromium/150"), Some(1_010)));
        sessions.seen(&s, None, 1_010_000 + SEEN_EVERY_SECS * 1000).await;
        assert_eq!(stored().last_seen_at, Some(1_010 + SEEN_EVERY_SECS));
        // A session that is not signed in, or ended, is never touched.
        sessions.seen(&BrowserSession::anonymous(1_000), Some("x"), 2_000_000).await;
        assert!(sessions.sign_out(&s, 2_000).await.unwrap());
        sessions.seen(&s, None, 3_000_000).await;
        assert_eq!(stored().last_seen_at, Some(1_010 + SEEN_EVERY_SECS));
    }
}
