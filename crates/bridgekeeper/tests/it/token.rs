//! The token endpoint: codes, refresh rotation and replay, client binding, scopes, revocation, claims.

use crate::harness::{Flow, Server, VERIFIER, query_param, tokens};

const CB: &str = "http://127.0.0.1:9/callback";
const RW: &str = "universal-mcp-read-write account";

async fn error_of(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    assert_eq!(res.headers()["cache-control"], "no-store");
    let v: serde_json::Value = res.json().await.unwrap();
    assert!(v["error_description"].as_str().is_some_and(|d| !d.is_empty()), "errors carry a description: {v}");
    (status, v["error"].as_str().unwrap().to_owned())
}

async fn whoami_status(flow: &Flow, access: &str) -> u16 {
    flow.mcp(access, "tools/call", serde_json::json!({"name": "whoami", "arguments": {}})).await.status().as_u16()
}

#[tokio::test]
async fn password_and_other_grants_refused() {
    let server = Server::start();
    let flow = Flow::signup(&server, "a@example.com").await;
    let client_id = flow.register(CB, RW).await;
    let res = flow
        .token(&[
            ("grant_type", "password"),
            ("username", "a@example.com"),
            ("password", &flow.password),
            ("client_id", &client_id),
        ])
        .await;
    assert_eq!(error_of(res).await, (400, "unsupported_grant_type".into()));
    let res = flow.token(&[("grant_type", "client_credentials"), ("client_id", &client_id)]).await;
    assert_eq!(error_of(res).await, (400, "unsupported_grant_type".into()));
    let res = flow.token(&[("client_id", &client_id)]).await;
    assert_eq!(error_of(res).await, (400, "invalid_request".into()));
}

#[tokio::test]
async fn pkce_downgrade_refused() {
    let server = Server::start();
    let flow = Flow::signup(&server, "b@example.com").await;
    let client_id = flow.register(CB, RW).await;
    let back = flow.approve(&flow.authorize_url(&client_id, CB, RW, "s")).await;
    let code = query_param(&back, "code").unwrap();
    // No verifier at all (a downgrade to no-PKCE), then a wrong one.
    let res = flow
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
            ("client_id", &client_id),
        ])
        .await;
    assert_eq!(error_of(res).await, (400, "invalid_grant".into()));
    let wrong = "x".repeat(50);
    let res = flow
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
            ("client_id", &client_id),
            ("code_verifier", &wrong),
        ])
        .await;
    assert_eq!(error_of(res).await, (400, "invalid_grant".into()));
}

#[tokio::test]
async fn code_replay_revokes_tokens() {
    let server = Server::start();
    let flow = Flow::signup(&server, "c@example.com").await;
    let client_id = flow.register(CB, RW).await;
    let back = flow.approve(&flow.authorize_url(&client_id, CB, RW, "s")).await;
    let code = query_param(&back, "code").unwrap();
    let t = flow.exchange_code(&client_id, CB, &code).await;
    assert_eq!(whoami_status(&flow, &t.access).await, 200);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CB),
        ("client_id", &client_id),
        ("code_verifier", VERIFIER),
    ];
    assert_eq!(error_of(flow.token(&form).await).await, (400, "invalid_grant".into()));
    // Everything issued from the code is dead: the refresh token at once, the access token within a second.
    assert_eq!(error_of(flow.refresh(&client_id, &t.refresh).await).await.1, "invalid_grant");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(whoami_status(&flow, &t.access).await, 401);
}

#[tokio::test]
async fn code_bound_to_client_and_redirect() {
    let server = Server::start();
    let flow = Flow::signup(&server, "d@example.com").await;
    let client_id = flow.register(CB, RW).await;
    let other = flow.register(CB, RW).await;
    let back = flow.approve(&flow.authorize_url(&client_id, CB, RW, "s")).await;
    let code = query_param(&back, "code").unwrap();
    let res = flow
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
            ("client_id", &other),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!(error_of(res).await, (400, "invalid_grant".into()));
    let res = flow
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/other"),
            ("client_id", &client_id),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!(error_of(res).await, (400, "invalid_grant".into()));
    // The rightful exchange still works: failed attempts did not consume the code.
    flow.exchange_code(&client_id, CB, &code).await;
}

