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
use bk_domain::client::GrantType;
use bk_domain::grant::GrantKind;
use bk_domain::ids::{ClientId, SessionId};
use bk_domain::ports::{ClientStore, PatStore, SessionStatus, SessionStore};
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
    #[error("the access token is DPoP-bound: send it as Authorization: DPoP with a DPoP proof")]
    DpopBound,
    #[error("this credential is not DPoP-bound: send it as Authorization: Bearer")]
    NotDpopBound,
    #[error("{0}")]
    Dpop(crate::dpop::Refusal),
    #[error("the DPoP proof was made with another key than the one the access token is bound to")]
    DpopKeyMismatch,
    #[error(
        "this access token acts for no account (a machine client's token not bound to one): it reaches no tenant's \
         data; ask the operator to bind the client to an account"
    )]
    NoTenant,
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
const RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Verifier {
    keys: Arc<KeySet>,
    source: Option<Arc<dyn KeySource>>,
    /// Held while the ring is reloaded for an unknown `kid`; when that last happened.
    reload: tokio::sync::Mutex<Option<std::time::Instant>>,
    sessions_store: Arc<dyn SessionStore>,
    pat_store: Arc<dyn PatStore>,
    clock: Arc<dyn Clock>,
    issuer: String,
    tokens: Mutex<HashMap<[u8; 32], Arc<VerifiedToken>>>,
    sessions: TtlCache<SessionId, Option<SessionStatus>>,
    pats: TtlCache<[u8; 32], PatLookup>,
    /// DPoP proof checks (RFC 9449), shared with the token endpoint.
    pub dpop: crate::dpop::Guard,
    /// Where the standing of a machine or acting client is read (see [`Verifier::with_clients`]).
    clients_store: Option<Arc<dyn ClientStore>>,
    clients: TtlCache<ClientId, Option<ClientStanding>>,
}

