//! An OpenID Connect provider run by the tests (discovery, an authorization endpoint that signs
//! its configured person in at once, a token endpoint that checks the client secret, the code and
//! the PKCE verifier, and ES256 ID tokens whose keys a test can rotate), and the browser's way
//! through it: "Continue with Acme SSO" on the login page, the provider, the callback. Used by the
//! upstream sign-in tests and by the reference 002 walk-through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use crate::harness::{Server, challenge, input, location};

/// Who the provider signs in next.
#[derive(Clone)]
pub(crate) struct Person {
    pub sub: String,
    pub email: String,
    pub email_verified: Value,
    pub hd: Option<String>,
    /// More claims in the ID token.
    pub extra: Vec<(String, Value)>,
}

impl Person {
    pub fn verified(sub: &str, email: &str) -> Person {
        Person { sub: sub.into(), email: email.into(), email_verified: json!(true), hd: None, extra: Vec::new() }
    }
}

pub(crate) struct Code {
    nonce: String,
    challenge: String,
    redirect_uri: String,
    person: Person,
}

pub(crate) struct IdpState {
    pub issuer: String,
    /// The signing keys, the first signs; all are published.
    pub keys: Vec<(String, EcdsaKeyPair)>,
    /// Signs with a key the JWKS does not publish (a forged `kid`).
    pub sign_with_unpublished: Option<(String, EcdsaKeyPair)>,
    pub person: Person,
    pub codes: HashMap<String, Code>,
    /// Replaces the nonce in the next ID tokens.
    pub nonce_override: Option<String>,
    pub jwks_fetches: usize,
    /// The parameters of the last authorization request.
    pub last_authorize: HashMap<String, String>,
}

/// The provider the tests run.
#[derive(Clone)]
pub(crate) struct TestIdp {
    pub base: String,
    pub state: Arc<Mutex<IdpState>>,
}

pub(crate) const CLIENT_ID: &str = "bridgekeeper-client";
pub(crate) const CLIENT_SECRET: &str = "idp-client-secret-do-not-log";

pub(crate) fn new_key() -> EcdsaKeyPair {
    EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap()
}

fn jwk(kid: &str, key: &EcdsaKeyPair) -> Value {
    let point = key.public_key().as_ref();
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
           "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])})
}

