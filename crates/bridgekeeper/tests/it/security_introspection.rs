//! Finding 6: introspection tells a token's state only to those it concerns — the client it was
//! issued to (or a resource server it is meant for). Every other client, however authenticated,
//! gets `{"active": false}` (RFC 7662 §2.2 and §4).

use serde_json::{Value, json};

use crate::harness::{Flow, Server, VERIFIER, query_param, tokens};

const CB: &str = "http://127.0.0.1:9/callback";
const SCOPE: &str = "universal-mcp-read-write account";

/// A confidential client registered by DCR, authorized by the flow's person: (id, secret, tokens).
async fn confidential(flow: &Flow, name: &str) -> (String, String, crate::harness::Tokens) {
    let res = reqwest::Client::new()
        .post(flow.url("/api/v1/auth/register"))
        .json(&json!({"client_name": name, "redirect_uris": [CB], "token_endpoint_auth_method": "client_secret_basic", "scope": SCOPE}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    let (id, secret) = (v["client_id"].as_str().unwrap().to_owned(), v["client_secret"].as_str().unwrap().to_owned());
    let back = flow.approve(&flow.authorize_url(&id, CB, SCOPE, "s")).await;
    let code = query_param(&back, "code").unwrap();
    let res = reqwest::Client::new()
        .post(flow.url("/api/v1/auth/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    (id, secret, tokens(res).await)
}

async fn introspect(server: &Server, id: &str, secret: &str, token: &str) -> Value {
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/auth/introspect"))
        .basic_auth(id, Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    res.json().await.unwrap()
}

#[tokio::test]
async fn introspection_answers_only_the_client_the_token_was_issued_to() {
    let server = Server::start();
    let victim = Flow::signup(&server, "victim@example.com").await;
    let (app, app_secret, t) = confidential(&victim, "The victim's app").await;
    // A stranger self-registers a confidential client of its own (and even uses it).
    let stranger = Flow::signup(&server, "stranger@example.com").await;
    let (other, other_secret, own) = confidential(&stranger, "Stranger").await;

    // The client the tokens were issued to learns everything about them.
    let v = introspect(&server, &app, &app_secret, &t.access).await;
    assert_eq!((v["active"].clone(), v["client_id"].clone()), (json!(true), json!(app)));
    assert_eq!(v["username"], "victim@example.com");
    assert_eq!(introspect(&server, &app, &app_secret, &t.refresh).await["active"], true);

    // Anyone else learns nothing: not that it is active, not whose it is.
    for token in [&t.access, &t.refresh] {
        assert_eq!(introspect(&server, &other, &other_secret, token).await, json!({"active": false}));
    }
    // The stranger's own tokens are still its own business.
    assert_eq!(introspect(&server, &other, &other_secret, &own.access).await["active"], true);
    assert_eq!(introspect(&server, &app, &app_secret, &own.access).await, json!({"active": false}));
}

#[tokio::test]
async fn personal_access_tokens_are_not_introspectable_by_clients() {
    let server = Server::start();
    let flow = Flow::signup(&server, "patowner@example.com").await;
    let (app, app_secret, _) = confidential(&flow, "Owner's own app").await;
    // Made in the person's signed-in browser (a third-party app's token may not mint PATs).
    let res = flow
        .http
        .post(server.url("/api/v1/auth/pat"))
        .json(&json!({"name": "ci", "scopes": ["universal-mcp-read"], "expires_in": 3600}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let pat = res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    // A PAT is issued to no client: even an app of the same person is not told about it.
    assert_eq!(introspect(&server, &app, &app_secret, &pat).await, json!({"active": false}));
}
