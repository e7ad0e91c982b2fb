//! DPoP proofs (RFC 9449): a client proves, on each request, that it holds the private key its
//! tokens are bound to. This module checks one proof against the request it came with (§4.3); the
//! caller checks `jti` replay (a cache shared by every instance) and the token's `cnf.jkt`.

use bk_crypto::secret::{b64url, b64url_decode, sha256};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

/// The `alg` values accepted for proofs (asymmetric only, §4.3 check 5).
pub const ALGORITHMS: &[&str] = &["ES256", "ES384", "RS256", "PS256", "EdDSA"];

/// How far a proof's `iat` may lie in the past, and in the future (clock skew).
pub const MAX_AGE_SECS: i64 = 300;
pub const MAX_SKEW_SECS: i64 = 60;

/// The request a proof must describe.
pub struct Expected<'a> {
    /// The HTTP method.
    pub htm: &'a str,
    /// The target URI without query and fragment (RFC 9449 §4.3 check 9).
    pub htu: &'a str,
    /// The access token presented with the proof (resource requests): `ath` must be its hash.
    pub access_token: Option<&'a str>,
    /// A server nonce the proof must carry, when the server asks for them.
    pub nonce: Option<&'a dyn Fn(&str) -> bool>,
    pub now: i64,
}

/// A proof that passed every check: the key's thumbprint and the proof's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// RFC 7638 JWK SHA-256 thumbprint, base64url (what `cnf.jkt` holds).
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
}

#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum DpopError {
    #[error("the DPoP proof is not a well-formed JWT: {0}")]
    Malformed(&'static str),
    #[error("the DPoP proof's typ must be dpop+jwt")]
    Type,
    #[error("the DPoP proof's alg must be one of {}", ALGORITHMS.join(", "))]
    Algorithm,
    #[error("the DPoP proof's jwk is missing, private, or not a usable public key")]
    Key,
    #[error("the DPoP proof's signature does not verify with its jwk")]
    Signature,
    #[error("the DPoP proof lacks the claim {0}")]
    Missing(&'static str),
    #[error("the DPoP proof is for another method (htm)")]
    Method,
    #[error("the DPoP proof is for another URL (htu)")]
    Url,
    #[error("the DPoP proof was issued too long ago or in the future (iat)")]
    Time,
    #[error("the DPoP proof's ath is not the hash of the access token presented")]
    TokenHash,
    #[error("the DPoP proof lacks the server's current nonce")]
    Nonce,
}

#[derive(Deserialize)]
struct Claims {
    jti: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<i64>,
    ath: Option<String>,
    nonce: Option<String>,
}

/// Members of a JWK that only a private key has (§4.3 check 7: the proof must carry a public key).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Checks `proof` (the `DPoP` header's value) against the request `expected` describes.
pub fn verify(proof: &str, expected: &Expected<'_>) -> Result<Proof, DpopError> {
    let mut parts = proof.split('.');
    let (Some(h), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(DpopError::Malformed("three dot-separated parts expected"));
    };
    let header: Value = b64url_decode(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(DpopError::Malformed("the header is not base64url JSON"))?;
    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(DpopError::Type);
    }
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or_default();
    if !ALGORITHMS.contains(&alg) {
        return Err(DpopError::Algorithm);
    }
    let algorithm: Algorithm = alg.parse().map_err(|_| DpopError::Algorithm)?;
    let jwk_json = header.get("jwk").and_then(Value::as_object).ok_or(DpopError::Key)?;
    if PRIVATE_MEMBERS.iter().any(|m| jwk_json.contains_key(*m)) {
        return Err(DpopError::Key);
    }
    let jkt = thumbprint(jwk_json).ok_or(DpopError::Key)?;
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(Value::Object(jwk_json.clone())).map_err(|_| DpopError::Key)?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| DpopError::Key)?;
    // The key must be of the algorithm's family (an RSA key cannot verify an ES256 proof).
    let family_ok = match jwk_json.get("kty").and_then(Value::as_str) {
        Some("EC") => matches!(algorithm, Algorithm::ES256 | Algorithm::ES384),
        Some("RSA") => matches!(algorithm, Algorithm::RS256 | Algorithm::PS256),
        Some("OKP") => algorithm == Algorithm::EdDSA,
        _ => false,
    };
    if !family_ok {
        return Err(DpopError::Key);
    }
    let mut validation = Validation::new(algorithm);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Claims>(proof, &key, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => DpopError::Signature,
            jsonwebtoken::errors::ErrorKind::Json(_) => DpopError::Malformed("the claims are not the expected JSON"),
            _ => DpopError::Signature,
        })?
        .claims;
    let jti = claims.jti.filter(|j| !j.is_empty() && j.len() <= 256).ok_or(DpopError::Missing("jti"))?;
    let htm = claims.htm.ok_or(DpopError::Missing("htm"))?;
    let htu = claims.htu.ok_or(DpopError::Missing("htu"))?;
    let iat = claims.iat.ok_or(DpopError::Missing("iat"))?;
    if htm != expected.htm {
        return Err(DpopError::Method);
    }
    if !same_target(&htu, expected.htu) {
        return Err(DpopError::Url);
    }
    if iat < expected.now - MAX_AGE_SECS || iat > expected.now + MAX_SKEW_SECS {
        return Err(DpopError::Time);
    }
    if let Some(token) = expected.access_token {
        let want = b64url(&sha256(token.as_bytes()));
        match claims.ath {
            None => return Err(DpopError::Missing("ath")),
            Some(a) if !bk_crypto::secret::ct_eq(a.as_bytes(), want.as_bytes()) => {
                return Err(DpopError::TokenHash);
            }
            Some(_) => {}
        }
    }
    if let Some(fresh) = expected.nonce
        && !claims.nonce.as_deref().is_some_and(fresh)
    {
        return Err(DpopError::Nonce);
    }
    Ok(Proof { jkt, jti, iat })
}

