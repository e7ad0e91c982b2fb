//! Access-token verification for resource servers (the MCP gateway) and introspection:
//! signature by `kid` (keys parsed once), RFC 9068 claims, audience, and a live session.
//!
//! Two bounded caches keep this cheap: verified tokens by digest (so the RSA verification runs once
//! per token, not per request) and session status by id for at most `SESSION_TTL_MS`, which bounds
//! how long a revoked session's tokens keep working (within one second, on every instance).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bk_crypto::keyring::KeyRing;
use bk_crypto::secret::sha256;
use bk_domain::access::{AccessTokenClaims, Clock};
use bk_domain::ids::{AccountId, ClientId, SessionId};
use bk_domain::scope::ScopeSet;
use bk_store::{SessionStatus, Store};

const SESSION_TTL_MS: i64 = 500;
const MAX_CACHED: usize = 50_000;

/// Who is calling, established once per request and carried in its extensions.
#[derive(Clone, Debug)]
pub struct AccessContext {
    pub account_id: AccountId,
    pub email: String,
    pub client_id: ClientId,
    pub session_id: SessionId,
    pub scopes: ScopeSet,
    pub claims: Arc<AccessTokenClaims>,
}

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
    #[error("the access token's session has been revoked")]
    Revoked,
    #[error("the server could not check the token")]
    Unavailable,
}

struct VerifiedToken {
    claims: Arc<AccessTokenClaims>,
    scopes: ScopeSet,
}

pub struct Verifier {
    keys: Arc<KeyRing>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    issuer: String,
    tokens: Mutex<HashMap<[u8; 32], Arc<VerifiedToken>>>,
    sessions: Mutex<HashMap<SessionId, (i64, Option<SessionStatus>)>>,
}

impl Verifier {
    pub fn new(
        keys: Arc<KeyRing>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        issuer: String,
    ) -> Self {
        Self {
            keys,
            store,
            clock,
            issuer,
            tokens: Mutex::default(),
            sessions: Mutex::default(),
        }
    }

    /// Verifies a bearer access token for `audience` and checks that its session is live.
    pub async fn verify(&self, token: &str, audience: &str) -> Result<AccessContext, VerifyError> {
        let now_ms = self.clock.now_ms();
        let now = now_ms.div_euclid(1000);
        let verified = self.verified_token(token)?;
        let c = &verified.claims;
        if c.exp <= now {
            return Err(VerifyError::Expired);
        }
        if c.iss != self.issuer {
            return Err(VerifyError::WrongIssuer);
        }
        if c.aud.trim_end_matches('/') != audience.trim_end_matches('/') {
            return Err(VerifyError::WrongAudience);
        }
        let sid = SessionId::from_string(c.sid.clone());
        let status = self.session_status(&sid, now_ms).await?;
        match status {
            Some(s)
                if s.active
                    && s.account_id.as_str() == c.sub
                    && s.client_id.as_str() == c.client_id =>
            {
                Ok(AccessContext {
                    account_id: s.account_id,
                    email: s.email,
                    client_id: s.client_id,
                    session_id: sid,
                    scopes: verified.scopes.clone(),
                    claims: c.clone(),
                })
            }
            _ => Err(VerifyError::Revoked),
        }
    }

    /// Signature and claim decoding, cached by token digest.
    fn verified_token(&self, token: &str) -> Result<Arc<VerifiedToken>, VerifyError> {
        let key = sha256(token.as_bytes());
        if let Some(v) = self.lock_tokens().get(&key) {
            return Ok(v.clone());
        }
        let claims: AccessTokenClaims = bk_crypto::jwt::verify(&self.keys, token, "at+jwt")
            .map_err(|_| VerifyError::Invalid)?;
        let v = Arc::new(VerifiedToken {
            scopes: ScopeSet::parse_lenient(&claims.scope),
            claims: Arc::new(claims),
        });
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

    async fn session_status(
        &self,
        sid: &SessionId,
        now_ms: i64,
    ) -> Result<Option<SessionStatus>, VerifyError> {
        if let Some((at, status)) = self.lock_sessions().get(sid)
            && now_ms - at < SESSION_TTL_MS
        {
            return Ok(status.clone());
        }
        let status = self.store.session_status(sid).await.map_err(|e| {
            tracing::error!(error = %e, "session lookup failed");
            VerifyError::Unavailable
        })?;
        let mut cache = self.lock_sessions();
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (at, _)| now_ms - *at < SESSION_TTL_MS);
        }
        cache.insert(sid.clone(), (now_ms, status.clone()));
        Ok(status)
    }

    /// Drops a cached session status so a revocation on this instance is seen at once.
    pub fn forget_session(&self, sid: &SessionId) {
        self.lock_sessions().remove(sid);
    }

    /// Decodes a token signed by us without checking expiry or session (revocation needs the `sid`
    /// of expired tokens too).
    pub fn decode_unchecked_expiry(&self, token: &str) -> Option<AccessTokenClaims> {
        bk_crypto::jwt::verify(&self.keys, token, "at+jwt").ok()
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<VerifiedToken>>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_sessions(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<SessionId, (i64, Option<SessionStatus>)>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}
