//! Machine clients (issue 19): `client_credentials` (RFC 6749 §4.4) for confidential clients an
//! operator made and allowed it, acting for the account the operator bound them to or for none;
//! `private_key_jwt` client authentication (RFC 7523 §2.2) with keys registered inline or at a
//! `jwks_uri` (served here over HTTPS from a test CA); and what neither may do. Assertions and keys
//! are made here as a client library makes them (ES256 with aws-lc-rs).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Flow, Server, VERIFIER, jwt_parts, operator_token, query_param};

pub(crate) const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// A client's signing key (P-256), with its key id.
pub(crate) struct MachineKey {
    pair: EcdsaKeyPair,
    pub jwk: Value,
}

impl MachineKey {
    pub fn new(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let public = pair.public_key().as_ref().to_vec();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": B64.encode(&public[1..33]), "y": B64.encode(&public[33..65])});
        Self { pair, jwk }
    }

    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    pub fn sign(&self, header: Value, claims: Value) -> String {
        let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let sig = self.pair.sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }

    /// The claims of a good assertion of `client` for `aud` (a fresh `jti`).
    pub fn claims(client: &str, aud: &str) -> Value {
        json!({"iss": client, "sub": client, "aud": aud, "iat": now(), "exp": now() + 60,
            "jti": uuid::Uuid::new_v4().to_string()})
    }

    /// A good assertion of `client` for `aud`.
    pub fn assertion(&self, client: &str, aud: &str) -> String {
        self.sign(self.header(), Self::claims(client, aud))
    }

    pub fn header(&self) -> Value {
        json!({"alg": "ES256", "typ": "JWT", "kid": self.jwk["kid"]})
    }
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

pub(crate) fn token_url(server: &Server) -> String {
    format!("{}/api/v1/auth/token", server.issuer)
}

/// `POST /api/v1/auth-clients` as `token`: status and answer.
pub(crate) async fn create_client(server: &Server, token: &str, body: Value) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/auth-clients"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or_default())
}

/// An operator's client; panics unless created. (client id, secret if any)
pub(crate) async fn operator_client(server: &Server, op: &str, body: Value) -> (String, Option<String>) {
    let (status, v) = create_client(server, op, body).await;
    assert_eq!(status, 201, "{v}");
    (v["clientId"].as_str().unwrap().to_owned(), v["clientSecret"].as_str().map(str::to_owned))
}

/// The id of the account signed up as `email`, from the operator's accounts list.
pub(crate) async fn account_id(server: &Server, op: &str, email: &str) -> String {
    let v: Value = reqwest::Client::new()
        .get(server.url(&format!("/api/v1/admin/accounts?email={email}")))
        .bearer_auth(op)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["accounts"][0]["id"].as_str().unwrap_or_else(|| panic!("no account {email}: {v}")).to_owned()
}

/// A form POST to an OAuth endpoint, with HTTP Basic when `basic` is given: status and JSON.
pub(crate) async fn post_form(
    server: &Server,
    path: &str,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(server.url(path)).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or_default())
}

/// `client_credentials` with a client assertion: status and JSON.
pub(crate) async fn with_assertion(server: &Server, assertion: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_assertion_type", CLIENT_ASSERTION_TYPE),
        ("client_assertion", assertion),
    ];
    form.extend_from_slice(extra);
    post_form(server, "/api/v1/auth/token", &form, None).await
}

/// `tools/call whoami` on /mcp: HTTP status and the JSON answer.
async fn whoami(server: &Server, token: &str) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(server.url("/mcp"))
        .bearer_auth(token)
        .header("Accept", "application/json, text/event-stream")
        .header("X-Response-Format", "json")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}),
        )
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or_default())
}

