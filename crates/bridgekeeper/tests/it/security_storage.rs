//! Security review, finding 4: a signed-up person cannot fill storage. Branding (a logo of up to 2 MB)
//! only on white-label clients, other client fields bounded, and per-account quotas on clients and PATs
//! that hold under parallel requests.

use serde_json::{Value, json};

use crate::harness::{Flow, PNG_DATA_URI, Server, operator_token};

const CB: &str = "http://127.0.0.1:9/callback";

/// A data URI of a real PNG header padded to about `bytes` decoded bytes (under the 2 MB logo limit).
fn big_png(bytes: usize) -> String {
    use base64::Engine;
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.resize(bytes, 0);
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png))
}

async fn post_client(server: &Server, flow: &Flow, body: &Value) -> reqwest::Response {
    flow.http.post(server.url("/api/v1/auth-clients")).json(body).send().await.unwrap()
}

async fn own_clients(server: &Server, flow: &Flow) -> usize {
    let v: Value = flow.http.get(server.url("/api/v1/auth-clients")).send().await.unwrap().json().await.unwrap();
    v["clients"].as_array().unwrap().len()
}

#[tokio::test]
async fn third_party_client_branding_refused() {
    let server = Server::start();
    let flow = Flow::signup(&server, "filler@example.com").await;
    let (_, t) = flow.login_client("account").await;
    // The reproduction: a third-party client with a 2 MB logo, from the browser and from a token.
    let body = json!({
        "name": "Filler", "type": "public", "redirectUris": [CB],
        "branding": {"logo": big_png(2 * 1024 * 1024 - 1024), "description": "x"},
    });
    let res = post_client(&server, &flow, &body).await;
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["field"], "branding", "{v}");
    assert!(v["detail"].as_str().unwrap().contains("white-label"), "{v}");
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/auth-clients"))
        .bearer_auth(&t.access)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // Even a small branding block is refused on a third-party client, also by an operator.
    let op = operator_token(&server);
    let small = json!({"name": "Tool", "type": "public", "roles": ["third-party"], "redirectUris": [CB],
        "branding": {"logo": PNG_DATA_URI}});
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/auth-clients"))
        .bearer_auth(&op)
        .json(&small)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // Nothing was stored; without branding the client is created, and cannot gain branding by update.
    assert_eq!(own_clients(&server, &flow).await, 0);
    let res = post_client(&server, &flow, &json!({"name": "Plain", "type": "public", "redirectUris": [CB]})).await;
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.unwrap()["clientId"].as_str().unwrap().to_owned();
    let res = flow
        .http
        .put(server.url(&format!("/api/v1/auth-clients/{id}")))
        .json(&json!({"name": "Plain", "redirectUris": [CB], "branding": {"logo": big_png(1024 * 1024)}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["field"], "branding");
    // Other fields are bounded too: a huge redirect URI is refused, naming the field.
    let long = format!("https://a.example/{}", "x".repeat(3000));
    let res = post_client(&server, &flow, &json!({"name": "Long", "type": "public", "redirectUris": [long]})).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["field"], "redirectUris");
    // A white-label client (operators only) keeps its logo of up to 2 MB.
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/auth-clients"))
        .bearer_auth(&op)
        .json(&json!({"name": "Ours", "type": "public", "roles": ["whitelabel-customer"], "domains": ["ours.example"],
            "redirectUris": [CB], "branding": {"logo": big_png(2 * 1024 * 1024 - 1024)}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

#[tokio::test]
async fn client_quota_per_account_holds_under_parallel_creates() {
    let server = Server::start();
    let flow = Flow::signup(&server, "many-clients@example.com").await;
    // 60 creates at once against the default quota of 50.
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (http, url) = (flow.http.clone(), server.url("/api/v1/auth-clients"));
        tasks.push(tokio::spawn(async move {
            let res = http
                .post(url)
                .json(&json!({"name": format!("c{i}"), "type": "public", "redirectUris": [CB]}))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap())
        }));
    }
    let mut created = 0;
    for t in tasks {
        let (status, v) = t.await.unwrap();
        match status {
            201 => created += 1,
            409 => {
                assert_eq!(v["title"], "Quota reached");
                assert!(v["detail"].as_str().unwrap().contains("max_clients_per_account"), "{v}");
            }
            s => panic!("unexpected status {s}: {v}"),
        }
    }
    assert_eq!(created, 50, "exactly the quota, even in parallel");
    assert_eq!(own_clients(&server, &flow).await, 50);
    // Another account has a quota of its own; the operator has none.
    let other = Flow::signup(&server, "other-clients@example.com").await;
    let res = post_client(&server, &other, &json!({"name": "o", "type": "public", "redirectUris": [CB]})).await;
    assert_eq!(res.status(), 201);
    // Deleting one frees a place.
    let list: Value = flow.http.get(server.url("/api/v1/auth-clients")).send().await.unwrap().json().await.unwrap();
    let id = list["clients"][0]["id"].as_str().unwrap();
    let res = flow.http.delete(server.url(&format!("/api/v1/auth-clients/{id}"))).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let res = post_client(&server, &flow, &json!({"name": "again", "type": "public", "redirectUris": [CB]})).await;
    assert_eq!(res.status(), 201);
    let res = post_client(&server, &flow, &json!({"name": "over", "type": "public", "redirectUris": [CB]})).await;
    assert_eq!(res.status(), 409);
    // The quota is configurable.
    let server = Server::start_with(&[("BRIDGEKEEPER_LIMITS__MAX_CLIENTS_PER_ACCOUNT", "2")]);
    let flow = Flow::signup(&server, "two-clients@example.com").await;
    let statuses: Vec<u16> = {
        let mut s = Vec::new();
        for i in 0..3 {
            let body = json!({"name": format!("c{i}"), "type": "public", "redirectUris": [CB]});
            s.push(post_client(&server, &flow, &body).await.status().as_u16());
        }
        s
    };
    assert_eq!(statuses, [201, 201, 409]);
}

#[tokio::test]
async fn pat_quota_per_account_holds_under_parallel_creates() {
    let server = Server::start();
    let flow = Flow::signup(&server, "many-pats@example.com").await;
    // 110 creates at once against the default quota of 100 live PATs.
    let mut tasks = Vec::new();
    for i in 0..110 {
        let (http, url) = (flow.http.clone(), server.url("/api/v1/auth/pat"));
        tasks.push(tokio::spawn(async move {
            let res =
                http.post(url).json(&json!({"name": format!("p{i}"), "scopes": ["account"]})).send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap())
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        let (status, v) = t.await.unwrap();
        match status {
            201 => ids.push(v["id"].as_str().unwrap().to_owned()),
            409 => assert!(v["detail"].as_str().unwrap().contains("max_pats_per_account"), "{v}"),
            s => panic!("unexpected status {s}: {v}"),
        }
    }
    assert_eq!(ids.len(), 100, "exactly the quota, even in parallel");
    // Revoking one frees a place.
    let res = flow.http.delete(server.url(&format!("/api/v1/auth/pat/{}", ids[0]))).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let post = |name: &str| {
        flow.http.post(server.url("/api/v1/auth/pat")).json(&json!({"name": name, "scopes": ["account"]})).send()
    };
    assert_eq!(post("again").await.unwrap().status(), 201);
    assert_eq!(post("over").await.unwrap().status(), 409);
}

#[test]
fn quota_and_lifetime_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    for (key, value) in [
        ("BRIDGEKEEPER_LIMITS__MAX_CLIENTS_PER_ACCOUNT", "0"),
        ("BRIDGEKEEPER_LIMITS__MAX_PATS_PER_ACCOUNT", "0"),
        ("BRIDGEKEEPER_TOKENS__PAT_DEFAULT_TTL_DAYS", "0"),
        ("BRIDGEKEEPER_TOKENS__PAT_DEFAULT_TTL_DAYS", "367"),
    ] {
        let out = std::process::Command::new(crate::harness::bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env(key, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{key}={value} was accepted");
        let err = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
        let name = key.trim_start_matches("BRIDGEKEEPER_").split("__").nth(1).unwrap().to_ascii_lowercase();
        assert!(err.contains(&name), "{key}={value}: {err}");
    }
}
