//! OpenID Connect: ID tokens and userinfo.

use serde_json::{Value, json};

use crate::harness::{Flow, Server, jwt_parts};

#[tokio::test]
async fn openid_yields_id_token_and_userinfo() {
    let server = Server::start();
    let flow = Flow::signup(&server, "oidc@example.com").await;
    let cb = "http://127.0.0.1:9/callback";
    let client_id = flow.register(cb, "openid profile email universal-mcp-read").await;
    let t = flow
        .login_with(&client_id, None, cb, "openid email profile universal-mcp-read", &[("nonce", "n-0S6_WzA2Mj")])
        .await;
    let id_token = t["id_token"].as_str().expect("id_token");
    let (header, c) = jwt_parts(id_token);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(c["iss"], server.base);
    assert_eq!(c["aud"], client_id);
    assert_eq!(c["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(c["email"], "oidc@example.com");
    assert!(c["auth_time"].as_i64().unwrap() <= c["iat"].as_i64().unwrap());
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(c["sub"], jwt_parts(access).1["sub"]);
    // at_hash: left half of SHA-256 of the access token.
    use base64::Engine;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access.as_bytes());
    assert_eq!(c["at_hash"], base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d.as_ref()[..16]));
    let info: Value = reqwest::Client::new()
        .get(server.url("/api/v1/auth/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], c["sub"]);
    assert_eq!(info["email"], "oidc@example.com");
    // Without openid: no id_token, and userinfo refuses.
    let t2 = flow.login_with(&client_id, None, cb, "universal-mcp-read", &[]).await;
    assert!(t2.get("id_token").is_none());
    let res = reqwest::Client::new()
        .get(server.url("/api/v1/auth/userinfo"))
        .bearer_auth(t2["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let conf: Value =
        reqwest::get(server.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert_eq!(conf["userinfo_endpoint"], format!("{}/api/v1/auth/userinfo", server.base));
    assert_eq!(conf["id_token_signing_alg_values_supported"], json!(["RS256"]));
}
