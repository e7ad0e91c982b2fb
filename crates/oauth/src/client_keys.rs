//! `private_key_jwt` (RFC 7523 §2.2, §3; RFC 7521 §4.2): the keys a client registered, parsed once
//! and kept — inline (`jwks`) or fetched from its `jwks_uri` through the SSRF-safe fetcher, cached
//! for a while and fetched again once when an assertion names a key id the cached set lacks — and
//! the checks of one client assertion against them. What the assertion's `jti` was is the caller's
//! to spend (it must be used once only).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bk_crypto::secret::b64url_decode;
use bk_domain::client::{ASSERTION_ALGORITHMS, ClientKeys, MAX_CLIENT_KEYS, MAX_JWKS_BYTES, check_jwks};
use bk_domain::ids::ClientId;
use bk_outbound::SafeFetcher;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

/// An assertion may be valid for at most this long ahead (`exp − now`), and was made at most this
/// long ago (`iat`); clocks may differ by `SKEW_SECS`.
pub const MAX_LIFETIME_SECS: i64 = 300;
pub const SKEW_SECS: i64 = 60;
/// How long a spent `jti` is remembered: longer than any assertion stays acceptable.
pub const REMEMBER_JTI_SECS: u32 = (MAX_LIFETIME_SECS + 2 * SKEW_SECS) as u32;

/// A fetched key set is used this long without `Cache-Control: max-age`; never less than the
/// minimum nor more than the maximum, whatever the answer says (keys are re-fetched on an unknown
/// `kid` anyway). A key set is fetched again for an unknown `kid` at most once per `REFETCH_SECS`,
/// so forged key ids cannot make the server hammer a client's host.
const DEFAULT_TTL_SECS: i64 = 300;
const MIN_TTL_SECS: i64 = 60;
const MAX_TTL_SECS: i64 = 86_400;
const REFETCH_SECS: i64 = 10;
const MAX_CACHED: usize = 10_000;

/// One usable public key of a client.
#[derive(Clone)]
pub(crate) struct ClientKey {
    kid: Option<String>,
    /// The key's `alg`, when it names one: then only that algorithm verifies with it.
    alg: Option<Algorithm>,
    family: Family,
    key: DecodingKey,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Ec,
    Rsa,
    Okp,
}

impl Family {
    fn fits(self, alg: Algorithm) -> bool {
        match self {
            Family::Ec => matches!(alg, Algorithm::ES256 | Algorithm::ES384),
            Family::Rsa => matches!(alg, Algorithm::RS256 | Algorithm::PS256),
            Family::Okp => alg == Algorithm::EdDSA,
        }
    }
}

/// Checks that a JWK Set a client registers (or serves) holds only usable public signing keys; the
/// error names what is wrong (it is shown to whoever registers it).
pub fn validate_jwks(jwks: &Value) -> Result<(), String> {
    parse_jwks(jwks).map(|_| ())
}

/// Parses a JWK Set into usable keys.
fn parse_jwks(jwks: &Value) -> Result<Vec<ClientKey>, String> {
    check_jwks(jwks)?;
    let keys = jwks["keys"].as_array().map(Vec::as_slice).unwrap_or_default();
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            let family = match k["kty"].as_str() {
                Some("EC") => Family::Ec,
                Some("RSA") => Family::Rsa,
                _ => Family::Okp,
            };
            let jwk: jsonwebtoken::jwk::Jwk =
                serde_json::from_value(k.clone()).map_err(|_| format!("jwks.keys[{i}] is not a usable public key"))?;
            let key = DecodingKey::from_jwk(&jwk).map_err(|_| format!("jwks.keys[{i}] is not a usable public key"))?;
            let alg = match k["alg"].as_str() {
                Some(a) => Some(a.parse::<Algorithm>().map_err(|_| format!("jwks.keys[{i}].alg is not supported"))?),
                None => None,
            };
            if alg.is_some_and(|a| !family.fits(a)) {
                return Err(format!("jwks.keys[{i}].alg does not fit its key type"));
            }
            Ok(ClientKey { kid: k["kid"].as_str().map(str::to_owned), alg, family, key })
        })
        .collect()
}

/// A client's keys as last read: until when they are fresh, when they were last fetched again for
/// a key id they lacked, and when a fetch last failed (both space out further fetches).
struct Cached {
    source: ClientKeys,
    keys: Option<Arc<Vec<ClientKey>>>,
    fresh_until: i64,
    refetched_at: Option<i64>,
    failed_at: Option<i64>,
}

