//! DPoP (RFC 9449): a client that proves a key at the token endpoint gets tokens bound to it; the
//! bound access token works only with a fresh proof by that key (on `/mcp`, the REST tools face and
//! userinfo), never as a bearer token; the bound refresh token refreshes only with a proof by that
//! key; proofs are single use, for one method and URL, recent, and carry the server's nonce when
//! required. Proofs are made here as a client library makes them (ES256 with aws-lc-rs).

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use crate::harness::{Flow, Server, VERIFIER, jwt_parts, query_param};

const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// A client's DPoP key.
struct Key {
    pair: EcdsaKeyPair,
    jwk: Value,
}

impl Key {
    fn new() -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let public = pair.public_key().as_ref().to_vec();
        let jwk =
            json!({"kty": "EC", "crv": "P-256", "x": B64.encode(&public[1..33]), "y": B64.encode(&public[33..65])});
        Self { pair, jwk }
    }

    /// RFC 7638 thumbprint.
    fn jkt(&self) -> String {
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            self.jwk["x"].as_str().unwrap(),
            self.jwk["y"].as_str().unwrap()
        );
        B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()))
    }

    fn sign(&self, header: Value, claims: Value) -> String {
        let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let sig = self.pair.sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }

    /// A proof for `method` `url`, for `token` when given, with `nonce` when given.
    fn proof(&self, method: &str, url: &str, token: Option<&str>, nonce: Option<&str>) -> String {
        let mut claims = json!({"jti": uuid::Uuid::new_v4().to_string(), "htm": method, "htu": url, "iat": now()});
        if let Some(t) = token {
            claims["ath"] = B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, t.as_bytes())).into();
        }
        if let Some(n) = nonce {
            claims["nonce"] = n.into();
        }
        self.sign(json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk}), claims)
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Signs up, registers a public client and gets a code for `scope`: (flow, client id, code).
async fn code_for(server: &Server, email: &str, scope: &str) -> (Flow, String, String) {
    let flow = Flow::signup(server, email).await;
    let client = flow.register(REDIRECT, scope).await;
    let back = flow.approve(&flow.authorize_url(&client, REDIRECT, scope, "st")).await;
    let code = query_param(&back, "code").unwrap();
    (flow, client, code)
}

async fn token_request(server: &Server, form: &[(&str, &str)], proof: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().post(server.url("/api/v1/auth/token")).form(form);
    if let Some(p) = proof {
        req = req.header("DPoP", p);
    }
    req.send().await.unwrap()
}

fn token_url(server: &Server) -> String {
    format!("{}/api/v1/auth/token", server.issuer)
}

/// The code exchanged with a proof by `key`: the token answer.
async fn bound_tokens(server: &Server, key: &Key, email: &str) -> (String, Value) {
    let (_, client, code) = code_for(server, email, "universal-mcp-read-write openid").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", client.as_str()),
        ("code_verifier", VERIFIER),
    ];
    let res = token_request(server, &form, Some(&key.proof("POST", &token_url(server), None, None))).await;
    assert_eq!(res.status(), 200);
    (client, res.json().await.unwrap())
}

/// `tools/list` on /mcp with `authorization` and an optional DPoP proof: status and headers.
async fn mcp(server: &Server, authorization: &str, proof: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(server.url("/mcp"))
        .header("Authorization", authorization)
        .header("Accept", "application/json, text/event-stream")
        .header("X-Response-Format", "json")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}));
    if let Some(p) = proof {
        req = req.header("DPoP", p);
    }
    req.send().await.unwrap()
}