/// Server nonces (RFC 9449 §8), when required: a MAC of the current minute under a key every
/// instance derives from the master key, so any instance accepts what another handed out. A nonce
/// stays good for the minute it was made in and the next.
pub struct Nonces {
    key: bk_crypto::mac::MacKey,
}

const NONCE_WINDOW_SECS: i64 = 60;

impl Nonces {
    pub fn new(key: bk_crypto::mac::MacKey) -> Self {
        Self { key }
    }
    fn at(&self, window: i64) -> String {
        b64url(&self.key.sign(&window.to_be_bytes())[..18])
    }
    /// The nonce to hand out now (`DPoP-Nonce`).
    pub fn current(&self, now: i64) -> String {
        self.at(now.div_euclid(NONCE_WINDOW_SECS))
    }
    pub fn is_fresh(&self, nonce: &str, now: i64) -> bool {
        let w = now.div_euclid(NONCE_WINDOW_SECS);
        [w, w - 1].iter().any(|w| bk_crypto::secret::ct_eq(self.at(*w).as_bytes(), nonce.as_bytes()))
    }
}

/// Why a proof was refused, as the two faces say it: `invalid_dpop_proof`, or `use_dpop_nonce`
/// (the client retries with the nonce the answer's `DPoP-Nonce` header carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Proof(DpopError),
    #[error("this DPoP proof was already used (jti)")]
    Replayed,
    #[error("a DPoP request carries exactly one DPoP header, as text")]
    Header,
    #[error("a DPoP proof must carry the server's nonce: retry with the DPoP-Nonce given")]
    UseNonce,
}

impl Refusal {
    /// The OAuth error code (RFC 9449 §12.2).
    pub fn code(self) -> &'static str {
        match self {
            Refusal::UseNonce => "use_dpop_nonce",
            _ => "invalid_dpop_proof",
        }
    }
}