async fn get_status(server: &Server, path: &str, token: &str) -> (u16, String) {
    let res = reqwest::Client::new().get(server.url(path)).bearer_auth(token).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// Polls `f` until it holds, for at most `secs` (revocation is seen within the caches' second).
async fn eventually<F, Fut>(secs: u64, what: &str, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(std::time::Instant::now() < deadline, "{what} did not happen within {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn machine_body(name: &str) -> Value {
    json!({"name": name, "grantTypes": ["client_credentials"], "allowedScopes": ["universal-mcp-read-write", "connections"]})
}

#[tokio::test]
async fn client_credentials_issues_an_access_token_and_no_refresh_token() {
    let server = Server::start();
    let op = operator_token(&server);
    let (id, secret) = operator_client(&server, &op, machine_body("nightly sync")).await;
    let secret = secret.expect("a confidential client gets a secret");
    let (status, v) = post_form(
        &server,
        "/api/v1/auth/token",
        &[("grant_type", "client_credentials"), ("scope", "universal-mcp-read-write account")],
        Some((&id, &secret)),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert!(v.get("refresh_token").is_none(), "RFC 6749 §4.4.3: no refresh token: {v}");
    assert_eq!(v["scope"], "universal-mcp-read-write", "narrowed to what the client may hold");
    assert!(v["expires_in"].as_i64().unwrap() > 0);
    let (header, claims) = jwt_parts(v["access_token"].as_str().unwrap());
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(claims["sub"], id, "RFC 9068 §2.2: the client is the subject of its own token");
    assert_eq!(claims["client_id"], id);
    assert!(claims.get("sid").is_none(), "an unbound machine token hangs off no session: {claims}");
    assert_eq!(claims["aud"], format!("{}/mcp", server.issuer));
    // client_secret_post works as well, and a resource of this server names the audience.
    let (status, v) = post_form(
        &server,
        "/api/v1/auth/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("resource", &server.issuer),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(jwt_parts(v["access_token"].as_str().unwrap()).1["aud"], server.issuer);
    let (status, v) = post_form(
        &server,
        "/api/v1/auth/token",
        &[("grant_type", "client_credentials"), ("resource", "https://elsewhere.example/api")],
        Some((&id, &secret)),
    )
    .await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_target")));
    // A wrong secret is refused as ever.
    let (status, v) =
        post_form(&server, "/api/v1/auth/token", &[("grant_type", "client_credentials")], Some((&id, "wrong"))).await;
    assert_eq!((status, v["error"].as_str()), (401, Some("invalid_client")));
    // A machine client made for client_credentials only runs no authorization-code flow.
    let (status, v) = post_form(
        &server,
        "/api/v1/auth/token",
        &[("grant_type", "authorization_code"), ("code", "bkc_x"), ("redirect_uri", REDIRECT)],
        Some((&id, &secret)),
    )
    .await;
    assert_eq!((status, v["error"].as_str()), (400, Some("unauthorized_client")), "{v}");
}

#[tokio::test]
async fn security_unbound_machine_token_reaches_no_tenant() {
    let server = Server::start();
    let op = operator_token(&server);
    let (id, secret) = operator_client(&server, &op, machine_body("unbound")).await;
    let secret = secret.unwrap();
    let form = [("grant_type", "client_credentials"), ("scope", "universal-mcp-read-write connections")];
    let (_, v) = post_form(&server, "/api/v1/auth/token", &form, Some((&id, &secret))).await;
    let token = v["access_token"].as_str().unwrap().to_owned();

    // Every tenant face refuses it, saying why.
    let (status, body) = whoami(&server, &token).await;
    assert_eq!(status, 401, "/mcp: {body}");
    assert!(body.to_string().contains("acts for no account"), "{body}");
    for path in ["/api/v1/account", "/api/v1/connections", "/api/v1/auth/userinfo", "/api/v1/providers/google/tools"] {
        let (status, text) = get_status(&server, path, &token).await;
        assert_eq!(status, 401, "{path}: {text}");
        assert!(text.contains("acts for no account"), "{path}: {text}");
    }
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/auth/pat"))
        .bearer_auth(&token)
        .json(&json!({"name": "x", "scopes": ["universal-mcp-read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "no PAT for nobody");

    // Introspection: active to its own client, as a client's token (no user, no session) …
    let (status, v) = post_form(&server, "/api/v1/auth/introspect", &[("token", &token)], Some((&id, &secret))).await;
    assert_eq!(status, 200);
    assert_eq!(v["active"], true, "{v}");
    assert_eq!((v["sub"].as_str(), v["client_id"].as_str()), (Some(id.as_str()), Some(id.as_str())));
    assert!(v.get("username").is_none() && v.get("sid").is_none(), "{v}");
    // … and to nobody else.
    let (other, other_secret) = operator_client(&server, &op, machine_body("other")).await;
    let (_, v) =
        post_form(&server, "/api/v1/auth/introspect", &[("token", &token)], Some((&other, &other_secret.unwrap())))
            .await;
    assert_eq!(v, json!({"active": false}));
    // It hangs off no session, so it cannot be revoked by itself: the answer says so.
    let (status, v) = post_form(&server, "/api/v1/auth/revoke", &[("token", &token)], Some((&id, &secret))).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("unsupported_token_type")), "{v}");
    // Taking the grant away ends it (introspection says inactive within the cache's second).
    let res = reqwest::Client::new()
        .put(server.url(&format!("/api/v1/auth-clients/{id}")))
        .bearer_auth(&op)
        .json(&json!({"name": "unbound", "grantTypes": ["urn:ietf:params:oauth:grant-type:token-exchange"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    eventually(3, "the token's end after the grant was taken away", || async {
        post_form(&server, "/api/v1/auth/introspect", &[("token", &token)], Some((&id, &secret))).await.1
            == json!({"active": false})
    })
    .await;
    let (status, v) = post_form(&server, "/api/v1/auth/token", &form, Some((&id, &secret))).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("unauthorized_client")), "{v}");
    // Nothing here logged a secret or a token.
    let logs = server.logs();
    assert!(!logs.contains(&secret) && !logs.contains(&token), "a credential reached the log");
}

#[tokio::test]
async fn client_credentials_of_a_bound_client_act_for_its_account() {
    let server = Server::start();
    let op = operator_token(&server);
    let flow = Flow::signup(&server, "tenant@example.com").await;
    let account = account_id(&server, &op, "tenant@example.com").await;
    let mut body = machine_body("tenant backend");
    body["boundAccountId"] = json!(account);
    body["allowedProviders"] = json!(["google"]);
    let (id, secret) = operator_client(&server, &op, body).await;
    let secret = secret.unwrap();
    let get = |path: String| {
        let op = op.clone();
        let server_url = server.url(&path);
        async move {
            reqwest::Client::new().get(server_url).bearer_auth(op).send().await.unwrap().json::<Value>().await.unwrap()
        }
    };
    let shown = get(format!("/api/v1/auth-clients/{id}")).await;
    assert_eq!(shown["boundAccountId"], account);
    assert_eq!(shown["grantTypes"], json!(["client_credentials"]));
    assert_eq!(shown["tokenEndpointAuthMethod"], "client_secret_basic");

    let cc = [("grant_type", "client_credentials")];
    let (status, v) = post_form(&server, "/api/v1/auth/token", &cc, Some((&id, &secret))).await;
    assert_eq!(status, 200, "{v}");
    assert!(v.get("refresh_token").is_none());
    let token = v["access_token"].as_str().unwrap().to_owned();
    let claims = jwt_parts(&token).1;
    assert_eq!(claims["sub"], account);
    let sid = claims["sid"].as_str().expect("a bound machine token hangs off a session").to_owned();
    // It acts for the account on /mcp, within the client's scopes.
    let (status, v) = whoami(&server, &token).await;
    assert_eq!(status, 200, "{v}");
    let who = &v["result"]["structuredContent"];
    assert_eq!((who["account_id"].as_str(), who["client_id"].as_str()), (Some(account.as_str()), Some(id.as_str())));
    assert_eq!(who["session_id"], sid);
    let (status, _) = get_status(&server, "/api/v1/connections", &token).await;
    assert_eq!(status, 200, "scope connections");
    let (status, _) = get_status(&server, "/api/v1/account", &token).await;
    assert_eq!(status, 403, "the client holds no account scope");
    // A second request reuses the machine session.
    let (_, again) = post_form(&server, "/api/v1/auth/token", &cc, Some((&id, &secret))).await;
    let again = again["access_token"].as_str().unwrap().to_owned();
    assert_eq!(jwt_parts(&again).1["sid"], sid, "one machine session per client and account");
    // The person sees it among their apps.
    let res = flow.http.get(flow.url("/api/v1/sessions")).send().await.unwrap();
    let sessions: Value = res.json().await.unwrap();
    assert!(sessions.to_string().contains(&sid), "{sessions}");

    // Rebinding to another account ends the tokens for this one, within the verifier's second.
    Flow::signup(&server, "other@example.com").await;
    let other = account_id(&server, &op, "other@example.com").await;
    let mut body = machine_body("tenant backend");
    body["boundAccountId"] = json!(other);
    let res =
        reqwest::Client::new().put(server.url(&format!("/api/v1/auth-clients/{id}"))).bearer_auth(&op).json(&body);
    assert_eq!(res.send().await.unwrap().status(), 200);
    eventually(3, "the old binding's tokens to end", || async { whoami(&server, &token).await.0 == 401 }).await;
    let (_, v) = post_form(&server, "/api/v1/auth/token", &cc, Some((&id, &secret))).await;
    let rebound = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(jwt_parts(&rebound).1["sub"], other);
    assert_eq!(whoami(&server, &rebound).await.0, 200);

    // Disabling the bound account ends its tokens and refuses new ones.
    let res = reqwest::Client::new()
        .post(server.url(&format!("/api/v1/admin/accounts/{other}/disable")))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    eventually(3, "the disabled account's machine token to end", || async { whoami(&server, &rebound).await.0 == 401 })
        .await;
    let (status, v) = post_form(&server, "/api/v1/auth/token", &cc, Some((&id, &secret))).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("unauthorized_client")), "{v}");
}

#[tokio::test]
async fn security_deleting_a_machine_client_ends_its_tokens() {
    let server = Server::start();
    let op = operator_token(&server);
    Flow::signup(&server, "deleted@example.com").await;
    let account = account_id(&server, &op, "deleted@example.com").await;
    let mut body = machine_body("doomed");
    body["boundAccountId"] = json!(account);
    let (id, secret) = operator_client(&server, &op, body).await;
    let secret = secret.unwrap();
    let (_, v) =
        post_form(&server, "/api/v1/auth/token", &[("grant_type", "client_credentials")], Some((&id, &secret))).await;
    let token = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(whoami(&server, &token).await.0, 200);
    let res = reqwest::Client::new()
        .delete(server.url(&format!("/api/v1/auth-clients/{id}")))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    eventually(3, "the deleted client's token to end", || async { whoami(&server, &token).await.0 == 401 }).await;
    let (status, v) =
        post_form(&server, "/api/v1/auth/token", &[("grant_type", "client_credentials")], Some((&id, &secret))).await;
    assert_eq!((status, v["error"].as_str()), (401, Some("invalid_client")));
}

#[tokio::test]
async fn security_dynamic_registration_cannot_obtain_client_credentials() {
    let server = Server::start();
    let register = |body: Value| {
        let url = server.url("/api/v1/auth/register");
        async move {
            let res = reqwest::Client::new().post(url).json(&body).send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    for grant in ["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"] {
        let (status, v) = register(json!({"client_name": "sneaky", "redirect_uris": [REDIRECT],
            "grant_types": [grant], "token_endpoint_auth_method": "client_secret_basic"}))
        .await;
        assert_eq!((status, v["error"].as_str()), (400, Some("invalid_client_metadata")), "{grant}: {v}");
        assert!(v["error_description"].as_str().unwrap().contains("operator"), "{v}");
    }
    // A confidential client registered the allowed way still cannot use the grant.
    let (status, v) = register(json!({"client_name": "conf", "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "client_secret_basic"}))
    .await;
    assert_eq!(status, 201);
    let (id, secret) = (v["client_id"].as_str().unwrap(), v["client_secret"].as_str().unwrap());
    let (status, v) =
        post_form(&server, "/api/v1/auth/token", &[("grant_type", "client_credentials")], Some((id, secret))).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("unauthorized_client")), "{v}");
    let (status, v) = post_form(
        &server,
        "/api/v1/auth/token",
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token", "x"),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
        ],
        Some((id, secret)),
    )
    .await;
    assert_eq!((status, v["error"].as_str()), (400, Some("unauthorized_client")), "{v}");
    // A person's own client cannot be given the grant, nor bound to an account.
    let flow = Flow::signup(&server, "person@example.com").await;
    let pat = crate::machine_clients::browser_pat(&flow).await;
    let (status, v) = create_client(&server, &pat, machine_body("mine")).await;
    assert_eq!(status, 403, "{v}");
    let (status, v) = create_client(
        &server,
        &pat,
        json!({"name": "mine", "redirectUris": [REDIRECT], "boundAccountId": "acc_x", "grantTypes": ["authorization_code"]}),
    )
    .await;
    assert_eq!(status, 403, "{v}");
}

/// A PAT with scope `account`, made in the person's signed-in browser.
pub(crate) async fn browser_pat(flow: &Flow) -> String {
    let res = flow
        .http
        .post(flow.url("/api/v1/auth/pat"))
        .json(&json!({"name": "t", "scopes": ["account", "universal-mcp-read-write"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn bad_machine_client_bodies_name_the_field_and_change_nothing() {
    let server = Server::start();
    let op = operator_token(&server);
    let key = MachineKey::new("k1");
    let mut private = key.jwk.clone();
    private["d"] = json!(B64.encode([1u8; 32]));
    let cases: Vec<(Value, &str)> = vec![
        (json!({"name": "m", "grantTypes": ["password"]}), "grantTypes"),
        (json!({"name": "m", "grantTypes": ["client_credentials"], "type": "public"}), "grantTypes"),
        (
            json!({"name": "m", "type": "public", "tokenEndpointAuthMethod": "private_key_jwt"}),
            "tokenEndpointAuthMethod",
        ),
        (json!({"name": "m", "grantTypes": []}), "grantTypes"),
        (json!({"name": "m"}), "redirectUris"),
        (json!({"name": "m", "grantTypes": ["client_credentials"], "boundAccountId": "acc_nobody"}), "boundAccountId"),
        (json!({"name": "m", "redirectUris": [REDIRECT], "boundAccountId": "acc_nobody"}), "boundAccountId"),
        (
            json!({"name": "m", "grantTypes": ["client_credentials"], "tokenEndpointAuthMethod": "private_key_jwt"}),
            "jwks",
        ),
        (
            json!({"name": "m", "grantTypes": ["client_credentials"], "tokenEndpointAuthMethod": "private_key_jwt",
                "jwks": {"keys": [private]}}),
            "jwks",
        ),
        (
            json!({"name": "m", "grantTypes": ["client_credentials"], "tokenEndpointAuthMethod": "private_key_jwt",
                "jwks": key.jwks(), "jwksUri": "https://keys.example/jwks.json"}),
            "jwks",
        ),
        (
            json!({"name": "m", "grantTypes": ["client_credentials"], "tokenEndpointAuthMethod": "private_key_jwt",
                "jwksUri": "http://keys.example/jwks.json"}),
            "jwksUri",
        ),
        (json!({"name": "m", "grantTypes": ["client_credentials"], "jwks": key.jwks()}), "jwks"),
        (
            json!({"name": "m", "grantTypes": ["client_credentials"], "tokenEndpointAuthMethod": "tls_client_auth"}),
            "tokenEndpointAuthMethod",
        ),
    ];
    for (body, field) in cases {
        let (status, v) = create_client(&server, &op, body.clone()).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["field"], field, "{body}: {v}");
    }
    let list: Value = reqwest::Client::new()
        .get(server.url("/api/v1/auth-clients"))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["clients"].as_array().unwrap().len(), 0, "nothing was created");
}

/// An operator's `private_key_jwt` machine client with `key` inline, bound to `account` if given.
pub(crate) async fn jwt_client(server: &Server, op: &str, key: &MachineKey, account: Option<&str>) -> String {
    let mut body = json!({"name": "signed machine", "grantTypes": ["client_credentials"],
        "tokenEndpointAuthMethod": "private_key_jwt", "jwks": key.jwks(),
        "allowedScopes": ["universal-mcp-read-write"]});
    if let Some(a) = account {
        body["boundAccountId"] = json!(a);
    }
    let (id, secret) = operator_client(server, op, body).await;
    assert_eq!(secret, None, "a private_key_jwt client gets no secret");
    id
}

#[tokio::test]
async fn private_key_jwt_authenticates_a_client_with_its_registered_key() {
    let server = Server::start();
    let op = operator_token(&server);
    Flow::signup(&server, "signed@example.com").await;
    let account = account_id(&server, &op, "signed@example.com").await;
    let key = MachineKey::new("k1");
    let id = jwt_client(&server, &op, &key, Some(&account)).await;
    // aud = the token endpoint, or the issuer (what the MCP SDKs send).
    for aud in [token_url(&server), server.issuer.clone()] {
        let (status, v) = with_assertion(&server, &key.assertion(&id, &aud), &[]).await;
        assert_eq!(status, 200, "aud {aud}: {v}");
        let token = v["access_token"].as_str().unwrap();
        assert_eq!(jwt_parts(token).1["sub"], account);
        assert_eq!(whoami(&server, token).await.0, 200);
    }
    // client_id may be sent too, if it is the assertion's.
    let (status, _) = with_assertion(&server, &key.assertion(&id, &token_url(&server)), &[("client_id", &id)]).await;
    assert_eq!(status, 200);
    // The client has no secret to send, and its secret cannot be rotated into existence.
    let (status, v) =
        post_form(&server, "/api/v1/auth/token", &[("grant_type", "client_credentials")], Some((&id, "guess"))).await;
    assert_eq!((status, v["error"].as_str()), (401, Some("invalid_client")));
    assert!(v["error_description"].as_str().unwrap().contains("private_key_jwt"), "{v}");
    let res = reqwest::Client::new()
        .put(server.url(&format!("/api/v1/auth-clients/{id}/secret")))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // The assertion also authenticates it at introspection and revocation (aud: that endpoint).
    let (_, v) = with_assertion(&server, &key.assertion(&id, &token_url(&server)), &[]).await;
    let token = v["access_token"].as_str().unwrap().to_owned();
    let introspect = format!("{}/api/v1/auth/introspect", server.issuer);
    let (status, v) = post_form(
        &server,
        "/api/v1/auth/introspect",
        &[
            ("token", &token),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", &key.assertion(&id, &introspect)),
        ],
        None,
    )
    .await;
    assert_eq!((status, &v["active"]), (200, &json!(true)), "{v}");
    let revoke = format!("{}/api/v1/auth/revoke", server.issuer);
    let (status, _) = post_form(
        &server,
        "/api/v1/auth/revoke",
        &[
            ("token", &token),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", &key.assertion(&id, &revoke)),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200);
    eventually(3, "the revoked machine session's token to end", || async { whoami(&server, &token).await.0 == 401 })
        .await;
    // A new request opens a new machine session (the operator's binding stands).
    let (status, v) = with_assertion(&server, &key.assertion(&id, &token_url(&server)), &[]).await;
    assert_eq!(status, 200, "{v}");
    assert_ne!(jwt_parts(v["access_token"].as_str().unwrap()).1["sid"], jwt_parts(&token).1["sid"]);
}

#[tokio::test]
async fn security_client_assertion_cannot_be_replayed() {
    let server = Server::start();
    let op = operator_token(&server);
    let key = MachineKey::new("k1");
    let id = jwt_client(&server, &op, &key, None).await;
    let assertion = key.assertion(&id, &token_url(&server));
    let (status, _) = with_assertion(&server, &assertion, &[]).await;
    assert_eq!(status, 200);
    let (status, v) = with_assertion(&server, &assertion, &[]).await;
    assert_eq!((status, v["error"].as_str()), (401, Some("invalid_client")), "{v}");
    assert!(v["error_description"].as_str().unwrap().contains("already used"), "{v}");
    // The same jti in a new assertion is the same assertion, once used.
    let mut claims = MachineKey::claims(&id, &token_url(&server));
    claims["jti"] = json!("once");
    assert_eq!(with_assertion(&server, &key.sign(key.header(), claims.clone()), &[]).await.0, 200);
    claims["exp"] = json!(now() + 120);
    assert_eq!(with_assertion(&server, &key.sign(key.header(), claims), &[]).await.0, 401);
    // A replay at the introspection endpoint is refused as well.
    let (status, _) = post_form(
        &server,
        "/api/v1/auth/introspect",
        &[("token", "x"), ("client_assertion_type", CLIENT_ASSERTION_TYPE), ("client_assertion", &assertion)],
        None,
    )
    .await;
    assert_eq!(status, 401);
    let logs = server.logs();
    assert!(!logs.contains(&assertion), "an assertion reached the log");
}

#[tokio::test]
async fn security_client_assertion_for_another_audience_is_refused() {
    let server = Server::start();
    let op = operator_token(&server);
    let key = MachineKey::new("k1");
    let id = jwt_client(&server, &op, &key, None).await;
    let aud = token_url(&server);
    let with = |k: &str, v: Value| {
        let mut c = MachineKey::claims(&id, &aud);
        c[k] = v;
        key.sign(key.header(), c)
    };
    let without = |k: &str| {
        let mut c = MachineKey::claims(&id, &aud);
        c.as_object_mut().unwrap().remove(k);
        key.sign(key.header(), c)
    };
    let other_key = MachineKey::new("k1");
    let cases: Vec<(String, &str)> = vec![
        (with("aud", json!("https://other-as.example/token")), "aud"),
        (with("aud", json!(format!("{}/mcp", server.issuer))), "aud"),
        (without("aud"), "aud"),
        (with("iss", json!("cli_someone_else")), "iss and sub"),
        (with("sub", json!("cli_someone_else")), "iss and sub"),
        (with("exp", json!(now() - 600)), "expired"),
        (with("exp", json!(now() + 3600)), "5 minutes"),
        (without("exp"), "exp"),
        (without("jti"), "jti"),
        (with("iat", json!(now() + 600)), "iat"),
        (with("nbf", json!(now() + 600)), "nbf"),
        (other_key.assertion(&id, &aud), "no key"),
        (key.sign(json!({"alg": "HS256", "typ": "JWT"}), MachineKey::claims(&id, &aud)), "alg"),
        (key.sign(json!({"alg": "ES256", "typ": "dpop+jwt"}), MachineKey::claims(&id, &aud)), "typ"),
        (key.sign(json!({"alg": "ES256", "kid": "unknown"}), MachineKey::claims(&id, &aud)), "no key"),
        ("not.a.jwt".to_owned(), "well-formed"),
    ];
    for (assertion, why) in cases {
        let (status, v) = with_assertion(&server, &assertion, &[]).await;
        assert_eq!((status, v["error"].as_str()), (401, Some("invalid_client")), "{why}: {v}");
        assert!(v["error_description"].as_str().unwrap().contains(why), "{why}: {v}");
    }
    // client_id naming another client than the assertion, a wrong assertion type, two methods.
    let good = key.assertion(&id, &aud);
    let (status, v) = with_assertion(&server, &good, &[("client_id", "cli_other")]).await;
    assert_eq!((status, v["error"].as_str()), (401, Some("invalid_client")), "{v}");
    let (status, v) = post_form(
        &server,
        "/api/v1/auth/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"),
            ("client_assertion", &good),
        ],
        None,
    )
    .await;
    assert_eq!((status, v["error"].as_str()), (401, Some("invalid_client")), "{v}");
    let (status, v) = post_form(
        &server,
        "/api/v1/auth/token",
        &[("grant_type", "client_credentials"), ("client_assertion", &good)],
        None,
    )
    .await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_request")), "{v}");
    let (status, v) = post_form(
        &server,
        "/api/v1/auth/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", &good),
        ],
        Some((&id, "secret")),
    )
    .await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_request")), "{v}");
    // None of those spent the good assertion.
    assert_eq!(with_assertion(&server, &good, &[]).await.0, 200);
}

#[tokio::test]
async fn dynamic_registration_takes_private_key_jwt_with_public_keys_only() {
    let server = Server::start();
    let flow = Flow::signup(&server, "dcr-jwt@example.com").await;
    let key = MachineKey::new("dcr");
    let register = |body: Value| {
        let url = server.url("/api/v1/auth/register");
        async move {
            let res = reqwest::Client::new().post(url).json(&body).send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let base = json!({"client_name": "signed app", "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"], "token_endpoint_auth_method": "private_key_jwt"});
    let mut private = key.jwk.clone();
    private["d"] = json!(B64.encode([1u8; 32]));
    for (extra, why) in [
        (json!({}), "exactly one"),
        (json!({"jwks": {"keys": [private]}}), "private"),
        (json!({"jwks": key.jwks(), "jwks_uri": "https://keys.example/jwks.json"}), "exactly one"),
        (json!({"jwks_uri": "http://keys.example/jwks.json"}), "https"),
        (json!({"jwks_uri": "https://127.0.0.1/jwks.json"}), "public address"),
        (json!({"jwks": {"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}}), "length"),
    ] {
        let mut body = base.clone();
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let (status, v) = register(body).await;
        assert_eq!((status, v["error"].as_str()), (400, Some("invalid_client_metadata")), "{why}: {v}");
        assert!(v["error_description"].as_str().unwrap().contains(why), "{why}: {v}");
    }
    let (status, v) =
        register(json!({"client_name": "secret app", "redirect_uris": [REDIRECT], "jwks": key.jwks()})).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_client_metadata")), "keys need private_key_jwt");

    let mut body = base.clone();
    body["jwks"] = key.jwks();
    let (status, v) = register(body).await;
    assert_eq!(status, 201, "{v}");
    assert!(v.get("client_secret").is_none(), "no secret: {v}");
    assert_eq!(v["token_endpoint_auth_method"], "private_key_jwt");
    assert_eq!(v["jwks"], key.jwks());
    let id = v["client_id"].as_str().unwrap().to_owned();
    // The registration reads back with its keys.
    let res = reqwest::Client::new()
        .get(v["registration_client_uri"].as_str().unwrap())
        .bearer_auth(v["registration_access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["jwks"], key.jwks());

    // The authorization-code flow, redeemed with an assertion instead of a secret.
    let back = flow.approve(&flow.authorize_url(&id, REDIRECT, "universal-mcp-read", "st")).await;
    let code = query_param(&back, "code").unwrap();
    let form = |assertion: &str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.clone()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("code_verifier", VERIFIER.to_owned()),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE.to_owned()),
            ("client_assertion", assertion.to_owned()),
        ]
    };
    let other = MachineKey::new("dcr");
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/auth/token"))
        .form(&form(&other.assertion(&id, &token_url(&server))))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "another key's assertion");
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/auth/token"))
        .form(&form(&key.assertion(&id, &token_url(&server))))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert!(v["refresh_token"].as_str().is_some(), "the code flow keeps its refresh token");
    // It still may not use client_credentials.
    let (status, v) = with_assertion(&server, &key.assertion(&id, &token_url(&server)), &[]).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("unauthorized_client")), "{v}");
}

/// Serves a JWK Set over HTTPS (the test CA) at `/jwks.json`, counting fetches; the set can change.
struct KeyHost {
    base: String,
    jwks: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    dir: tempfile::TempDir,
}

impl KeyHost {
    async fn start(jwks: Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        crate::client_metadata::make_certs(dir.path());
        use rustls::pki_types::pem::PemObject;
        let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(dir.path().join("leaf.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(dir.path().join("leaf.key")).unwrap();
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("https://localhost:{}", listener.local_addr().unwrap().port());
        let (jwks, fetches) = (Arc::new(Mutex::new(jwks)), Arc::new(AtomicUsize::new(0)));
        let (served, counted) = (jwks.clone(), fetches.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, served, counted) = (acceptor.clone(), served.clone(), counted.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let mut req = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let body = served.lock().unwrap().to_string();
                    let res = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/jwk-set+json\r\nCache-Control: max-age=3600\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(res.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self { base, jwks, fetches, dir }
    }

    fn server(&self) -> Server {
        let ca = self.dir.path().join("ca.pem").to_string_lossy().into_owned();
        Server::start_with(&[
            ("BRIDGEKEEPER_CLIENT_METADATA_DOCUMENTS__ALLOW_PRIVATE_ADDRESSES", "true"),
            ("BRIDGEKEEPER_CLIENT_METADATA_DOCUMENTS__EXTRA_CA_FILE", ca.as_str()),
        ])
    }
}

#[tokio::test]
async fn private_key_jwt_keys_come_from_the_jwks_uri_and_are_fetched_again_for_a_new_key() {
    let first = MachineKey::new("2026-01");
    let host = KeyHost::start(first.jwks()).await;
    let server = host.server();
    let op = operator_token(&server);
    let body = json!({"name": "rotating machine", "grantTypes": ["client_credentials"],
        "tokenEndpointAuthMethod": "private_key_jwt", "jwksUri": format!("{}/jwks.json", host.base)});
    let (id, _) = operator_client(&server, &op, body).await;
    let aud = token_url(&server);
    assert_eq!(with_assertion(&server, &first.assertion(&id, &aud), &[]).await.0, 200);
    assert_eq!(with_assertion(&server, &first.assertion(&id, &aud), &[]).await.0, 200);
    assert_eq!(host.fetches.load(Ordering::SeqCst), 1, "the key set is cached (max-age)");
    // The client rotates: its new key's id is unknown to the cached set, so the set is fetched again.
    let second = MachineKey::new("2026-02");
    *host.jwks.lock().unwrap() = json!({"keys": [first.jwk, second.jwk]});
    let (status, v) = with_assertion(&server, &second.assertion(&id, &aud), &[]).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(host.fetches.load(Ordering::SeqCst), 2);
    // An unknown key id again within seconds does not make the server fetch again.
    let stranger = MachineKey::new("2026-03");
    assert_eq!(with_assertion(&server, &stranger.assertion(&id, &aud), &[]).await.0, 401);
    assert_eq!(with_assertion(&server, &stranger.assertion(&id, &aud), &[]).await.0, 401);
    assert_eq!(host.fetches.load(Ordering::SeqCst), 2, "refetches for unknown keys are spaced out");
    // Without the development setting, a jwks_uri on this machine is never fetched.
    let strict = Server::start();
    let op = operator_token(&strict);
    let body = json!({"name": "local keys", "grantTypes": ["client_credentials"],
        "tokenEndpointAuthMethod": "private_key_jwt", "jwksUri": format!("{}/jwks.json", host.base)});
    let (id, _) = operator_client(&strict, &op, body).await;
    let before = host.fetches.load(Ordering::SeqCst);
    let (status, v) = with_assertion(&strict, &first.assertion(&id, &token_url(&strict)), &[]).await;
    assert_eq!((status, v["error"].as_str()), (401, Some("invalid_client")), "{v}");
    assert!(v["error_description"].as_str().unwrap().contains("public"), "{v}");
    assert_eq!(host.fetches.load(Ordering::SeqCst), before, "nothing was fetched");
}