#[tokio::test]
async fn refresh_rotation() {
    let server = Server::start();
    let flow = Flow::signup(&server, "e@example.com").await;
    let (client_id, t1) = flow.login_client(RW).await;
    let res = flow.refresh(&client_id, &t1.refresh).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let t2 = tokens(res).await;
    assert_ne!(t2.refresh, t1.refresh);
    assert_ne!(t2.access, t1.access);
    assert!(t2.refresh.starts_with("bkr_"));
    assert_eq!(whoami_status(&flow, &t2.access).await, 200);
    let t3 = tokens(flow.refresh(&client_id, &t2.refresh).await).await;
    assert_eq!(whoami_status(&flow, &t3.access).await, 200);
}

#[tokio::test]
async fn refresh_replay_revokes_whole_session() {
    let server = Server::start();
    let flow = Flow::signup(&server, "f@example.com").await;
    let (client_id, t1) = flow.login_client(RW).await;
    let t2 = tokens(flow.refresh(&client_id, &t1.refresh).await).await;
    // Replay the first refresh token: refused, and the whole session goes with it.
    assert_eq!(error_of(flow.refresh(&client_id, &t1.refresh).await).await, (400, "invalid_grant".into()));
    assert_eq!(error_of(flow.refresh(&client_id, &t2.refresh).await).await, (400, "invalid_grant".into()));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(whoami_status(&flow, &t2.access).await, 401);
    assert!(server.logs().contains("refresh token replayed"), "the replay is logged");
    assert!(!server.logs().contains(&t1.refresh), "the token itself never reaches the log");
}

#[tokio::test]
async fn concurrent_refresh_exactly_one_succeeds() {
    let server = Server::start();
    let flow = Flow::signup(&server, "g@example.com").await;
    let (client_id, t1) = flow.login_client(RW).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (url, client_id, refresh) = (flow.url("/api/v1/auth/token"), client_id.clone(), t1.refresh.clone());
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("client_id", client_id.as_str()),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let s = t.await.unwrap();
        assert!(s == 200 || s == 400, "status {s}");
        ok += usize::from(s == 200);
    }
    assert_eq!(ok, 1, "exactly one of 20 concurrent exchanges succeeds");
}

#[tokio::test]
async fn refresh_bound_to_client() {
    let server = Server::start();
    let flow = Flow::signup(&server, "h@example.com").await;
    let (client_id, t1) = flow.login_client(RW).await;
    let other = flow.register(CB, RW).await;
    assert_eq!(error_of(flow.refresh(&other, &t1.refresh).await).await, (400, "invalid_grant".into()));
    // Not consumed by the other client's attempt.
    assert_eq!(flow.refresh(&client_id, &t1.refresh).await.status(), 200);
}

#[tokio::test]
async fn refresh_scope_subset_of_grant() {
    let server = Server::start();
    let flow = Flow::signup(&server, "i@example.com").await;
    let (client_id, t1) = flow.login_client("universal-mcp-read account").await;
    let res = flow
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &t1.refresh),
            ("client_id", &client_id),
            ("scope", "universal-mcp-read-write"),
        ])
        .await;
    assert_eq!(error_of(res).await, (400, "invalid_scope".into()));
    let res = flow
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &t1.refresh),
            ("client_id", &client_id),
            ("scope", "universal-mcp-read"),
        ])
        .await;
    assert_eq!(res.status(), 200);
    let t2 = tokens(res).await;
    assert_eq!(t2.scope, "universal-mcp-read");
    // Narrowing the access token does not narrow the grant: the next refresh gets everything back.
    let t3 = tokens(flow.refresh(&client_id, &t2.refresh).await).await;
    assert_eq!(t3.scope, "universal-mcp-read account");
}