/// Checks proofs for both faces (token endpoint, resources): the proof itself, then that its `jti`
/// was never seen — in Redis when instances share one (so a proof replayed at another instance is
/// caught), in this process otherwise.
pub struct Guard {
    shared: Option<std::sync::Arc<dyn bk_limits::Limiter>>,
    seen: std::sync::Mutex<SeenProofs>,
    nonces: Option<Nonces>,
}

/// Proof ids seen in this process, forgotten once no proof with them could be accepted any more.
#[derive(Default)]
struct SeenProofs {
    ids: std::collections::HashMap<[u8; 32], i64>,
    sweep_at: usize,
}

/// How long a `jti` is remembered: as long as its proof's `iat` keeps it acceptable.
const REMEMBER_SECS: i64 = MAX_AGE_SECS + MAX_SKEW_SECS;

impl Guard {
    pub fn new(shared: Option<std::sync::Arc<dyn bk_limits::Limiter>>, nonces: Option<Nonces>) -> Self {
        Self { shared, seen: Default::default(), nonces }
    }

    /// The nonce to send in `DPoP-Nonce`, when nonces are required.
    pub fn nonce(&self, now: i64) -> Option<String> {
        self.nonces.as_ref().map(|n| n.current(now))
    }

    /// Checks the request's one `DPoP` header value against the request.
    pub async fn check(
        &self,
        proof: &str,
        htm: &str,
        htu: &str,
        access_token: Option<&str>,
        now: i64,
    ) -> Result<Proof, Refusal> {
        let p = {
            let fresh = |n: &str| self.nonces.as_ref().is_some_and(|k| k.is_fresh(n, now));
            let expected = Expected {
                htm,
                htu,
                access_token,
                nonce: self.nonces.as_ref().map(|_| &fresh as &dyn Fn(&str) -> bool),
                now,
            };
            verify(proof, &expected).map_err(|e| match e {
                DpopError::Nonce => Refusal::UseNonce,
                e => Refusal::Proof(e),
            })?
        };
        // One use per key and id (two clients may pick the same id).
        let id = sha256(format!("{}\n{}", p.jkt, p.jti).as_bytes());
        let replayed = match &self.shared {
            Some(l) => l.acquire("dpop_proof_ids", &b64url(&id), 1, REMEMBER_SECS as u32).await.is_err(),
            None => !self.remember(id, now),
        };
        if replayed {
            return Err(Refusal::Replayed);
        }
        Ok(p)
    }

    /// Notes `id` as seen; false when it already was.
    fn remember(&self, id: [u8; 32], now: i64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.ids.get(&id).is_some_and(|at| now - at < REMEMBER_SECS) {
            return false;
        }
        seen.ids.insert(id, now);
        // Forget expired ids when the map has doubled since the last sweep (amortized O(1)).
        if seen.ids.len() > seen.sweep_at.max(1024) {
            seen.ids.retain(|_, at| now - *at < REMEMBER_SECS);
            seen.sweep_at = seen.ids.len() * 2;
        }
        true
    }
}

/// How a refused credential is answered with a `DPoP` challenge (RFC 9449 §7.1): when the request
/// used the DPoP scheme, or sent a DPoP-bound token as a bearer token.
pub struct DpopChallenge {
    /// The `WWW-Authenticate` value.
    pub header: http::HeaderValue,
    /// `invalid_dpop_proof`, `use_dpop_nonce` or `invalid_token` (for a JSON body to say the same).
    pub code: &'static str,
    /// A fresh nonce must go with it (`DPoP-Nonce`).
    pub with_nonce: bool,
}

