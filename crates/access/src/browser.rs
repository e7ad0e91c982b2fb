//! The browser session: a signed, HttpOnly, SameSite=Lax cookie holding a random session id and,
//! once signed in, the account id and when the person authenticated. CSRF tokens are an HMAC of
//! the session id, so every form is bound to the cookie that rendered it.

use bk_crypto::mac::MacKey;
use bk_crypto::secret::{b64url, b64url_decode, ct_eq, random_bytes};
use bk_domain::UnixTime;
use bk_domain::ids::AccountId;
use http::{HeaderMap, HeaderValue, header};

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