fn challenge(res: &reqwest::Response) -> String {
    res.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

#[tokio::test]
async fn a_proof_at_the_token_endpoint_binds_the_tokens_to_the_key() {
    let server = Server::start();
    let meta: Value =
        reqwest::get(server.url("/.well-known/oauth-authorization-server")).await.unwrap().json().await.unwrap();
    assert!(meta["dpop_signing_alg_values_supported"].as_array().unwrap().contains(&json!("ES256")));
    let prm: Value =
        reqwest::get(server.url("/.well-known/oauth-protected-resource/mcp")).await.unwrap().json().await.unwrap();
    assert!(prm["dpop_signing_alg_values_supported"].as_array().is_some_and(|a| !a.is_empty()), "{prm}");

    let key = Key::new();
    let (_, tokens) = bound_tokens(&server, &key, "dpop@example.com").await;
    assert_eq!(tokens["token_type"], "DPoP");
    let access = tokens["access_token"].as_str().unwrap();
    let (_, claims) = jwt_parts(access);
    assert_eq!(claims["cnf"]["jkt"], key.jkt(), "cnf.jkt is the key's RFC 7638 thumbprint");

    let mcp_url = format!("{}/mcp", server.issuer);
    let res = mcp(&server, &format!("DPoP {access}"), Some(&key.proof("POST", &mcp_url, Some(access), None))).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert!(body["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()), "{body}");

    // Userinfo and the REST face take the same proof for their own URL and method.
    let userinfo = format!("{}/api/v1/auth/userinfo", server.issuer);
    let res = reqwest::Client::new()
        .get(server.url("/api/v1/auth/userinfo"))
        .header("Authorization", format!("DPoP {access}"))
        .header("DPoP", key.proof("GET", &userinfo, Some(access), None))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let tools = format!("{}/api/v1/providers/bridgekeeper/tools", server.issuer);
    let res = reqwest::Client::new()
        .get(server.url("/api/v1/providers/bridgekeeper/tools"))
        .header("Authorization", format!("DPoP {access}"))
        .header("DPoP", key.proof("GET", &tools, Some(access), None))
        .send()
        .await
        .unwrap();
    assert_ne!(res.status(), 401, "{}", res.text().await.unwrap());
    // And the REST API (scope `account` was not granted: past authentication, the scope check speaks).
    let account = format!("{}/api/v1/account", server.issuer);
    let res = reqwest::Client::new()
        .get(server.url("/api/v1/account"))
        .header("Authorization", format!("DPoP {access}"))
        .header("DPoP", key.proof("GET", &account, Some(access), None))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "{}", res.text().await.unwrap());
    let res = reqwest::Client::new()
        .get(server.url("/api/v1/account"))
        .header("Authorization", format!("DPoP {access}"))
        .header("DPoP", key.proof("GET", &format!("{}/api/v1/sessions", server.issuer), Some(access), None))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "a proof for another path");
    assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("DPoP "));
}

