//! One upstream OpenID Connect provider as a relying party sees it: its discovery document
//! (fetched through the SSRF-safe fetcher, checked — its `issuer` must be the configured one, S256
//! must be offered — and cached), its signing keys (cached per `Cache-Control`, fetched again when
//! an ID token names a key id the cached set lacks, at most once per `REFETCH_SECS`, so a provider
//! that rotates its keys is followed at once and forged key ids cannot make us hammer it), the code
//! exchange, and the checks of the ID token: signature, `iss`, `aud`, `azp`, `exp`/`iat` with a
//! small skew, and `nonce`. Claims the ID token lacks (the email of a provider that keeps them for
//! userinfo) come from the userinfo endpoint, whose `sub` must be the token's.
//!
//! Hand-written on `jsonwebtoken` rather than the `openidconnect` crate: that crate brings its own
//! HTTP client plumbing (we must fetch through `bk_outbound`, which refuses private addresses and
//! redirects) and has no key-rotation refetch; what is left is a few checks, each tested here.

use std::sync::Mutex;

use bk_domain::UnixTime;
use bk_outbound::SafeFetcher;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::IdpSettings;

/// Clocks may differ this much (`exp`, `iat`).
pub const SKEW_SECS: i64 = 60;
/// An ID token issued longer ago than this is refused (the code was just exchanged for it).
const MAX_TOKEN_AGE_SECS: i64 = 600;
/// Documents are used this long without `Cache-Control: max-age`, never less than the minimum nor
/// more than the maximum whatever the answer says.
const DEFAULT_TTL_SECS: i64 = 3600;
const MIN_TTL_SECS: i64 = 60;
const MAX_TTL_SECS: i64 = 86_400;
/// A key set is fetched again for an unknown `kid` at most this often.
pub const REFETCH_SECS: i64 = 10;
/// The algorithms an ID token may be signed with (never `none`, never HMAC with the client secret).
const ALGORITHMS: [Algorithm; 6] =
    [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::ES256, Algorithm::ES384];

/// Why a sign-in through the provider failed; said to the person (and audited) by its code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("the identity provider could not be reached or answered wrongly: {0}")]
    Unavailable(String),
    #[error("the identity provider's configuration document is not usable: {0}")]
    Discovery(String),
    #[error("the identity provider refused the sign-in code: {0}")]
    Exchange(String),
    #[error("the identity provider's ID token is not valid: {0}")]
    IdToken(&'static str),
}

impl ProviderError {
    pub fn code(&self) -> &'static str {
        match self {
            ProviderError::Unavailable(_) => "idp_unavailable",
            ProviderError::Discovery(_) => "idp_discovery",
            ProviderError::Exchange(_) => "code_exchange",
            ProviderError::IdToken(_) => "id_token_invalid",
        }
    }
}

/// What the discovery document says that we use.
#[derive(Clone, Debug)]
pub struct Discovery {
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub jwks_uri: Url,
    pub userinfo_endpoint: Option<Url>,
    /// `client_secret_basic` is offered (the default when the document says nothing).
    pub basic_auth: bool,
}

#[derive(Clone)]
struct Key {
    kid: Option<String>,
    alg: Option<Algorithm>,
    kty: String,
    key: DecodingKey,
}

fn fits(kty: &str, alg: Algorithm) -> bool {
    match kty {
        "RSA" => matches!(alg, Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256),
        "EC" => matches!(alg, Algorithm::ES256 | Algorithm::ES384),
        _ => false,
    }
}

#[derive(Default)]
struct Cache {
    discovery: Option<(Discovery, UnixTime)>,
    keys: Option<(Vec<Key>, UnixTime)>,
    refetched_at: Option<UnixTime>,
}

/// The claims of a verified ID token (with userinfo's where the token lacked them).
#[derive(Clone, Debug)]
pub struct VerifiedIdentity {
    pub subject: String,
    pub claims: serde_json::Map<String, Value>,
}

/// A configured provider with its cached documents.
pub struct Provider {
    pub settings: IdpSettings,
    cache: Mutex<Cache>,
}

fn ttl(max_age: Option<u64>) -> i64 {
    max_age.map_or(DEFAULT_TTL_SECS, |s| i64::try_from(s).unwrap_or(MAX_TTL_SECS)).clamp(MIN_TTL_SECS, MAX_TTL_SECS)
}