/// The `DPoP` challenge for `e`, if the request calls for one; `resource_metadata` (RFC 9728) is
/// named in it as in the Bearer challenge, so a DPoP client can still discover where to sign in.
pub fn challenge(
    headers: &http::HeaderMap,
    e: &crate::VerifyError,
    resource_metadata: Option<&str>,
) -> Option<DpopChallenge> {
    use crate::VerifyError;
    if crate::bearer::dpop_token(headers).is_none() && !matches!(e, VerifyError::DpopBound) {
        return None;
    }
    let code = match e {
        VerifyError::Dpop(r) => r.code(),
        // The proof is not by the key the token is bound to: a proof check (§4.3 check 12).
        VerifyError::DpopKeyMismatch => "invalid_dpop_proof",
        _ => "invalid_token",
    };
    let description = e.to_string().replace(['"', '\\'], "'");
    let mut value =
        format!("DPoP error=\"{code}\", error_description=\"{description}\", algs=\"{}\"", ALGORITHMS.join(" "));
    if let Some(url) = resource_metadata {
        value.push_str(&format!(", resource_metadata=\"{url}\""));
    }
    let header = http::HeaderValue::from_str(&value).ok()?;
    Some(DpopChallenge { header, code, with_nonce: matches!(e, VerifyError::Dpop(Refusal::UseNonce)) })
}

