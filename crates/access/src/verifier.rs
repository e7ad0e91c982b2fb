//! Bearer verification for the resource faces (the MCP gateway, userinfo, the REST API) and introspection.
//!
//! Access tokens (RS256 JWTs): signature by `kid` (keys parsed once), RFC 9068 claims, audience,
//! and a live session. Personal access tokens (`bkp_…`): looked up by digest, with their session.
//!
//! Bounded caches keep this cheap: verified JWTs by digest (the RSA verification runs once per token,
//! not per request), and session status / PAT lookups for at most `LIVE_TTL_MS`, which bounds how
//! long a revoked session's tokens keep working (within one second, on every instance).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bk_crypto::keyring::{KeyRing, KeySet};
use bk_crypto::secret::{sha256, token_hash};
use bk_domain::access::{AccessTokenClaims, Clock};
use bk_domain::grant::GrantKind;
use bk_domain::ids::SessionId;
use bk_domain::ports::{PatStore, SessionStatus, SessionStore};
use bk_domain::scope::ScopeSet;

use crate::AccessContext;
use crate::cache::TtlCache;

const LIVE_TTL_MS: i64 = 500;
const MAX_CACHED: usize = 50_000;
pub const PAT_PREFIX: &str = "bkp_";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the access token is malformed or its signature is invalid")]
    Invalid,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token was issued by another issuer")]
    WrongIssuer,
    #[error("the access token is not meant for this resource")]
    WrongAudience,
    #[error("the token has been revoked (it, or the sign-in or app it was made with)")]
    Revoked,
    #[error("the server could not check the token")]
    Unavailable,
    #[error("the access token names an unknown signing key")]
    UnknownKey,
}

struct VerifiedToken {
    claims: Arc<AccessTokenClaims>,
    scopes: ScopeSet,
}

/// What a PAT's digest found: a usable PAT, one revoked (itself or the session that made it), or
/// nothing (then the token is not a PAT of this server).
#[derive(Clone)]
enum PatLookup {
    Live(Box<LivePat>),
    Revoked,
    Unknown,
}

/// A PAT as found in the store, reduced to what requests need.
#[derive(Clone)]
struct LivePat {
    context: AccessContext,
    expires_at: Option<i64>,
}

/// Where the key ring comes from, so a verifier that meets an unknown `kid` (a key generated or
/// rotated by another instance) can reload it.
#[async_trait::async_trait]
pub trait KeySource: Send + Sync {
    async fn load(&self) -> Result<KeyRing, String>;
}

/// Reloads at most this often, so forged `kid`s cannot turn into a database load.
const RELOAD_INTERVAL_MS: i64 = 5_000;

pub struct Verifier {
    keys: Arc<KeySet>,
    source: Option<Arc<dyn KeySource>>,
    last_reload_ms: std::sync::atomic::AtomicI64,
    sessions_store: Arc<dyn SessionStore>,
    pat_store: Arc<dyn PatStore>,
    clock: Arc<dyn Clock>,
    issuer: String,
    tokens: Mutex<HashMap<[u8; 32], Arc<VerifiedToken>>>,
    sessions: TtlCache<SessionId, Option<SessionStatus>>,
    pats: TtlCache<[u8; 32], PatLookup>,
}

impl Verifier {
    pub fn new(
        keys: Arc<KeySet>,
        source: Option<Arc<dyn KeySource>>,
        sessions_store: Arc<dyn SessionStore>,
        pat_store: Arc<dyn PatStore>,
        clock: Arc<dyn Clock>,
        issuer: String,
    ) -> Self {
        Self {
            keys,
            source,
            last_reload_ms: std::sync::atomic::AtomicI64::new(i64::MIN / 2),
            sessions_store,
            pat_store,
            clock,
            issuer,
            tokens: Mutex::default(),
            sessions: TtlCache::new(LIVE_TTL_MS, MAX_CACHED),
            pats: TtlCache::new(LIVE_TTL_MS, MAX_CACHED),
        }
    }

    /// Verifies a bearer credential (access token or PAT) meant for one of `audiences`.
    /// PATs are not audience-bound: they act for their account wherever scopes allow.
    pub async fn verify_bearer(&self, token: &str, audiences: &[&str]) -> Result<AccessContext, VerifyError> {
        if token.starts_with(PAT_PREFIX) {
            return self.verify_pat(token).await;
        }
        self.verify_jwt(token, audiences).await
    }

    /// Verifies an access token for `audience` and checks that its session is live.
    pub async fn verify(&self, token: &str, audience: &str) -> Result<AccessContext, VerifyError> {
        self.verify_jwt(token, &[audience]).await
    }

