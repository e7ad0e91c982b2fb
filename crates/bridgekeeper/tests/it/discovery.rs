//! Discovery documents and dynamic client registration.

use serde_json::{Value, json};

use crate::harness::Server;

#[tokio::test]
async fn authorization_server_metadata_is_complete() {
    let server = Server::start();
    for path in ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"] {
        let m: Value = reqwest::get(server.url(path)).await.unwrap().json().await.unwrap();
        let i = &server.base;
        assert_eq!(m["issuer"], *i);
        assert_eq!(m["authorization_endpoint"], format!("{i}/api/v1/auth/authorize"));
        assert_eq!(m["token_endpoint"], format!("{i}/api/v1/auth/token"));
        assert_eq!(m["registration_endpoint"], format!("{i}/api/v1/auth/register"));
        assert_eq!(m["revocation_endpoint"], format!("{i}/api/v1/auth/revoke"));
        assert_eq!(m["introspection_endpoint"], format!("{i}/api/v1/auth/introspect"));
        assert_eq!(m["jwks_uri"], format!("{i}/.well-known/jwks.json"));
        assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(m["authorization_response_iss_parameter_supported"], true);
        assert_eq!(
            m["grant_types_supported"],
            json!([
                "authorization_code",
                "refresh_token",
                "client_credentials",
                "urn:ietf:params:oauth:grant-type:token-exchange"
            ])
        );
        let methods = m["token_endpoint_auth_methods_supported"].as_array().unwrap();
        for needed in ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"] {
            assert!(methods.iter().any(|x| x == needed), "{path}: {needed}");
        }
        assert!(m["scopes_supported"].as_array().unwrap().iter().any(|s| s == "universal-mcp-read-write"));
    }
}

#[tokio::test]
async fn protected_resource_metadata_names_issuer() {
    let server = Server::start();
    for path in ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"] {
        let m: Value = reqwest::get(server.url(path)).await.unwrap().json().await.unwrap();
        assert_eq!(m["resource"], format!("{}/mcp", server.base));
        assert_eq!(m["authorization_servers"], json!([server.base]));
        assert!(m["scopes_supported"].as_array().unwrap().iter().any(|s| s == "universal-mcp-read"));
    }
}

async fn register(server: &Server, body: Value) -> reqwest::Response {
    reqwest::Client::new().post(server.url("/api/v1/auth/register")).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn dcr_registers_third_party_and_drops_unknown_scopes() {
    let server = Server::start();
    let res = register(&server, json!({
        "client_name": "Cursor",
        "redirect_uris": ["http://127.0.0.1:3000/cb", "https://app.example/cb", "cursor://anysphere.cursor-mcp/oauth/callback"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "scope": "universal-mcp-read-write bogus-scope agents-all",
    }))
    .await;
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    assert!(v["client_id"].as_str().unwrap().starts_with("cli_"));
    assert!(v.get("client_secret").is_none(), "public clients get no secret");
    assert_eq!(v["scope"], "universal-mcp-read-write", "unknown scopes dropped; THIRD_PARTY never gets agents-all");
    let res = register(&server, json!({"client_name": "Backend", "redirect_uris": ["https://app.example/cb"]})).await;
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    assert!(v["client_secret"].as_str().unwrap().starts_with("bks_"), "confidential by default (RFC 7591)");
}

#[tokio::test]
async fn http_redirect_only_on_loopback() {
    let server = Server::start();
    for (uri, ok) in [
        ("http://example.com/cb", false),
        ("http://localhost:8000/cb", true),
        ("http://[::1]:8000/cb", true),
        ("https://example.com/cb#frag", false),
        ("javascript:alert(1)", false),
    ] {
        let res = register(&server, json!({"redirect_uris": [uri], "token_endpoint_auth_method": "none"})).await;
        if ok {
            assert_eq!(res.status(), 201, "{uri}");
        } else {
            assert_eq!(res.status(), 400, "{uri}");
            assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_redirect_uri", "{uri}");
        }
    }
}

#[tokio::test]
async fn dcr_rate_limited_per_ip() {
    let server = Server::start();
    // Five different clients (identical registrations would reuse one and spend nothing).
    for i in 0..5 {
        let res = register(
            &server,
            json!({"redirect_uris": [format!("http://127.0.0.1/cb{i}")], "token_endpoint_auth_method": "none"}),
        )
        .await;
        assert_eq!(res.status(), 201, "registration {i}");
    }
    let res =
        register(&server, json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"}))
            .await;
    assert_eq!(res.status(), 429);
    assert!(res.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
}

#[tokio::test]
async fn dcr_bad_metadata_is_specific() {
    let server = Server::start();
    let res = register(&server, json!({"redirect_uris": ["http://127.0.0.1/cb"], "grant_types": ["password"]})).await;
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"], "invalid_client_metadata");
    assert!(v["error_description"].as_str().unwrap().contains("password"));
    let res = register(&server, json!({"token_endpoint_auth_method": "none"})).await;
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_redirect_uri");
}