/// Clients' key sets: parsed once, fetched (for a `jwks_uri`) through the SSRF-safe fetcher.
pub struct ClientKeySets {
    fetcher: Option<SafeFetcher>,
    cache: Mutex<HashMap<ClientId, Cached>>,
}

/// Why an assertion was refused: said to the client (`invalid_client`), never with its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    #[error("the client assertion is not a well-formed JWT")]
    Malformed,
    #[error("the client assertion's alg must be one of {}", ASSERTION_ALGORITHMS.join(", "))]
    Algorithm,
    #[error("the client assertion's typ must be JWT (or absent)")]
    Type,
    #[error("the client assertion's iss and sub must both be the client_id")]
    Subject,
    #[error("the client assertion's aud must name this server's token endpoint or its issuer")]
    Audience,
    #[error("the client assertion lacks {0}")]
    Missing(&'static str),
    #[error("the client assertion has expired")]
    Expired,
    #[error("the client assertion is valid for too long: its exp must be at most 5 minutes ahead")]
    TooLong,
    #[error("the client assertion was issued in the future or too long ago (iat, nbf)")]
    Time,
    #[error("no key registered for this client verifies the client assertion")]
    Signature,
    #[error("the client's keys could not be read: {0}")]
    Keys(String),
}

/// What an assertion says, for the checks.
#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Value>,
    exp: Option<i64>,
    iat: Option<i64>,
    nbf: Option<i64>,
    jti: Option<String>,
}

/// The header of an assertion and its unverified `iss`/`sub`: which client it claims to be.
pub struct Unverified {
    alg: Algorithm,
    kid: Option<String>,
    /// `sub` when `iss` equals it (the client it names); `None` otherwise.
    pub client_id: Option<String>,
}

/// Reads an assertion's header and the client it names, without trusting either yet.
pub fn peek(assertion: &str) -> Result<Unverified, AssertionError> {
    let mut parts = assertion.split('.');
    let (Some(h), Some(p), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(AssertionError::Malformed);
    };
    let json = |s: &str| b64url_decode(s).and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let (Some(header), Some(payload)) = (json(h), json(p)) else {
        return Err(AssertionError::Malformed);
    };
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or_default();
    if !ASSERTION_ALGORITHMS.contains(&alg) {
        return Err(AssertionError::Algorithm);
    }
    // Not another kind of JWT signed with the same key (a DPoP proof, an access token).
    if let Some(typ) = header.get("typ")
        && !typ.as_str().is_some_and(|t| t.eq_ignore_ascii_case("JWT"))
    {
        return Err(AssertionError::Type);
    }
    let alg = alg.parse::<Algorithm>().map_err(|_| AssertionError::Algorithm)?;
    let kid = header.get("kid").and_then(Value::as_str).filter(|k| k.len() <= 200).map(str::to_owned);
    let iss = payload.get("iss").and_then(Value::as_str);
    let sub = payload.get("sub").and_then(Value::as_str);
    let client_id = match (iss, sub) {
        (Some(i), Some(s)) if i == s && !s.is_empty() && s.len() <= 200 => Some(s.to_owned()),
        _ => None,
    };
    Ok(Unverified { alg, kid, client_id })
}

/// What a verified assertion leaves to spend: its `jti` (once) until `exp`.
pub struct Verified {
    pub jti: String,
}

impl ClientKeySets {
    /// `fetcher`: how `jwks_uri`s are fetched (none: clients with a `jwks_uri` cannot authenticate).
    pub fn new(fetcher: Option<SafeFetcher>) -> Self {
        Self { fetcher, cache: Mutex::default() }
    }

    /// May a `jwks_uri` be used at all (its scheme and, for a literal address, the address)?
    pub fn allows_uri(&self, url: &url::Url) -> bool {
        self.fetcher.as_ref().is_some_and(|f| f.allows(url))
    }