fn url_field(doc: &Value, name: &str, fetcher: &SafeFetcher) -> Result<Url, ProviderError> {
    let text = doc[name].as_str().ok_or_else(|| ProviderError::Discovery(format!("{name} is missing")))?;
    let url = Url::parse(text).map_err(|_| ProviderError::Discovery(format!("{name} is not a URL")))?;
    if !fetcher.allows(&url) {
        return Err(ProviderError::Discovery(format!("{name} is not an https URL this server may reach")));
    }
    Ok(url)
}

/// Checks a discovery document against the configured issuer.
pub fn parse_discovery(doc: &Value, issuer: &str, fetcher: &SafeFetcher) -> Result<Discovery, ProviderError> {
    // OpenID Connect Discovery §4.3: the document's issuer must be exactly the one asked.
    if doc["issuer"].as_str() != Some(issuer) {
        return Err(ProviderError::Discovery(format!("its issuer is not {issuer}")));
    }
    let s256 = doc["code_challenge_methods_supported"]
        .as_array()
        .is_some_and(|m| m.iter().any(|m| m.as_str() == Some("S256")));
    if !s256 {
        return Err(ProviderError::Discovery(
            "it does not offer PKCE with S256 (code_challenge_methods_supported)".into(),
        ));
    }
    let basic_auth = match doc["token_endpoint_auth_methods_supported"].as_array() {
        None => true,
        Some(m) => m.iter().any(|m| m.as_str() == Some("client_secret_basic")),
    };
    let userinfo_endpoint = match doc.get("userinfo_endpoint") {
        Some(Value::String(_)) => Some(url_field(doc, "userinfo_endpoint", fetcher)?),
        _ => None,
    };
    Ok(Discovery {
        authorization_endpoint: url_field(doc, "authorization_endpoint", fetcher)?,
        token_endpoint: url_field(doc, "token_endpoint", fetcher)?,
        jwks_uri: url_field(doc, "jwks_uri", fetcher)?,
        userinfo_endpoint,
        basic_auth,
    })
}

/// The usable signing keys of a JWK Set (others — encryption keys, unknown types — are skipped).
fn parse_keys(jwks: &Value) -> Vec<Key> {
    let keys = jwks["keys"].as_array().map(Vec::as_slice).unwrap_or_default();
    keys.iter()
        .filter(|k| k["use"].as_str().is_none_or(|u| u == "sig"))
        .filter_map(|k| {
            let kty = k["kty"].as_str()?.to_owned();
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(k.clone()).ok()?;
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            let alg = match k["alg"].as_str() {
                Some(a) => Some(a.parse::<Algorithm>().ok().filter(|a| fits(&kty, *a))?),
                None => None,
            };
            Some(Key { kid: k["kid"].as_str().map(str::to_owned), alg, kty, key })
        })
        .collect()
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
    access_token: Option<String>,
    error: Option<String>,
}