/// RFC 7638: SHA-256 over the JWK's required members in lexicographic order, no whitespace.
pub fn thumbprint(jwk: &serde_json::Map<String, Value>) -> Option<String> {
    let members: &[&str] = match jwk.get("kty")?.as_str()? {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    let mut canonical = serde_json::Map::new();
    for m in members {
        canonical.insert((*m).to_owned(), Value::String(jwk.get(*m)?.as_str()?.to_owned()));
    }
    // serde_json's map keeps keys sorted (no preserve_order feature), as RFC 7638 wants.
    let json = serde_json::to_string(&Value::Object(canonical)).ok()?;
    Some(b64url(&sha256(json.as_bytes())))
}

/// `htu` names the same target as the request: scheme and host compared without case, default
/// ports dropped, query and fragment ignored (RFC 9449 §4.3 check 9 with RFC 3986 normalization).
fn same_target(htu: &str, request: &str) -> bool {
    fn norm(s: &str) -> Option<(String, String, u16, String)> {
        let (scheme, rest) = s.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let rest = rest.split(['?', '#']).next()?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let default = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => return None,
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => match p.parse::<u16>() {
                Ok(p) => (h, p),
                Err(_) if authority.ends_with(']') => (authority, default),
                Err(_) => return None,
            },
            _ => (authority, default),
        };
        Some((scheme, host.to_ascii_lowercase(), port, path.to_owned()))
    }
    match (norm(htu), norm(request)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_compare_after_normalization() {
        assert!(same_target("https://AS.example.com/token", "https://as.example.com/token"));
        assert!(same_target("https://as.example.com:443/token?x=1#f", "https://as.example.com/token"));
        assert!(same_target("http://127.0.0.1:8080/mcp", "http://127.0.0.1:8080/mcp"));
        assert!(!same_target("http://127.0.0.1:8081/mcp", "http://127.0.0.1:8080/mcp"));
        assert!(!same_target("https://as.example.com/token2", "https://as.example.com/token"));
        assert!(!same_target("http://as.example.com/token", "https://as.example.com/token"));
        assert!(same_target("http://[::1]:8080/mcp", "http://[::1]:8080/mcp"));
        assert!(!same_target("not a url", "https://as.example.com/token"));
    }

    #[test]
    fn the_rfc_7638_example_thumbprint() {
        // RFC 7638 §3.1.
        let jwk: Value = serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(thumbprint(jwk.as_object().unwrap()).unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn a_proof_without_the_dpop_type_or_with_a_symmetric_alg_is_refused() {
        let header = |h: Value| format!("{}.e30.sig", b64url(h.to_string().as_bytes()));
        let expected = Expected { htm: "POST", htu: "https://as/token", access_token: None, nonce: None, now: 0 };
        assert_eq!(verify(&header(serde_json::json!({"typ": "JWT", "alg": "ES256"})), &expected), Err(DpopError::Type));
        assert_eq!(
            verify(&header(serde_json::json!({"typ": "dpop+jwt", "alg": "HS256"})), &expected),
            Err(DpopError::Algorithm)
        );
        assert_eq!(
            verify(&header(serde_json::json!({"typ": "dpop+jwt", "alg": "none"})), &expected),
            Err(DpopError::Algorithm)
        );
        let private = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256",
            "jwk": {"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "d": "secret"}});
        assert_eq!(verify(&header(private), &expected), Err(DpopError::Key));
        assert!(matches!(verify("a.b", &expected), Err(DpopError::Malformed(_))));
    }

    /// A P-256 key and proofs signed with it, as a client library makes them.
    struct Client {
        key: aws_lc_rs::signature::EcdsaKeyPair,
        jwk: Value,
    }

    impl Client {
        fn new() -> Self {
            use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
            let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
            let public = key.public_key().as_ref().to_vec(); // 0x04 || x || y
            let jwk = serde_json::json!({"kty": "EC", "crv": "P-256",
                "x": b64url(&public[1..33]), "y": b64url(&public[33..65])});
            Self { key, jwk }
        }
        fn proof(&self, claims: Value) -> String {
            let header = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk});
            let input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let sig = self.key.sign(&rng, input.as_bytes()).unwrap();
            format!("{input}.{}", b64url(sig.as_ref()))
        }
    }

    #[test]
    fn a_real_proof_verifies_and_each_mismatch_is_named() {
        let c = Client::new();
        let now = 1_800_000_000;
        let token = "eyJ.access.token";
        let ath = b64url(&sha256(token.as_bytes()));
        let good =
            serde_json::json!({"jti": "j1", "htm": "POST", "htu": "http://127.0.0.1:8080/mcp", "iat": now, "ath": ath});
        let expected =
            Expected { htm: "POST", htu: "http://127.0.0.1:8080/mcp", access_token: Some(token), nonce: None, now };
        let p = verify(&c.proof(good.clone()), &expected).unwrap();
        assert_eq!(p.jkt, thumbprint(c.jwk.as_object().unwrap()).unwrap());
        assert_eq!(p.jti, "j1");
        let with = |k: &str, v: Value| {
            let mut claims = good.clone();
            claims[k] = v;
            verify(&c.proof(claims), &expected)
        };
        assert_eq!(with("htm", "GET".into()), Err(DpopError::Method));
        assert_eq!(with("htu", "http://127.0.0.1:8080/other".into()), Err(DpopError::Url));
        assert_eq!(with("iat", (now - MAX_AGE_SECS - 1).into()), Err(DpopError::Time));
        assert_eq!(with("iat", (now + MAX_SKEW_SECS + 1).into()), Err(DpopError::Time));
        assert_eq!(with("ath", b64url(&sha256(b"another token")).into()), Err(DpopError::TokenHash));
        let mut no_ath = good.clone();
        no_ath.as_object_mut().unwrap().remove("ath");
        assert_eq!(verify(&c.proof(no_ath), &expected), Err(DpopError::Missing("ath")));
        // Signed by another key than the one in the header.
        let other = Client::new();
        let forged = c.proof(good.clone());
        let (head, _) = forged.rsplit_once('.').unwrap();
        let resigned = other.proof(good.clone());
        let (_, sig) = resigned.rsplit_once('.').unwrap();
        assert_eq!(verify(&format!("{head}.{sig}"), &expected), Err(DpopError::Signature));
        // A server nonce, when asked for.
        let fresh = |n: &str| n == "n-1";
        let with_nonce = Expected { nonce: Some(&fresh), ..expected };
        assert_eq!(verify(&c.proof(good.clone()), &with_nonce), Err(DpopError::Nonce));
        let mut noncey = good.clone();
        noncey["nonce"] = "n-1".into();
        assert!(verify(&c.proof(noncey), &with_nonce).is_ok());
    }
}