#[tokio::test]
async fn revoke_revokes_family_and_unknown_is_200() {
    let server = Server::start();
    let flow = Flow::signup(&server, "j@example.com").await;
    let (client_id, t1) = flow.login_client(RW).await;
    let t2 = tokens(flow.refresh(&client_id, &t1.refresh).await).await;
    let revoke = |token: String| {
        let (url, client_id) = (flow.url("/api/v1/auth/revoke"), client_id.clone());
        async move {
            reqwest::Client::new()
                .post(url)
                .form(&[("token", token.as_str()), ("client_id", client_id.as_str())])
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(revoke("bkr_unknown".into()).await.status(), 200);
    assert_eq!(revoke("not-a-token".into()).await.status(), 200);
    assert_eq!(whoami_status(&flow, &t2.access).await, 200);
    assert_eq!(revoke(t2.refresh.clone()).await.status(), 200);
    assert_eq!(error_of(flow.refresh(&client_id, &t2.refresh).await).await.1, "invalid_grant");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(whoami_status(&flow, &t2.access).await, 401, "the family's access tokens die too");
}

#[tokio::test]
async fn revoking_access_token_revokes_session() {
    let server = Server::start();
    let flow = Flow::signup(&server, "k@example.com").await;
    let (client_id, t1) = flow.login_client(RW).await;
    let res = reqwest::Client::new()
        .post(flow.url("/api/v1/auth/revoke"))
        .form(&[("token", t1.access.as_str()), ("client_id", client_id.as_str()), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(error_of(flow.refresh(&client_id, &t1.refresh).await).await.1, "invalid_grant");
}

#[tokio::test]
async fn access_token_has_rfc9068_claims_and_jwks_serves_its_key() {
    let server = Server::start();
    let flow = Flow::signup(&server, "l@example.com").await;
    let (client_id, t) = flow.login_client(RW).await;
    let (header, claims) = crate::harness::jwt_parts(&t.access);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "RS256");
    let kid = header["kid"].as_str().unwrap();
    assert_eq!(claims["iss"], flow.base);
    assert_eq!(claims["aud"], format!("{}/mcp", flow.base));
    assert_eq!(claims["client_id"], client_id);
    assert_eq!(claims["scope"], "universal-mcp-read-write account");
    assert!(claims["sub"].as_str().unwrap().starts_with("acc_"));
    assert!(claims["sid"].as_str().unwrap().starts_with("ses_"));
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, 900);
    // The signature verifies with the key JWKS publishes under that kid.
    let jwks: serde_json::Value = reqwest::get(flow.url("/.well-known/jwks.json")).await.unwrap().json().await.unwrap();
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid).expect("kid in JWKS");
    use base64::Engine;
    let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap();
    let key = aws_lc_rs::signature::RsaPublicKeyComponents {
        n: b(jwk["n"].as_str().unwrap()),
        e: b(jwk["e"].as_str().unwrap()),
    };
    let (signed, sig) = t.access.rsplit_once('.').unwrap();
    key.verify(&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256, signed.as_bytes(), &b(sig))
        .expect("signature verifies");
    assert!(jwk.get("d").is_none() && jwk.get("p").is_none(), "no private parts in JWKS");
}

#[tokio::test]
async fn token_endpoint_errors_are_specific_and_not_stored() {
    let server = Server::start();
    let flow = Flow::signup(&server, "m@example.com").await;
    let res = flow.token(&[("grant_type", "authorization_code"), ("code", "bkc_x"), ("client_id", "cli_nope")]).await;
    assert_eq!(error_of(res).await, (401, "invalid_client".into()));
    let res = reqwest::Client::new()
        .post(flow.url("/api/v1/auth/token"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await, (400, "invalid_request".into()));
    let res = reqwest::Client::new()
        .post(flow.url("/api/v1/auth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=refresh_token&grant_type=authorization_code")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await, (400, "invalid_request".into()));
}

#[tokio::test]
async fn oversized_body_is_413() {
    let server = Server::start();
    let big = "a".repeat(70 * 1024);
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/auth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=refresh_token&refresh_token={big}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
}

/// A confidential client registered by DCR, authenticating with Basic at the token endpoint.
async fn confidential_login(flow: &Flow) -> (String, String, Tokens) {
    let res = reqwest::Client::new()
        .post(flow.url("/api/v1/auth/register"))
        .json(&serde_json::json!({"client_name": "Backend", "redirect_uris": [CB], "token_endpoint_auth_method": "client_secret_basic", "scope": RW}))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = res.json().await.unwrap();
    let (id, secret) = (v["client_id"].as_str().unwrap().to_owned(), v["client_secret"].as_str().unwrap().to_owned());
    let back = flow.approve(&flow.authorize_url(&id, CB, RW, "s")).await;
    let code = query_param(&back, "code").unwrap();
    // Without the secret: refused.
    let res = flow
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
            ("client_id", &id),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!(error_of(res).await, (401, "invalid_client".into()));
    let res = reqwest::Client::new()
        .post(flow.url("/api/v1/auth/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", CB),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let t = tokens(res).await;
    (id, secret, t)
}

use crate::harness::Tokens;

#[tokio::test]
async fn confidential_client_authenticates_with_basic_or_post() {
    let server = Server::start();
    let flow = Flow::signup(&server, "conf@example.com").await;
    let (id, secret, t) = confidential_login(&flow).await;
    // client_secret_post works too; a wrong secret is invalid_client with a Basic challenge.
    let res = flow
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &t.refresh),
            ("client_id", &id),
            ("client_secret", &secret),
        ])
        .await;
    assert_eq!(res.status(), 200);
    let t2 = tokens(res).await;
    let res = reqwest::Client::new()
        .post(flow.url("/api/v1/auth/token"))
        .basic_auth(&id, Some("bks_wrong"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", t2.refresh.as_str())])
        .send()
        .await
        .unwrap();
    assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    assert_eq!(error_of(res).await, (401, "invalid_client".into()));
}

#[tokio::test]
async fn introspection_for_authenticated_clients() {
    let server = Server::start();
    let flow = Flow::signup(&server, "intro@example.com").await;
    let (id, secret, t) = confidential_login(&flow).await;
    let introspect = |token: String| {
        let (url, id, secret) = (flow.url("/api/v1/auth/introspect"), id.clone(), secret.clone());
        async move {
            let res = reqwest::Client::new()
                .post(url)
                .basic_auth(id, Some(secret))
                .form(&[("token", token)])
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            assert_eq!(res.headers()["cache-control"], "no-store");
            res.json::<serde_json::Value>().await.unwrap()
        }
    };
    let v = introspect(t.access.clone()).await;
    assert_eq!(v["active"], true);
    assert_eq!(v["client_id"], id);
    assert_eq!(v["scope"], RW);
    assert_eq!(v["username"], "intro@example.com");
    let v = introspect(t.refresh.clone()).await;
    assert_eq!(v["active"], true);
    assert_eq!(v["token_type"], "refresh_token");
    assert_eq!(introspect("garbage".into()).await, serde_json::json!({"active": false}));
    // Public clients cannot introspect.
    let (public_id, _) = flow.login_client(RW).await;
    let res = reqwest::Client::new()
        .post(flow.url("/api/v1/auth/introspect"))
        .form(&[("token", t.access.as_str()), ("client_id", public_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await, (401, "invalid_client".into()));
    // After revocation both are inactive.
    reqwest::Client::new()
        .post(flow.url("/api/v1/auth/revoke"))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", t.refresh.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(introspect(t.refresh.clone()).await["active"], false);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(introspect(t.access.clone()).await["active"], false);
}