impl Provider {
    pub fn new(settings: IdpSettings) -> Self {
        Self { settings, cache: Mutex::default() }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The discovery document, from the cache while it is fresh; a stale copy stands in while the
    /// provider cannot be reached.
    pub async fn discovery(&self, fetcher: &SafeFetcher, now: UnixTime) -> Result<Discovery, ProviderError> {
        let stale = match &self.cache().discovery {
            Some((d, until)) if *until > now => return Ok(d.clone()),
            Some((d, _)) => Some(d.clone()),
            None => None,
        };
        let url = format!("{}/.well-known/openid-configuration", self.settings.issuer.trim_end_matches('/'));
        let url = Url::parse(&url).map_err(|_| ProviderError::Discovery("the issuer is not a URL".into()))?;
        let fetched = match fetcher.get(&url, "application/json").await {
            Ok(f) => f,
            Err(e) => {
                return match stale {
                    Some(d) => {
                        tracing::warn!(idp = %self.settings.id, error = %e, "discovery refresh failed; using the cached copy");
                        Ok(d)
                    }
                    None => Err(ProviderError::Unavailable(e.to_string())),
                };
            }
        };
        let doc: Value =
            serde_json::from_slice(&fetched.body).map_err(|_| ProviderError::Discovery("it is not JSON".into()))?;
        let d = parse_discovery(&doc, &self.settings.issuer, fetcher)?;
        let until = if fetched.no_store { now } else { now + ttl(fetched.max_age) };
        self.cache().discovery = Some((d.clone(), until));
        Ok(d)
    }

    async fn fetch_keys(&self, fetcher: &SafeFetcher, uri: &Url, now: UnixTime) -> Result<Vec<Key>, ProviderError> {
        let fetched =
            fetcher.get(uri, "application/json").await.map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        let doc: Value = serde_json::from_slice(&fetched.body)
            .map_err(|_| ProviderError::Unavailable("its JWKS is not JSON".into()))?;
        let keys = parse_keys(&doc);
        let until = if fetched.no_store { now } else { now + ttl(fetched.max_age) };
        self.cache().keys = Some((keys.clone(), until));
        Ok(keys)
    }

    /// The keys that may have signed a token with this header: cached while fresh; fetched again
    /// once when the cached set has no key with the token's `kid` (a rotation), rate limited.
    async fn keys_for(
        &self,
        fetcher: &SafeFetcher,
        uri: &Url,
        kid: Option<&str>,
        now: UnixTime,
    ) -> Result<Vec<Key>, ProviderError> {
        let has = |keys: &[Key]| kid.is_none_or(|k| keys.iter().any(|x| x.kid.as_deref() == Some(k)));
        let cached = self.cache().keys.clone();
        match cached {
            Some((keys, until)) if until > now => {
                if has(&keys) {
                    return Ok(keys);
                }
                {
                    let mut c = self.cache();
                    if c.refetched_at.is_some_and(|t| now - t < REFETCH_SECS) {
                        return Ok(keys);
                    }
                    c.refetched_at = Some(now);
                }
                tracing::info!(idp = %self.settings.id, "an ID token names a key id we lack: fetching the provider's keys again");
                self.fetch_keys(fetcher, uri, now).await
            }
            _ => self.fetch_keys(fetcher, uri, now).await,
        }
    }

    /// Exchanges the code (PKCE verifier, client secret) and verifies the ID token it returns.
    pub async fn redeem(
        &self,
        fetcher: &SafeFetcher,
        redirect_uri: &str,
        code: &str,
        verifier: &str,
        nonce: &str,
        now: UnixTime,
    ) -> Result<VerifiedIdentity, ProviderError> {
        let d = self.discovery(fetcher, now).await?;
        let s = &self.settings;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        let mut req =
            fetcher.client().post(d.token_endpoint.clone()).header(reqwest::header::ACCEPT, "application/json");
        if d.basic_auth {
            // RFC 6749 §2.3.1: both parts form-urlencoded before Basic.
            let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
            req = req.basic_auth(enc(&s.client_id), Some(enc(s.client_secret.expose())));
        } else {
            form.push(("client_id", &s.client_id));
            form.push(("client_secret", s.client_secret.expose()));
        }
        let answer = fetcher.send(req.form(&form)).await.map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        let body: TokenAnswer = serde_json::from_slice(&answer.body)
            .map_err(|_| ProviderError::Exchange(format!("HTTP {} without a JSON answer", answer.status)))?;
        if answer.status != 200 {
            let error =
                body.error.unwrap_or_default().chars().filter(char::is_ascii_graphic).take(64).collect::<String>();
            return Err(ProviderError::Exchange(format!("HTTP {} {error}", answer.status)));
        }
        let id_token = body.id_token.ok_or(ProviderError::Exchange("no id_token in the answer".into()))?;
        let mut identity = self.verify_id_token(fetcher, &d, &id_token, nonce, now).await?;
        let wants = [s.email_claim.as_str(), "email_verified"];
        if wants.iter().any(|c| !identity.claims.contains_key(*c))
            && let (Some(userinfo), Some(access_token)) = (&d.userinfo_endpoint, &body.access_token)
        {
            self.merge_userinfo(fetcher, userinfo, access_token, &mut identity).await?;
        }
        Ok(identity)
    }

    async fn merge_userinfo(
        &self,
        fetcher: &SafeFetcher,
        userinfo: &Url,
        access_token: &str,
        identity: &mut VerifiedIdentity,
    ) -> Result<(), ProviderError> {
        let req = fetcher
            .client()
            .get(userinfo.clone())
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json");
        let answer = fetcher.send(req).await.map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        if answer.status != 200 {
            return Err(ProviderError::Unavailable(format!("userinfo answered HTTP {}", answer.status)));
        }
        let info: serde_json::Map<String, Value> = serde_json::from_slice(&answer.body)
            .map_err(|_| ProviderError::Unavailable("userinfo is not a JSON object".into()))?;
        // OpenID Connect Core §5.3.2: userinfo of another subject is not this person's.
        if info.get("sub").and_then(Value::as_str) != Some(identity.subject.as_str()) {
            return Err(ProviderError::IdToken("userinfo names another subject"));
        }
        for (k, v) in info {
            identity.claims.entry(k).or_insert(v);
        }
        Ok(())
    }

    /// Verifies an ID token: its signature by one of the provider's keys, then its claims.
    pub(crate) async fn verify_id_token(
        &self,
        fetcher: &SafeFetcher,
        d: &Discovery,
        token: &str,
        nonce: &str,
        now: UnixTime,
    ) -> Result<VerifiedIdentity, ProviderError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| ProviderError::IdToken("it is not a JWT"))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(ProviderError::IdToken("its alg is not an asymmetric signature we accept"));
        }
        let kid = header.kid.as_deref().filter(|k| k.len() <= 200);
        let keys = self.keys_for(fetcher, &d.jwks_uri, kid, now).await?;
        let candidates = keys.iter().filter(|k| {
            fits(&k.kty, header.alg)
                && k.alg.is_none_or(|a| a == header.alg)
                && kid.is_none_or(|kid| k.kid.as_deref() == Some(kid))
        });
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[self.settings.issuer.as_str()]);
        validation.set_audience(&[self.settings.client_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        // Time is checked below against the injected clock, not the system's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let mut claims = None;
        for key in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                Err(e) => match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => continue,
                    jsonwebtoken::errors::ErrorKind::InvalidIssuer => {
                        return Err(ProviderError::IdToken("iss is not the provider"));
                    }
                    jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                        return Err(ProviderError::IdToken("aud does not name this server's client id"));
                    }
                    jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_) => {
                        return Err(ProviderError::IdToken("it lacks one of exp, iat, iss, aud, sub"));
                    }
                    _ => continue,
                },
            }
        }
        let claims = claims.ok_or(ProviderError::IdToken("no key of the provider verifies its signature"))?;
        check_claims(&claims, &self.settings.client_id, nonce, now)?;
        let subject = claims.get("sub").and_then(Value::as_str).unwrap_or_default().to_owned();
        Ok(VerifiedIdentity { subject, claims })
    }
}