/// What a token's client may still do, read for machine tokens and exchanged tokens: a deleted
/// client, or one no longer allowed the grant that made them, ends them within `LIVE_TTL_MS`.
#[derive(Clone, Debug)]
struct ClientStanding {
    client_credentials: bool,
    token_exchange: bool,
    bound: bool,
    allowed_providers: Option<Vec<String>>,
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
            reload: tokio::sync::Mutex::new(None),
            sessions_store,
            pat_store,
            clock,
            issuer,
            tokens: Mutex::default(),
            sessions: TtlCache::new("token_sessions", LIVE_TTL_MS, MAX_CACHED),
            pats: TtlCache::new("personal_access_tokens", LIVE_TTL_MS, MAX_CACHED),
            dpop: crate::dpop::Guard::new(None, None),
            clients_store: None,
            clients: TtlCache::new("token_clients", LIVE_TTL_MS, MAX_CACHED),
        }
    }

    /// With the clients' standing readable: tokens of an unbound machine client (introspection) and
    /// exchanged tokens (which carry `act`) are accepted only while their client is live and still
    /// allowed the grant that made them. Without it, both are refused.
    pub fn with_clients(mut self, store: Arc<dyn ClientStore>) -> Self {
        self.clients_store = Some(store);
        self
    }

    /// With DPoP proof ids shared through `shared` (Redis, several instances) and server nonces.
    pub fn with_dpop(mut self, guard: crate::dpop::Guard) -> Self {
        self.dpop = guard;
        self
    }

    /// The credential of a request, whichever scheme carries it: `Bearer` (access token or PAT;
    /// a DPoP-bound access token is refused) or `DPoP` (a DPoP-bound access token with one `DPoP`
    /// proof for this request: `htm` = `method`, `htu` = `url`, `ath` = the token's hash, the key
    /// the token is bound to). `Ok(None)`: no credential at all.
    pub async fn verify_request(
        &self,
        headers: &http::HeaderMap,
        method: &str,
        url: &str,
        audiences: &[&str],
    ) -> Result<Option<AccessContext>, VerifyError> {
        if let Some(token) = crate::bearer::bearer_token(headers) {
            return self.verify_bearer(token, audiences).await.map(Some);
        }
        let Some(token) = crate::bearer::dpop_token(headers) else {
            return Ok(None);
        };
        let mut proofs = headers.get_all("dpop").iter();
        let (Some(proof), None) = (proofs.next(), proofs.next()) else {
            return Err(VerifyError::Dpop(crate::dpop::Refusal::Header));
        };
        let proof = proof.to_str().map_err(|_| VerifyError::Dpop(crate::dpop::Refusal::Header))?;
        if token.starts_with(PAT_PREFIX) {
            return Err(VerifyError::NotDpopBound);
        }
        let ctx = self.verify_jwt(token, audiences).await?;
        let Some(jkt) = ctx.claims.as_ref().and_then(|c| c.cnf.as_ref()).map(|c| c.jkt.clone()) else {
            return Err(VerifyError::NotDpopBound);
        };
        let checked =
            self.dpop.check(proof, method, url, Some(token), self.clock.now()).await.map_err(VerifyError::Dpop)?;
        if !bk_crypto::secret::ct_eq(checked.jkt.as_bytes(), jkt.as_bytes()) {
            return Err(VerifyError::DpopKeyMismatch);
        }
        Ok(Some(ctx))
    }

    /// Verifies a bearer credential (access token or PAT) meant for one of `audiences`.
    /// PATs are not audience-bound: they act for their account wherever scopes allow.
    pub async fn verify_bearer(&self, token: &str, audiences: &[&str]) -> Result<AccessContext, VerifyError> {
        if token.starts_with(PAT_PREFIX) {
            return self.verify_pat(token).await;
        }
        let ctx = self.verify_jwt(token, audiences).await?;
        // A DPoP-bound token is worth nothing without its key: never as a bearer token (RFC 9449 §7.2).
        if ctx.claims.as_ref().is_some_and(|c| c.cnf.is_some()) {
            return Err(VerifyError::DpopBound);
        }
        Ok(ctx)
    }

    /// Verifies an access token for `audience` and checks that its session is live.
    pub async fn verify(&self, token: &str, audience: &str) -> Result<AccessContext, VerifyError> {
        self.verify_jwt(token, &[audience]).await
    }

    async fn verify_jwt(&self, token: &str, audiences: &[&str]) -> Result<AccessContext, VerifyError> {
        let now_ms = self.clock.now_ms();
        let now = now_ms.div_euclid(1000);
        let verified = match self.verified_token(token) {
            Err(VerifyError::UnknownKey) if self.reload_keys().await => self.verified_token(token)?,
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
        // No session, no account: every face that reaches a tenant's data refuses it.
        if c.acts_for_no_account() {
            return Err(VerifyError::NoTenant);
        }
        let sid = SessionId::from_string(c.sid.clone());
        let status = self.session_status(&sid, now_ms).await?;
        let Some(s) = status.filter(|s| s.active && s.account_id.as_str() == c.sub) else {
            return Err(VerifyError::Revoked);
        };
        let mut client_providers = s.client_providers;
        if s.client_id.as_str() != c.client_id {
            // Only an exchanged token names another client than its session's: the one acting for
            // the person (`act`), while that client lives and may still exchange. It reaches no more
            // providers than both clients may.
            let Some(actor) = c.acting_client() else {
                return Err(VerifyError::Revoked);
            };
            match self.standing(&ClientId::from_string(actor), now_ms).await? {
                Some(st) if st.token_exchange => {
                    client_providers = intersect_providers(client_providers, st.allowed_providers);
                }
                _ => return Err(VerifyError::Revoked),
            }
        }
        // The context names the client the person granted the session to: an exchanged token
        // is that grant narrowed, never a new principal (its actor is in `claims.act`).
        Ok(AccessContext {
            account_id: s.account_id,
            email: s.email,
            client_id: s.client_id,
            session_id: sid,
            scopes: verified.scopes.clone(),
            restrictions: s.restrictions,
            kind: GrantKind::OAuth,
            machine: s.machine,
            client_providers,
            claims: Some(c.clone()),
        })
    }

    /// Verifies the token of a machine client bound to no account, for introspection (the only
    /// place it is answered for): signature, expiry, issuer, one of `audiences`, and a client that
    /// is live, still allowed `client_credentials` and still bound to no account.
    pub async fn verify_machine(&self, token: &str, audiences: &[&str]) -> Result<Arc<AccessTokenClaims>, VerifyError> {
        let now_ms = self.clock.now_ms();
        let verified = match self.verified_token(token) {
            Err(VerifyError::UnknownKey) if self.reload_keys().await => self.verified_token(token)?,
            other => other?,
        };
        let c = &verified.claims;
        if c.exp <= now_ms.div_euclid(1000) {
            return Err(VerifyError::Expired);
        }
        if c.iss != self.issuer {
            return Err(VerifyError::WrongIssuer);
        }
        let aud = c.aud.trim_end_matches('/');
        if !audiences.iter().any(|a| a.trim_end_matches('/') == aud) {
            return Err(VerifyError::WrongAudience);
        }
        if !c.acts_for_no_account() || c.sub != c.client_id || c.act.is_some() {
            return Err(VerifyError::Invalid);
        }
        match self.standing(&ClientId::from_string(c.client_id.clone()), now_ms).await? {
            Some(st) if st.client_credentials && !st.bound => Ok(c.clone()),
            _ => Err(VerifyError::Revoked),
        }
    }

    /// A client's standing, through the short cache; `None`: no live client (or nowhere to ask).
    async fn standing(&self, id: &ClientId, now_ms: i64) -> Result<Option<ClientStanding>, VerifyError> {
        let Some(store) = &self.clients_store else {
            return Ok(None);
        };
        if let Some(s) = self.clients.get(id, now_ms) {
            return Ok(s);
        }
        let found = store.capable_client(id).await.map_err(|e| {
            tracing::error!(error = %e, "client lookup failed");
            VerifyError::Unavailable
        })?;
        let standing = found.map(|(client, caps)| ClientStanding {
            client_credentials: caps.allows(GrantType::ClientCredentials),
            token_exchange: caps.allows(GrantType::TokenExchange),
            bound: caps.bound_account.is_some(),
            allowed_providers: client.allowed_providers,
        });
        self.clients.put(id.clone(), standing.clone(), now_ms);
        Ok(standing)
    }

    /// Drops a client's cached standing so a change made on this instance is seen at once.
    pub fn forget_client(&self, id: &ClientId) {
        self.clients.remove(id);
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
                            machine: false,
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

    /// A token names a key the ring lacks (another instance may have just made it): reloads the ring
    /// from its source, at most once per `RELOAD_INTERVAL` (waiting for the next turn rather than
    /// refusing: a forged or long-retired `kid` just before must not cost a genuine new key its
    /// reload); true if the ring is worth trying again. Requests that meet an unknown key meanwhile
    /// wait for that one reload and then try its ring.
    async fn reload_keys(&self) -> bool {
        let Some(source) = &self.source else { return false };
        let seen = self.keys.current();
        let mut last = self.reload.lock().await;
        if !Arc::ptr_eq(&seen, &self.keys.current()) {
            return true; // reloaded while this request waited
        }
        if let Some(at) = *last {
            tokio::time::sleep_until(tokio::time::Instant::from_std(at + RELOAD_INTERVAL)).await;
        }
        *last = Some(std::time::Instant::now());
        match source.load().await {
            Ok(ring) => {
                tracing::info!("signing keys reloaded (a token named a key this instance did not know)");
                self.keys.replace(ring);
            }
            Err(e) => tracing::error!(error = %e, "reloading signing keys failed"),
        }
        true
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<VerifiedToken>>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The providers both lists allow (`None` = every provider).
fn intersect_providers(a: Option<Vec<String>>, b: Option<Vec<String>>) -> Option<Vec<String>> {
    match (a, b) {
        (None, other) | (other, None) => other,
        (Some(a), Some(b)) => Some(a.into_iter().filter(|p| b.contains(p)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::intersect_providers;

    #[test]
    fn providers_of_two_clients_intersect() {
        let v = |l: &[&str]| Some(l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(intersect_providers(None, None), None);
        assert_eq!(intersect_providers(v(&["google"]), None), v(&["google"]));
        assert_eq!(intersect_providers(None, v(&["slack"])), v(&["slack"]));
        assert_eq!(intersect_providers(v(&["google", "slack"]), v(&["slack", "notion"])), v(&["slack"]));
        assert_eq!(intersect_providers(v(&["google"]), v(&["slack"])), v(&[]));
    }
}
