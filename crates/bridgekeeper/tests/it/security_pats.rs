//! Security review, finding 1: an app must not mint credentials that outlive it. Only first-party
//! callers create PATs; a PAT made with a token dies with that token's session; PATs expire by default.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Flow, Server, operator_token, whoami};

const CB: &str = "http://127.0.0.1:9/callback";

async fn create_pat(server: &Server, token: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new().post(server.url("/api/v1/auth/pat")).bearer_auth(token).json(&body).send().await.unwrap()
}

/// A PAT from the signed-in browser of `flow` (the first-party way to make one).
pub async fn browser_pat(server: &Server, flow: &Flow, body: Value) -> Value {
    let res = flow.http.post(server.url("/api/v1/auth/pat")).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

/// A public white-label client (operator-made, so first-party) and a token of it for `flow`'s account.
async fn whitelabel_token(server: &Server, flow: &Flow, scope: &str) -> (String, Value) {
    let op = operator_token(server);
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/auth-clients"))
        .bearer_auth(&op)
        .json(&json!({
            "name": "Our own app", "type": "public", "roles": ["whitelabel-customer"],
            "domains": ["ours.example"], "redirectUris": [CB],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.unwrap()["clientId"].as_str().unwrap().to_owned();
    let t = flow.login_with(&id, None, CB, scope, &[]).await;
    (id, t)
}

async fn account_status(server: &Server, token: &str) -> u16 {
    reqwest::Client::new().get(server.url("/api/v1/account")).bearer_auth(token).send().await.unwrap().status().as_u16()
}

/// Polls until `token` is refused on `/mcp` and `/api/v1/account` (revocation is seen within a second).
async fn refused_within_a_second(server: &Server, token: &str) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    loop {
        if whoami(&server.base, token).await.0 == 401 && account_status(server, token).await == 401 {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn third_party_app_cannot_mint_pats() {
    let server = Server::start();
    let flow = Flow::signup(&server, "victim-pat@example.com").await;
    // The app was granted `account` ("Read your account details") like any third-party app can be.
    let (_, app) = flow.login_client("account universal-mcp-read-write").await;
    for body in [
        json!({"name": "backdoor", "scopes": ["account", "universal-mcp-read-write"]}),
        json!({"name": "backdoor", "scopes": ["universal-mcp-read"], "expires_in": 3600}),
    ] {
        let res = create_pat(&server, &app.access, body).await;
        assert_eq!(res.status(), 403);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let v: Value = res.json().await.unwrap();
        assert!(v["detail"].as_str().unwrap().contains("third-party app"), "{v}");
    }
    // Nothing was made: the account lists no PAT.
    let list: Value = flow.http.get(server.url("/api/v1/auth/pat")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["tokens"], json!([]));
    // The first-party ways still work: the browser, and a PAT made there.
    let pat = browser_pat(&server, &flow, json!({"name": "laptop", "scopes": ["account", "universal-mcp-read"]})).await;
    let res = create_pat(&server, pat["token"].as_str().unwrap(), json!({"name": "ci", "scopes": ["account"]})).await;
    assert_eq!(res.status(), 201);
}

#[tokio::test]
async fn pat_made_with_a_token_dies_with_its_session() {
    let server = Server::start();
    let flow = Flow::signup(&server, "chain-pat@example.com").await;
    let (_, t) = whitelabel_token(&server, &flow, "account universal-mcp-read-write").await;
    let access = t["access_token"].as_str().unwrap();
    let res = create_pat(
        &server,
        access,
        json!({"name": "made by the app", "scopes": ["account", "universal-mcp-read-write"]}),
    )
    .await;
    assert_eq!(res.status(), 201);
    let child: Value = res.json().await.unwrap();
    let child_token = child["token"].as_str().unwrap().to_owned();
    // A PAT made with that PAT: a grandchild of the app's session.
    let res =
        create_pat(&server, &child_token, json!({"name": "made by the PAT", "scopes": ["universal-mcp-read-write"]}))
            .await;
    assert_eq!(res.status(), 201);
    let grandchild = res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    // A PAT from the browser is independent of the app.
    let own =
        browser_pat(&server, &flow, json!({"name": "mine", "scopes": ["account", "universal-mcp-read-write"]})).await;
    let own_token = own["token"].as_str().unwrap();
    for tok in [access, child_token.as_str(), grandchild.as_str(), own_token] {
        assert_eq!(whoami(&server.base, tok).await.0, 200);
    }
    // The person revokes the app, as the attacker scenario has it.
    let sid = crate::harness::jwt_parts(access).1["sid"].as_str().unwrap().to_owned();
    let res = flow.http.delete(server.url(&format!("/api/v1/sessions/{sid}"))).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert!(refused_within_a_second(&server, access).await, "the app's own token dies");
    assert!(refused_within_a_second(&server, &child_token).await, "the PAT it made dies with it");
    assert!(refused_within_a_second(&server, &grandchild).await, "and so does the PAT made with that PAT");
    assert_eq!(whoami(&server.base, own_token).await.0, 200, "a PAT made in the browser is not the app's");
    // The dead PATs are gone from the list too.
    let list: Value = flow.http.get(server.url("/api/v1/auth/pat")).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> = list["tokens"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["mine"]);
    // Deleting a client does the same for PATs its tokens made.
    let (client_id, t2) = whitelabel_token(&server, &flow, "account").await;
    let access2 = t2["access_token"].as_str().unwrap();
    let res = create_pat(&server, access2, json!({"name": "second", "scopes": ["account"]})).await;
    let second = res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    assert_eq!(account_status(&server, &second).await, 200);
    let op = operator_token(&server);
    let res = reqwest::Client::new()
        .delete(server.url(&format!("/api/v1/auth-clients/{client_id}")))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(refused_within_a_second(&server, &second).await, "a deleted client's PATs die with it");
    // And revoking a PAT revokes the PATs made with it.
    let parent = browser_pat(&server, &flow, json!({"name": "parent", "scopes": ["account"]})).await;
    let res =
        create_pat(&server, parent["token"].as_str().unwrap(), json!({"name": "kid", "scopes": ["account"]})).await;
    let kid = res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let res = flow
        .http
        .delete(server.url(&format!("/api/v1/auth/pat/{}", parent["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(refused_within_a_second(&server, &kid).await, "a revoked PAT's PATs die with it");
}

#[tokio::test]
async fn pats_expire_by_default_and_never_only_when_asked() {
    let server = Server::start();
    let flow = Flow::signup(&server, "ttl-pat@example.com").await;
    let day = 24 * 3600;
    // Absent or null: the default lifetime (90 days).
    for body in
        [json!({"name": "a", "scopes": ["account"]}), json!({"name": "b", "scopes": ["account"], "expires_in": null})]
    {
        let v = browser_pat(&server, &flow, body).await;
        assert_eq!(v["expires_in"], 90 * day, "{v}");
        assert_eq!(v["expires_at"].as_i64().unwrap() - v["created_at"].as_i64().unwrap(), 90 * day);
    }
    // An explicit lifetime, and "never" only when asked for.
    let v = browser_pat(&server, &flow, json!({"name": "c", "scopes": ["account"], "expires_in": 3600})).await;
    assert_eq!(v["expires_in"], 3600);
    let v = browser_pat(&server, &flow, json!({"name": "d", "scopes": ["account"], "expires_in": "never"})).await;
    assert_eq!((v["expires_in"].clone(), v["expires_at"].clone()), (Value::Null, Value::Null));
    // Anything else is refused, naming the field, and nothing is created.
    for bad in [json!(0), json!(59), json!(367 * day), json!("forever"), json!(1.5), json!(true)] {
        let res = flow
            .http
            .post(server.url("/api/v1/auth/pat"))
            .json(&json!({"name": "bad", "scopes": ["account"], "expires_in": bad}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{bad}");
        assert_eq!(res.json::<Value>().await.unwrap()["field"], "expires_in", "{bad}");
    }
    let list: Value = flow.http.get(server.url("/api/v1/auth/pat")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["tokens"].as_array().unwrap().len(), 4);
    // The default is configurable.
    let server = Server::start_with(&[("BRIDGEKEEPER_TOKENS__PAT_DEFAULT_TTL_DAYS", "7")]);
    let flow = Flow::signup(&server, "ttl7-pat@example.com").await;
    let v = browser_pat(&server, &flow, json!({"name": "a", "scopes": ["account"]})).await;
    assert_eq!(v["expires_in"], 7 * day);
}

#[tokio::test]
async fn a_revoked_pat_is_refused_saying_it_was_revoked() {
    let server = Server::start();
    let flow = Flow::signup(&server, "revoker@example.com").await;
    let pat =
        browser_pat(&server, &flow, json!({"name": "soon revoked", "scopes": ["account", "universal-mcp-read"]})).await;
    let token = pat["token"].as_str().unwrap().to_owned();
    assert_eq!(account_status(&server, &token).await, 200);
    let res = flow
        .http
        .delete(server.url(&format!("/api/v1/auth/pat/{}", pat["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert!(refused_within_a_second(&server, &token).await);
    let res = reqwest::Client::new().get(server.url("/api/v1/account")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let body = res.text().await.unwrap();
    assert!(body.contains("revoked"), "the answer says why: {body}");
    assert!(!body.contains("malformed"), "{body}");
    // A made-up token is still just not one of ours.
    let res =
        reqwest::Client::new().get(server.url("/api/v1/account")).bearer_auth("bk_pat_made_up").send().await.unwrap();
    assert!(res.text().await.unwrap().contains("malformed"));
}