    async fn verify_jwt(&self, token: &str, audiences: &[&str]) -> Result<AccessContext, VerifyError> {
        let now_ms = self.clock.now_ms();
        let now = now_ms.div_euclid(1000);
        let verified = match self.verified_token(token) {
            Err(VerifyError::UnknownKey) if self.reload_keys(now_ms).await => self.verified_token(token)?,
            other => other?,
        };
        let c = &verified.claims;
        if c.exp <= now {
            return Err(VerifyError::Expired);
        }
        if c.iss != self.issuer {
            return Err(VerifyError::WrongIssuer);
        }
        let aud = c.aud.trim_end_matches('/');
        if !audiences.iter().any(|a| a.trim_end_matches('/') == aud) {
            return Err(VerifyError::WrongAudience);
        }
        let sid = SessionId::from_string(c.sid.clone());
        let status = self.session_status(&sid, now_ms).await?;
        match status {
            Some(s) if s.active && s.account_id.as_str() == c.sub && s.client_id.as_str() == c.client_id => {
                Ok(AccessContext {
                    account_id: s.account_id,
                    email: s.email,
                    client_id: s.client_id,
                    session_id: sid,
                    scopes: verified.scopes.clone(),
                    restrictions: s.restrictions,
                    kind: GrantKind::OAuth,
                    client_providers: s.client_providers,
                    claims: Some(c.clone()),
                })
            }
            _ => Err(VerifyError::Revoked),
        }
    }

    async fn verify_pat(&self, token: &str) -> Result<AccessContext, VerifyError> {
        let now_ms = self.clock.now_ms();
        let key = sha256(token.as_bytes());
        let live = match self.pats.get(&key, now_ms) {
            Some(p) => p,
            None => {
                let found = self.pat_store.pat_by_hash(&token_hash(token)).await.map_err(|e| {
                    tracing::error!(error = %e, "PAT lookup failed");
                    VerifyError::Unavailable
                })?;
                let live = match found {
                    None => PatLookup::Unknown,
                    Some((pat, grant, _)) if pat.revoked_at.is_some() || !grant.is_active() => PatLookup::Revoked,
                    Some((pat, grant, email)) => PatLookup::Live(Box::new(LivePat {
                        expires_at: pat.expires_at,
                        context: AccessContext {
                            account_id: grant.account_id.clone(),
                            email,
                            client_id: grant.client_id.clone(),
                            session_id: grant.id.clone(),
                            scopes: grant.scopes.clone(),
                            restrictions: grant.restrictions.clone(),
                            kind: GrantKind::PersonalAccessToken,
                            client_providers: None,
                            claims: None,
                        },
                    })),
                };
                self.pats.put(key, live.clone(), now_ms);
                live
            }
        };
        match live {
            PatLookup::Live(p) if p.expires_at.is_none_or(|e| e > now_ms.div_euclid(1000)) => Ok(p.context.clone()),
            PatLookup::Live(_) => Err(VerifyError::Expired),
            // Said as it is: a person who revoked a token should read that it was revoked.
            PatLookup::Revoked => Err(VerifyError::Revoked),
            PatLookup::Unknown => Err(VerifyError::Invalid),
        }
    }

    /// Signature and claim decoding, cached by token digest.
    fn verified_token(&self, token: &str) -> Result<Arc<VerifiedToken>, VerifyError> {
        let key = sha256(token.as_bytes());
        if let Some(v) = self.lock_tokens().get(&key) {
            return Ok(v.clone());
        }
        let claims: AccessTokenClaims =
            bk_crypto::jwt::verify(&self.keys.current(), token, "at+jwt").map_err(|e| match e {
                bk_crypto::jwt::JwtError::UnknownKey => VerifyError::UnknownKey,
                _ => VerifyError::Invalid,
            })?;
        let v = Arc::new(VerifiedToken { scopes: ScopeSet::parse_lenient(&claims.scope), claims: Arc::new(claims) });
        let mut cache = self.lock_tokens();
        if cache.len() >= MAX_CACHED {
            let now = self.clock.now();
            cache.retain(|_, t| t.claims.exp > now);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(key, v.clone());
        Ok(v)
    }

    async fn session_status(&self, sid: &SessionId, now_ms: i64) -> Result<Option<SessionStatus>, VerifyError> {
        if let Some(status) = self.sessions.get(sid, now_ms) {
            return Ok(status);
        }
        let status = self.sessions_store.session_status(sid).await.map_err(|e| {
            tracing::error!(error = %e, "session lookup failed");
            VerifyError::Unavailable
        })?;
        self.sessions.put(sid.clone(), status.clone(), now_ms);
        Ok(status)
    }

    /// Drops cached state of a session so a revocation on this instance is seen at once.
    pub fn forget_session(&self, sid: &SessionId) {
        self.sessions.remove(sid);
        // PAT entries are keyed by token digest; a revoked PAT session is rare enough to drop them all.
        self.pats.clear();
    }

    /// Decodes a token signed by us without checking expiry or session (revocation needs the `sid`
    /// of expired tokens too).
    pub fn decode_unchecked_expiry(&self, token: &str) -> Option<AccessTokenClaims> {
        bk_crypto::jwt::verify(&self.keys.current(), token, "at+jwt").ok()
    }

    /// Reloads the key ring from its source (rate-limited); true if it changed.
    async fn reload_keys(&self, now_ms: i64) -> bool {
        use std::sync::atomic::Ordering;
        let Some(source) = &self.source else { return false };
        let last = self.last_reload_ms.load(Ordering::Relaxed);
        if now_ms - last < RELOAD_INTERVAL_MS
            || self.last_reload_ms.compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Relaxed).is_err()
        {
            return false;
        }
        match source.load().await {
            Ok(ring) => {
                tracing::info!("signing keys reloaded (a token named a key this instance did not know)");
                self.keys.replace(ring);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "reloading signing keys failed");
                false
            }
        }
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<VerifiedToken>>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }
}