/// The checks jsonwebtoken does not make: `azp`, times against `now`, `nonce`, `sub`.
pub(crate) fn check_claims(
    claims: &serde_json::Map<String, Value>,
    client_id: &str,
    nonce: &str,
    now: UnixTime,
) -> Result<(), ProviderError> {
    let audiences = match claims.get("aud") {
        Some(Value::Array(a)) => a.len(),
        _ => 1,
    };
    match claims.get("azp").map(Value::as_str) {
        // OpenID Connect Core §3.1.3.7: with several audiences, azp must be there and be us.
        None if audiences > 1 => return Err(ProviderError::IdToken("it has several audiences and no azp")),
        None => {}
        Some(Some(azp)) if azp == client_id => {}
        Some(_) => return Err(ProviderError::IdToken("azp is another client")),
    }
    let time = |name| claims.get(name).and_then(Value::as_i64);
    let exp = time("exp").ok_or(ProviderError::IdToken("exp is not a number"))?;
    let iat = time("iat").ok_or(ProviderError::IdToken("iat is not a number"))?;
    if exp + SKEW_SECS <= now {
        return Err(ProviderError::IdToken("it has expired"));
    }
    if iat > now + SKEW_SECS || iat < now - MAX_TOKEN_AGE_SECS - SKEW_SECS {
        return Err(ProviderError::IdToken("iat is in the future or too long ago"));
    }
    if let Some(nbf) = time("nbf")
        && nbf > now + SKEW_SECS
    {
        return Err(ProviderError::IdToken("it is not valid yet (nbf)"));
    }
    let presented = claims.get("nonce").and_then(Value::as_str).unwrap_or_default();
    if !bk_crypto::secret::ct_eq(presented.as_bytes(), nonce.as_bytes()) {
        return Err(ProviderError::IdToken("its nonce is not the one this sign-in sent"));
    }
    match claims.get("sub").and_then(Value::as_str) {
        Some(s) if !s.is_empty() && s.len() <= 255 => Ok(()),
        _ => Err(ProviderError::IdToken("sub is missing or longer than 255 characters")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn id_token_claims_are_checked() {
        let ok = json!({"sub": "s1", "aud": "cli", "exp": 1_100, "iat": 1_000, "nonce": "n1"});
        assert_eq!(check_claims(&claims(ok.clone()), "cli", "n1", 1_000), Ok(()));
        let with = |k: &str, v: Value| {
            let mut c = claims(ok.clone());
            c.insert(k.into(), v);
            c
        };
        let refused = |c, why: &str| {
            let r = check_claims(&c, "cli", "n1", 1_000);
            assert!(matches!(r, Err(ProviderError::IdToken(_))), "{why}: {r:?}");
        };
        refused(with("nonce", json!("n2")), "another nonce");
        refused(claims(json!({"sub": "s1", "aud": "cli", "exp": 1_100, "iat": 1_000})), "no nonce");
        refused(with("exp", json!(900)), "expired beyond the skew");
        assert!(check_claims(&with("exp", json!(990)), "cli", "n1", 1_000).is_ok(), "within the skew");
        refused(with("iat", json!(1_200)), "issued in the future");
        refused(with("iat", json!(1_000 - MAX_TOKEN_AGE_SECS - SKEW_SECS - 1)), "issued too long ago");
        refused(with("aud", json!(["cli", "other"])), "several audiences, no azp");
        assert!(check_claims(&with("azp", json!("cli")), "cli", "n1", 1_000).is_ok());
        let mut several = with("aud", json!(["cli", "other"]));
        several.insert("azp".into(), json!("cli"));
        assert!(check_claims(&several, "cli", "n1", 1_000).is_ok());
        refused(with("azp", json!("other")), "azp is another client");
        refused(with("sub", json!("")), "empty sub");
    }

    fn fetcher() -> SafeFetcher {
        SafeFetcher::new(bk_outbound::FetchPolicy {
            allow_private_addresses: false,
            allow_http_loopback: false,
            extra_roots_pem: None,
            timeout: std::time::Duration::from_secs(2),
            max_body_bytes: 1024,
        })
        .unwrap()
    }

    #[test]
    fn discovery_must_name_the_issuer_and_offer_s256() {
        let f = fetcher();
        let doc = json!({
            "issuer": "https://idp.example",
            "authorization_endpoint": "https://idp.example/auth",
            "token_endpoint": "https://idp.example/token",
            "jwks_uri": "https://idp.example/jwks",
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
        });
        let d = parse_discovery(&doc, "https://idp.example", &f).unwrap();
        assert!(!d.basic_auth);
        assert!(parse_discovery(&doc, "https://other.example", &f).is_err(), "another issuer");
        let mut plain = doc.clone();
        plain["code_challenge_methods_supported"] = json!(["plain"]);
        assert!(parse_discovery(&plain, "https://idp.example", &f).is_err(), "no S256");
        let mut private = doc.clone();
        private["token_endpoint"] = json!("https://10.0.0.1/token");
        assert!(parse_discovery(&private, "https://idp.example", &f).is_err(), "a private address");
        let mut http = doc;
        http["jwks_uri"] = json!("http://idp.example/jwks");
        assert!(parse_discovery(&http, "https://idp.example", &f).is_err(), "plain http");
    }

    #[test]
    fn cache_lifetimes_are_bounded() {
        assert_eq!(ttl(None), DEFAULT_TTL_SECS);
        assert_eq!(ttl(Some(1)), MIN_TTL_SECS);
        assert_eq!(ttl(Some(10_000_000)), MAX_TTL_SECS);
        assert_eq!(ttl(Some(600)), 600);
    }
}