#[tokio::test]
async fn security_a_stolen_dpop_bound_token_is_useless_without_the_key() {
    let server = Server::start();
    let key = Key::new();
    let (_, tokens) = bound_tokens(&server, &key, "stolen@example.com").await;
    let access = tokens["access_token"].as_str().unwrap();
    let mcp_url = format!("{}/mcp", server.issuer);

    // As a bearer token: refused, and told to use DPoP.
    let res = mcp(&server, &format!("Bearer {access}"), None).await;
    assert_eq!(res.status(), 401);
    let c = challenge(&res);
    assert!(c.starts_with("DPoP ") && c.contains("invalid_token") && c.contains("ES256"), "{c}");
    // Without a proof, and with a proof by the thief's own key.
    assert_eq!(mcp(&server, &format!("DPoP {access}"), None).await.status(), 401);
    let thief = Key::new();
    let res = mcp(&server, &format!("DPoP {access}"), Some(&thief.proof("POST", &mcp_url, Some(access), None))).await;
    assert_eq!(res.status(), 401);
    assert!(res.text().await.unwrap().contains("another key"));
    // The REST face refuses it as a bearer token too.
    let res = reqwest::Client::new()
        .get(server.url("/api/v1/providers/bridgekeeper/tools"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn security_dpop_proofs_are_single_use_and_for_one_request() {
    let server = Server::start();
    let key = Key::new();
    let (_, tokens) = bound_tokens(&server, &key, "replay@example.com").await;
    let access = tokens["access_token"].as_str().unwrap();
    let mcp_url = format!("{}/mcp", server.issuer);
    let auth = format!("DPoP {access}");

    let proof = key.proof("POST", &mcp_url, Some(access), None);
    assert_eq!(mcp(&server, &auth, Some(&proof)).await.status(), 200);
    let replayed = mcp(&server, &auth, Some(&proof)).await;
    assert_eq!(replayed.status(), 401, "a replayed proof");
    let c = challenge(&replayed);
    assert!(c.contains("invalid_dpop_proof"), "{c}");
    assert!(replayed.text().await.unwrap().contains("already used"));

    let refused = |proof: String, says: &'static str| {
        let auth = auth.clone();
        let server = &server;
        async move {
            let res = mcp(server, &auth, Some(&proof)).await;
            assert_eq!(res.status(), 401, "{says}");
            let text = res.text().await.unwrap();
            assert!(text.contains(says), "{says}: {text}");
        }
    };
    refused(key.proof("GET", &mcp_url, Some(access), None), "another method").await;
    refused(key.proof("POST", &format!("{}/other", server.issuer), Some(access), None), "another URL").await;
    refused(key.proof("POST", &mcp_url, None, None), "lacks the claim ath").await;
    refused(key.proof("POST", &mcp_url, Some("another token"), None), "ath is not the hash").await;
    // Too old.
    let old = key.sign(
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk}),
        json!({"jti": "old-1", "htm": "POST", "htu": mcp_url, "iat": now() - 3600,
            "ath": B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access.as_bytes()))}),
    );
    refused(old, "too long ago").await;
    // Not a DPoP proof at all (a JWT of another type, or unsigned).
    let typ = key.sign(json!({"typ": "JWT", "alg": "ES256", "jwk": key.jwk}), json!({"jti": "x"}));
    refused(typ, "typ must be dpop+jwt").await;
    let none = format!(
        "{}.{}.",
        B64.encode(json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.jwk}).to_string()),
        B64.encode("{}")
    );
    refused(none, "alg must be one of").await;
    // Two DPoP headers.
    let res = reqwest::Client::new()
        .post(server.url("/mcp"))
        .header("Authorization", &auth)
        .header("DPoP", key.proof("POST", &mcp_url, Some(access), None))
        .header("DPoP", key.proof("POST", &mcp_url, Some(access), None))
        .header("Accept", "application/json, text/event-stream")
        .header("X-Response-Format", "json")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn security_a_dpop_bound_refresh_token_refreshes_only_with_its_key() {
    let server = Server::start();
    let key = Key::new();
    let (client, tokens) = bound_tokens(&server, &key, "refresh@example.com").await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", client.as_str())];

    // Without a proof, or with another key's: refused before anything is spent.
    let res = token_request(&server, &form, None).await;
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_dpop_proof", "{body}");
    let thief = Key::new();
    let res = token_request(&server, &form, Some(&thief.proof("POST", &token_url(&server), None, None))).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_dpop_proof");
    // A proof for another endpoint is not a proof for this one.
    let elsewhere = key.proof("POST", &format!("{}/api/v1/auth/revoke", server.issuer), None, None);
    assert_eq!(token_request(&server, &form, Some(&elsewhere)).await.status(), 400);

    // The holder of the key refreshes (the refresh token was not burned by the attempts above).
    let res = token_request(&server, &form, Some(&key.proof("POST", &token_url(&server), None, None))).await;
    assert_eq!(res.status(), 200);
    let next: Value = res.json().await.unwrap();
    assert_eq!(next["token_type"], "DPoP");
    assert_eq!(jwt_parts(next["access_token"].as_str().unwrap()).1["cnf"]["jkt"], key.jkt());
}

#[tokio::test]
async fn bearer_clients_are_unchanged_and_an_unbound_token_is_not_dpop() {
    let server = Server::start();
    let flow = Flow::signup(&server, "bearer@example.com").await;
    let (_, t) = flow.login_client("universal-mcp-read-write").await;
    assert!(jwt_parts(&t.access).1.get("cnf").is_none());
    assert_eq!(mcp(&server, &format!("Bearer {}", t.access), None).await.status(), 200);
    // An unbound token sent with the DPoP scheme is refused (RFC 9449 §7.1).
    let key = Key::new();
    let mcp_url = format!("{}/mcp", server.issuer);
    let res =
        mcp(&server, &format!("DPoP {}", t.access), Some(&key.proof("POST", &mcp_url, Some(&t.access), None))).await;
    assert_eq!(res.status(), 401);
    assert!(res.text().await.unwrap().contains("not DPoP-bound"));
}