    /// Forgets a client's keys (it changed on this instance).
    pub fn forget(&self, id: &ClientId) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientId, Cached>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks `assertion` (already peeked as `head`) as `client_id`'s, signed by one of its keys
    /// (`source`), for one of `audiences`, at `now`.
    pub async fn verify(
        &self,
        client_id: &ClientId,
        source: &ClientKeys,
        assertion: &str,
        head: &Unverified,
        audiences: &[&str],
        now: i64,
    ) -> Result<Verified, AssertionError> {
        let keys = self.keys(client_id, source, head.kid.as_deref(), now).await?;
        let candidates: Vec<&ClientKey> = keys
            .iter()
            .filter(|k| head.kid.is_none() || k.kid == head.kid)
            .filter(|k| k.family.fits(head.alg) && k.alg.is_none_or(|a| a == head.alg))
            .take(MAX_CLIENT_KEYS)
            .collect();
        let mut validation = Validation::new(head.alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let claims = candidates
            .iter()
            .find_map(|k| jsonwebtoken::decode::<Claims>(assertion, &k.key, &validation).ok())
            .ok_or(AssertionError::Signature)?
            .claims;
        let id = client_id.as_str();
        if claims.iss.as_deref() != Some(id) || claims.sub.as_deref() != Some(id) {
            return Err(AssertionError::Subject);
        }
        let aud_ok = match &claims.aud {
            Some(Value::String(a)) => audiences.contains(&a.as_str()),
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str().is_some_and(|a| audiences.contains(&a))),
            _ => false,
        };
        if !aud_ok {
            return Err(AssertionError::Audience);
        }
        let exp = claims.exp.ok_or(AssertionError::Missing("exp"))?;
        if exp <= now - SKEW_SECS {
            return Err(AssertionError::Expired);
        }
        if exp > now + MAX_LIFETIME_SECS + SKEW_SECS {
            return Err(AssertionError::TooLong);
        }
        if let Some(iat) = claims.iat
            && (iat > now + SKEW_SECS || iat < now - MAX_LIFETIME_SECS - SKEW_SECS)
        {
            return Err(AssertionError::Time);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + SKEW_SECS) {
            return Err(AssertionError::Time);
        }
        let jti = claims.jti.filter(|j| !j.is_empty() && j.len() <= 256).ok_or(AssertionError::Missing("jti"))?;
        Ok(Verified { jti })
    }

    /// The client's keys: cached while fresh (and while its registration names the same source);
    /// parsed from its inline set; or fetched from its `jwks_uri` — again when the assertion names a
    /// key id the cached set lacks (the client rotated its keys), at most once per `REFETCH_SECS`,
    /// and after a failed fetch not before `REFETCH_SECS` either, so forged key ids or a failing host
    /// cannot make the server hammer anyone.
    async fn keys(
        &self,
        client_id: &ClientId,
        source: &ClientKeys,
        kid: Option<&str>,
        now: i64,
    ) -> Result<Arc<Vec<ClientKey>>, AssertionError> {
        let entry = self
            .lock()
            .get(client_id)
            .filter(|c| c.source == *source)
            .map(|c| (c.keys.clone(), c.fresh_until, c.refetched_at, c.failed_at));
        let (old, fresh_until, refetched_at, failed_at) = entry.unwrap_or((None, 0, None, None));
        let fresh = old.filter(|_| fresh_until > now);
        let uri = match source {
            ClientKeys::Jwks(jwks) => {
                if let Some(keys) = fresh {
                    return Ok(keys);
                }
                let keys = Arc::new(parse_jwks(jwks).map_err(AssertionError::Keys)?);
                let fresh_until = now + MAX_TTL_SECS;
                self.remember(
                    client_id,
                    Cached {
                        source: source.clone(),
                        keys: Some(keys.clone()),
                        fresh_until,
                        refetched_at: None,
                        failed_at: None,
                    },
                    now,
                );
                return Ok(keys);
            }
            ClientKeys::JwksUri(uri) => uri,
        };
        let spaced = |at: Option<i64>| at.is_none_or(|at| now - at >= REFETCH_SECS);
        let mut refetch = false;
        if let Some(keys) = &fresh {
            let knows_kid = kid.is_none_or(|kid| keys.iter().any(|k| k.kid.as_deref() == Some(kid)));
            if knows_kid || !spaced(refetched_at) {
                return Ok(keys.clone());
            }
            refetch = true;
        } else if !spaced(failed_at) {
            return Err(AssertionError::Keys(
                "the client's jwks_uri could not be fetched moments ago; retry shortly".into(),
            ));
        }
        let refetched_at = if refetch { Some(now) } else { refetched_at };
        match self.fetch(uri).await {
            Ok((keys, ttl)) => {
                let keys = Arc::new(keys);
                if refetch {
                    tracing::info!(client = %client_id, "a client assertion named a key id not in the cached set: fetched again");
                }
                let entry = Cached {
                    source: source.clone(),
                    keys: Some(keys.clone()),
                    fresh_until: now + ttl,
                    refetched_at,
                    failed_at: None,
                };
                self.remember(client_id, entry, now);
                Ok(keys)
            }
            Err(e) => {
                // The keys known so far stay in use while fresh: a host down for a moment must not
                // lock its client out.
                let entry = Cached {
                    source: source.clone(),
                    keys: fresh.clone(),
                    fresh_until,
                    refetched_at,
                    failed_at: Some(now),
                };
                self.remember(client_id, entry, now);
                match fresh {
                    Some(keys) => {
                        tracing::info!(client = %client_id, error = %e, "fetching a client's jwks_uri failed; keys kept");
                        Ok(keys)
                    }
                    None => Err(e),
                }
            }
        }
    }