fn sign(kid: &str, key: &EcdsaKeyPair, claims: &Value) -> String {
    let header = B64.encode(json!({"alg": "ES256", "typ": "JWT", "kid": kid}).to_string());
    let payload = B64.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let sig = key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", B64.encode(sig.as_ref()))
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

async fn discovery(State(idp): State<TestIdp>) -> Response {
    let b = &idp.base;
    (
        [(header::CACHE_CONTROL, "max-age=300")],
        axum::Json(json!({
            "issuer": b,
            "authorization_endpoint": format!("{b}/authorize"),
            "token_endpoint": format!("{b}/token"),
            "jwks_uri": format!("{b}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        })),
    )
        .into_response()
}

async fn jwks(State(idp): State<TestIdp>) -> Response {
    let mut s = idp.state.lock().unwrap();
    s.jwks_fetches += 1;
    let keys: Vec<Value> = s.keys.iter().map(|(kid, k)| jwk(kid, k)).collect();
    ([(header::CACHE_CONTROL, "max-age=3600")], axum::Json(json!({ "keys": keys }))).into_response()
}

/// Signs the configured person in at once and sends the browser back with a code.
async fn authorize(State(idp): State<TestIdp>, Query(q): Query<HashMap<String, String>>) -> Response {
    assert_eq!(q.get("response_type").map(String::as_str), Some("code"));
    assert_eq!(q.get("client_id").map(String::as_str), Some(CLIENT_ID));
    assert_eq!(q.get("code_challenge_method").map(String::as_str), Some("S256"), "PKCE S256 is sent");
    assert!(q.get("scope").unwrap().split(' ').any(|s| s == "openid"));
    let code = format!("code-{}", uuid_like());
    let redirect_uri = q["redirect_uri"].clone();
    let mut s = idp.state.lock().unwrap();
    s.last_authorize = q.clone();
    let person = s.person.clone();
    s.codes.insert(
        code.clone(),
        Code {
            nonce: q["nonce"].clone(),
            challenge: q["code_challenge"].clone(),
            redirect_uri: redirect_uri.clone(),
            person,
        },
    );
    let mut back = url::Url::parse(&redirect_uri).unwrap();
    back.query_pairs_mut().append_pair("code", &code).append_pair("state", &q["state"]);
    (StatusCode::SEE_OTHER, [(header::LOCATION, back.to_string())]).into_response()
}

async fn token(State(idp): State<TestIdp>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let basic =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}")));
    if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(basic.as_str()) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"}))).into_response();
    }
    let mut s = idp.state.lock().unwrap();
    let Some(code) = s.codes.remove(f.get("code").map(String::as_str).unwrap_or("")) else {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_grant"}))).into_response();
    };
    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
    if challenge(&verifier) != code.challenge || f.get("redirect_uri") != Some(&code.redirect_uri) {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_grant"}))).into_response();
    }
    let p = &code.person;
    let t = now();
    let mut claims = json!({
        "iss": s.issuer, "sub": p.sub, "aud": CLIENT_ID, "exp": t + 300, "iat": t,
        "nonce": s.nonce_override.clone().unwrap_or(code.nonce.clone()),
        "email": p.email, "email_verified": p.email_verified, "name": "Test Person",
    });
    if let Some(hd) = &p.hd {
        claims["hd"] = json!(hd);
    }
    for (name, value) in &p.extra {
        claims[name] = value.clone();
    }
    let id_token = match &s.sign_with_unpublished {
        Some((kid, key)) => sign(kid, key, &claims),
        None => sign(&s.keys[0].0, &s.keys[0].1, &claims),
    };
    axum::Json(json!({"access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": id_token}))
        .into_response()
}

fn uuid_like() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("{}-{}", now(), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

impl TestIdp {
    pub async fn start() -> TestIdp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(IdpState {
            issuer: base.clone(),
            keys: vec![("key-1".into(), new_key())],
            sign_with_unpublished: None,
            person: Person::verified("sub-1", "new.person@acme.example"),
            codes: HashMap::new(),
            nonce_override: None,
            jwks_fetches: 0,
            last_authorize: HashMap::new(),
        }));
        let idp = TestIdp { base, state };
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", axum::routing::get(discovery))
            .route("/jwks", axum::routing::get(jwks))
            .route("/authorize", axum::routing::get(authorize))
            .route("/token", axum::routing::post(token))
            .with_state(idp.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        idp
    }

    pub fn sign_in_as(&self, person: Person) {
        self.state.lock().unwrap().person = person;
    }

    /// The Bridgekeeper environment that configures this provider as `acme` (and more as asked).
    pub fn env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("BRIDGEKEEPER_IDP__ALLOW_PRIVATE_ADDRESSES", "true"),
            ("BRIDGEKEEPER_IDP__ALLOW_HTTP_LOOPBACK", "true"),
            ("BRIDGEKEEPER_IDP__PROVIDERS__ACME__DISPLAY_NAME", "Acme SSO"),
            ("BRIDGEKEEPER_IDP__PROVIDERS__ACME__CLIENT_ID", CLIENT_ID),
            ("BRIDGEKEEPER_IDP__PROVIDERS__ACME__CLIENT_SECRET", CLIENT_SECRET),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        env.push(("BRIDGEKEEPER_IDP__PROVIDERS__ACME__ISSUER".into(), self.base.clone()));
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        env
    }

    pub fn server(&self, extra: &[(&str, &str)]) -> Server {
        let env = self.env(extra);
        let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Server::start_with(&refs)
    }
}

/// Presses "Continue with Acme SSO" on the login page (for `next`) and follows the provider back:
/// the provider's redirect to the callback and the callback's answer.
pub(crate) async fn continue_with(http: &reqwest::Client, server: &Server, next: &str) -> (String, reqwest::Response) {
    let login =
        http.get(server.url(&format!("/login?next={}", urlenc(next)))).send().await.unwrap().text().await.unwrap();
    assert!(login.contains("Continue with Acme SSO"), "{login}");
    start_at(http, server, "/login/idp", &login, next).await
}

pub(crate) fn urlenc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Posts a provider button's form found in `page` and follows the provider back.
pub(crate) async fn start_at(
    http: &reqwest::Client,
    server: &Server,
    action: &str,
    page: &str,
    next: &str,
) -> (String, reqwest::Response) {
    let mut form = vec![("csrf_token", input(page, "csrf_token")), ("idp", "acme".to_owned())];
    if action == "/login/idp" {
        form.push(("next", next.to_owned()));
    }
    let res = http.post(server.url(action)).form(&form).send().await.unwrap();
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let at_idp = location(&res);
    let res = http.get(&at_idp).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let callback = location(&res);
    assert!(callback.starts_with(&format!("{}/login/idp/callback?", server.issuer)), "{callback}");
    let answer = http.get(&callback).send().await.unwrap();
    (callback, answer)
}