#[tokio::test]
async fn server_nonces_when_required() {
    let server = Server::start_with(&[("BRIDGEKEEPER_DPOP__REQUIRE_NONCE", "true")]);
    let key = Key::new();
    let (_, client, code) = code_for(&server, "nonce@example.com", "universal-mcp-read-write").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", client.as_str()),
        ("code_verifier", VERIFIER),
    ];
    // Without the nonce: use_dpop_nonce, and the nonce to use (the code is not spent).
    let res = token_request(&server, &form, Some(&key.proof("POST", &token_url(&server), None, None))).await;
    assert_eq!(res.status(), 400);
    let nonce = res.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "use_dpop_nonce");
    let wrong = key.proof("POST", &token_url(&server), None, Some("made-up"));
    assert_eq!(token_request(&server, &form, Some(&wrong)).await.status(), 400);
    let res = token_request(&server, &form, Some(&key.proof("POST", &token_url(&server), None, Some(&nonce)))).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("dpop-nonce"), "a token answer hands out the current nonce");
    let tokens: Value = res.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    // /mcp asks for it the same way: 401 use_dpop_nonce with a DPoP-Nonce header.
    let mcp_url = format!("{}/mcp", server.issuer);
    let res = mcp(&server, &format!("DPoP {access}"), Some(&key.proof("POST", &mcp_url, Some(access), None))).await;
    assert_eq!(res.status(), 401);
    assert!(challenge(&res).contains("use_dpop_nonce"));
    let nonce = res.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    let res =
        mcp(&server, &format!("DPoP {access}"), Some(&key.proof("POST", &mcp_url, Some(access), Some(&nonce)))).await;
    assert_eq!(res.status(), 200);
}

/// Behind one load balancer (one issuer), a proof used at one instance is refused at the other:
/// proof ids are remembered in the Redis the instances share.
#[tokio::test]
async fn security_a_dpop_proof_used_at_one_instance_is_refused_at_another() {
    let prefix = format!("bk-dpop-{}:", uuid::Uuid::new_v4().simple());
    let env = [
        ("BRIDGEKEEPER_REDIS_URL", "redis://127.0.0.1:6379"),
        ("BRIDGEKEEPER_REDIS__KEY_PREFIX", prefix.as_str()),
        ("BRIDGEKEEPER_ISSUER", "http://127.0.0.1:9"),
    ];
    let a = Server::start_with(&env);
    let b = a.start_peer(&env);
    let key = Key::new();
    let (_, tokens) = bound_tokens(&a, &key, "two@example.com").await;
    let access = tokens["access_token"].as_str().unwrap();
    let auth = format!("DPoP {access}");
    let proof = key.proof("POST", "http://127.0.0.1:9/mcp", Some(access), None);
    assert_eq!(mcp(&a, &auth, Some(&proof)).await.status(), 200);
    let replayed = mcp(&b, &auth, Some(&proof)).await;
    assert_eq!(replayed.status(), 401);
    assert!(replayed.text().await.unwrap().contains("already used"));
    // A fresh proof works at the other instance.
    let fresh = key.proof("POST", "http://127.0.0.1:9/mcp", Some(access), None);
    assert_eq!(mcp(&b, &auth, Some(&fresh)).await.status(), 200);
}

/// RFC 9449 §5: a grant begun without DPoP that refreshes with a proof is bound from then on — its new
/// refresh token is worthless without that key.
#[tokio::test]
async fn security_a_grant_that_starts_dpop_at_a_refresh_is_bound_from_then_on() {
    let server = Server::start();
    let flow = Flow::signup(&server, "upgrade@example.com").await;
    let (client, t) = flow.login_client("universal-mcp-read-write").await;
    let key = Key::new();
    let form = [("grant_type", "refresh_token"), ("refresh_token", t.refresh.as_str()), ("client_id", client.as_str())];
    let res = token_request(&server, &form, Some(&key.proof("POST", &token_url(&server), None, None))).await;
    assert_eq!(res.status(), 200);
    let upgraded: Value = res.json().await.unwrap();
    assert_eq!(upgraded["token_type"], "DPoP");
    let next = upgraded["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", next), ("client_id", client.as_str())];
    let res = token_request(&server, &form, None).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_dpop_proof");
    let thief = Key::new();
    let res = token_request(&server, &form, Some(&thief.proof("POST", &token_url(&server), None, None))).await;
    assert_eq!(res.status(), 400, "another key cannot take the grant over");
    let res = token_request(&server, &form, Some(&key.proof("POST", &token_url(&server), None, None))).await;
    assert_eq!(res.status(), 200);
}