    fn remember(&self, client_id: &ClientId, entry: Cached, now: i64) {
        let mut cache = self.lock();
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, c| c.fresh_until > now);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(client_id.clone(), entry);
    }

    async fn fetch(&self, uri: &str) -> Result<(Vec<ClientKey>, i64), AssertionError> {
        let fetcher =
            self.fetcher.as_ref().ok_or_else(|| AssertionError::Keys("jwks_uri is not fetched here".into()))?;
        let url = url::Url::parse(uri).map_err(|_| AssertionError::Keys("jwks_uri is not a URL".into()))?;
        let fetched = fetcher
            .get(&url, "application/jwk-set+json, application/json")
            .await
            .map_err(|e| AssertionError::Keys(format!("fetching jwks_uri failed: {e}")))?;
        let jwks: Value = serde_json::from_slice(&fetched.body)
            .map_err(|_| AssertionError::Keys("jwks_uri did not answer with JSON".into()))?;
        let keys = parse_jwks(&jwks).map_err(|e| AssertionError::Keys(format!("jwks_uri: {e}")))?;
        let ttl = fetched
            .max_age
            .map_or(DEFAULT_TTL_SECS, |s| i64::try_from(s).unwrap_or(MAX_TTL_SECS))
            .clamp(MIN_TTL_SECS, MAX_TTL_SECS);
        tracing::info!(url = %url, keys = keys.len(), ttl_secs = ttl, "client jwks_uri fetched");
        Ok((keys, ttl))
    }
}

/// The most a fetched JWK Set may weigh (the fetcher's body limit is set to it).
pub const FETCH_LIMIT_BYTES: usize = MAX_JWKS_BYTES;

#[cfg(test)]
mod tests {
    use bk_crypto::secret::b64url;
    use serde_json::json;

    use super::*;

    struct Signer {
        key: aws_lc_rs::signature::EcdsaKeyPair,
        jwk: Value,
    }

