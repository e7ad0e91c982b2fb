//! Passkeys without a browser (the ceremonies themselves run in Chromium: e2e/browser/passkeys.test.mjs):
//! off when the issuer is an IP address (WebAuthn refuses IP relying-party ids); on a domain, the
//! ceremony endpoints need the page's CSRF token in `X-CSRF-Token`, adding one needs a signed-in
//! session, a second-factor challenge needs the password first, and an unknown ceremony or
//! credential signs nobody in.

use crate::harness::{Flow, Server, client, input};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn passkeys_are_off_when_the_issuer_is_an_ip_address() {
    let server = Server::start();
    let http = client();
    let login = http.get(server.url("/login")).send().await.unwrap().text().await.unwrap();
    assert!(!login.contains("Sign in with a passkey"), "no passkey button");
    let res = http
        .post(server.url("/login/passkey/options"))
        .header("x-csrf-token", input(&login, "csrf_token"))
        .json(&serde_json::json!({"purpose": "sign_in"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert!(res.text().await.unwrap().contains("not a domain name"));
}

#[tokio::test]
async fn security_passkey_ceremonies_are_bound_to_the_page_and_the_password() {
    let port = free_port();
    let issuer = format!("http://localhost:{port}");
    let listen = format!("127.0.0.1:{port}");
    let server =
        Server::start_with(&[("BRIDGEKEEPER_LISTEN", listen.as_str()), ("BRIDGEKEEPER_ISSUER", issuer.as_str())]);
    let http = client();
    let login = http.get(server.url("/login")).send().await.unwrap().text().await.unwrap();
    assert!(login.contains("Sign in with a passkey"));
    let csrf = input(&login, "csrf_token");
    let post = |path: &str, token: Option<&str>, body: serde_json::Value| {
        let mut req = http.post(server.url(path)).json(&body);
        if let Some(t) = token {
            req = req.header("x-csrf-token", t.to_owned());
        }
        req.send()
    };
    // No token, or another page's: refused before anything is stored.
    assert_eq!(
        post("/login/passkey/options", None, serde_json::json!({"purpose": "sign_in"})).await.unwrap().status(),
        400
    );
    assert_eq!(
        post("/login/passkey/options", Some("forged"), serde_json::json!({"purpose": "sign_in"}))
            .await
            .unwrap()
            .status(),
        400
    );
    // A sign-in challenge names no account (the device does): the same for everyone.
    let options: serde_json::Value =
        post("/login/passkey/options", Some(&csrf), serde_json::json!({"purpose": "sign_in"}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(options["options"]["publicKey"]["rpId"], "localhost");
    assert!(options["options"]["publicKey"]["allowCredentials"].as_array().is_none_or(Vec::is_empty), "{options}");
    // The second factor needs the password first (the marker of this browser).
    let res =
        post("/login/passkey/options", Some(&csrf), serde_json::json!({"purpose": "second_factor"})).await.unwrap();
    assert_eq!(res.status(), 400);
    // Adding a passkey needs a signed-in session.
    assert_eq!(
        post("/account/security/passkeys/options", Some(&csrf), serde_json::json!({})).await.unwrap().status(),
        401
    );
    // An answer naming an unknown credential signs nobody in, and spends the ceremony.
    let fake = serde_json::json!({
        "ceremony": options["ceremony"],
        "credential": {
            "id": "AAAA", "rawId": "AAAA", "type": "public-key",
            "response": {"authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA", "userHandle": null}
        },
        "next": "/"
    });
    let res = post("/login/passkey", Some(&csrf), fake).await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(http.get(server.url("/api/v1/account")).send().await.unwrap().status(), 401);

    // Signed in: options to add a passkey are discoverable, user-verifying, and exclude none yet.
    let flow = Flow::signup(&server, "keyholder@example.com").await;
    let home = flow.http.get(server.url("/")).send().await.unwrap().text().await.unwrap();
    let res = flow
        .http
        .post(server.url("/account/security/passkeys/options"))
        .header("x-csrf-token", input(&home, "csrf_token"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let reg: serde_json::Value = res.json().await.unwrap();
    let pk = &reg["options"]["publicKey"];
    assert_eq!(pk["rp"]["id"], "localhost");
    assert_eq!(pk["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(pk["authenticatorSelection"]["userVerification"], "required");
    assert_ne!(pk["user"]["name"], serde_json::Value::Null);
    assert!(!pk["user"]["id"].as_str().unwrap().contains("acc_"), "the user handle is not the account id");
}