    impl Signer {
        fn new(kid: &str) -> Self {
            use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
            let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
            let public = key.public_key().as_ref().to_vec();
            let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid,
                "x": b64url(&public[1..33]), "y": b64url(&public[33..65])});
            Self { key, jwk }
        }
        fn sign(&self, header: Value, claims: Value) -> String {
            let input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let sig = self.key.sign(&rng, input.as_bytes()).unwrap();
            format!("{input}.{}", b64url(sig.as_ref()))
        }
    }

    const NOW: i64 = 1_800_000_000;
    const AUD: &str = "https://bk.example/api/v1/auth/token";

    fn claims() -> Value {
        json!({"iss": "cli_m", "sub": "cli_m", "aud": AUD, "exp": NOW + 60, "iat": NOW, "jti": "j-1"})
    }

    async fn check(s: &Signer, header: Value, claims: Value) -> Result<Verified, AssertionError> {
        let sets = ClientKeySets::new(None);
        let source = ClientKeys::Jwks(json!({"keys": [s.jwk]}));
        let assertion = s.sign(header, claims);
        let head = peek(&assertion)?;
        sets.verify(&ClientId::from_string("cli_m"), &source, &assertion, &head, &[AUD, "https://bk.example"], NOW)
            .await
    }

    #[tokio::test]
    async fn a_good_assertion_verifies_and_each_bad_claim_is_named() {
        let s = Signer::new("k1");
        let h = json!({"alg": "ES256", "typ": "JWT", "kid": "k1"});
        assert_eq!(check(&s, h.clone(), claims()).await.unwrap().jti, "j-1");
        let with = |k: &str, v: Value| {
            let mut c = claims();
            c[k] = v;
            c
        };
        let without = |k: &str| {
            let mut c = claims();
            c.as_object_mut().unwrap().remove(k);
            c
        };
        assert_eq!(check(&s, h.clone(), with("aud", json!(["x", "https://bk.example"]))).await.unwrap().jti, "j-1");
        assert_eq!(
            check(&s, h.clone(), with("aud", json!("https://evil.example/token"))).await.err(),
            Some(AssertionError::Audience)
        );
        assert_eq!(check(&s, h.clone(), without("aud")).await.err(), Some(AssertionError::Audience));
        assert_eq!(check(&s, h.clone(), with("sub", json!("cli_other"))).await.err(), Some(AssertionError::Subject));
        assert_eq!(check(&s, h.clone(), without("exp")).await.err(), Some(AssertionError::Missing("exp")));
        assert_eq!(check(&s, h.clone(), with("exp", json!(NOW - 61))).await.err(), Some(AssertionError::Expired));
        assert_eq!(check(&s, h.clone(), with("exp", json!(NOW + 3600))).await.err(), Some(AssertionError::TooLong));
        assert_eq!(check(&s, h.clone(), with("iat", json!(NOW + 120))).await.err(), Some(AssertionError::Time));
        assert_eq!(check(&s, h.clone(), with("iat", json!(NOW - 3600))).await.err(), Some(AssertionError::Time));
        assert_eq!(check(&s, h.clone(), with("nbf", json!(NOW + 120))).await.err(), Some(AssertionError::Time));
        assert_eq!(check(&s, h.clone(), without("jti")).await.err(), Some(AssertionError::Missing("jti")));
        // Another key's signature, a key id the set lacks, a symmetric alg, another typ.
        let other = Signer::new("k1");
        let forged = {
            let a = other.sign(h.clone(), claims());
            let sets = ClientKeySets::new(None);
            let head = peek(&a).unwrap();
            sets.verify(
                &ClientId::from_string("cli_m"),
                &ClientKeys::Jwks(json!({"keys": [s.jwk]})),
                &a,
                &head,
                &[AUD],
                NOW,
            )
            .await
        };
        assert_eq!(forged.err(), Some(AssertionError::Signature));
        assert_eq!(
            check(&s, json!({"alg": "ES256", "kid": "k9"}), claims()).await.err(),
            Some(AssertionError::Signature)
        );
        assert_eq!(check(&s, json!({"alg": "HS256"}), claims()).await.err(), Some(AssertionError::Algorithm));
        assert_eq!(check(&s, json!({"alg": "none"}), claims()).await.err(), Some(AssertionError::Algorithm));
        assert_eq!(
            check(&s, json!({"alg": "ES256", "typ": "dpop+jwt"}), claims()).await.err(),
            Some(AssertionError::Type)
        );
        assert_eq!(
            check(&s, json!({"alg": "RS256"}), claims()).await.err(),
            Some(AssertionError::Signature),
            "no RSA key"
        );
    }

    #[test]
    fn peek_names_the_client_only_when_iss_is_sub() {
        let s = Signer::new("k");
        let a = s.sign(json!({"alg": "ES256"}), claims());
        assert_eq!(peek(&a).unwrap().client_id.as_deref(), Some("cli_m"));
        let mut c = claims();
        c["iss"] = json!("someone");
        assert_eq!(peek(&s.sign(json!({"alg": "ES256"}), c)).unwrap().client_id, None);
        assert!(matches!(peek("a.b"), Err(AssertionError::Malformed)));
        assert!(matches!(peek("!!.??.x"), Err(AssertionError::Malformed)));
    }

    #[test]
    fn keys_must_be_usable_public_keys_of_their_alg() {
        let s = Signer::new("k");
        assert_eq!(parse_jwks(&json!({"keys": [s.jwk]})).unwrap().len(), 1);
        let mut wrong_alg = s.jwk.clone();
        wrong_alg["alg"] = json!("RS256");
        assert!(validate_jwks(&json!({"keys": [wrong_alg]})).unwrap_err().contains("does not fit"));
        let garbage = json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"});
        assert!(validate_jwks(&json!({"keys": [garbage]})).is_err());
    }
}
