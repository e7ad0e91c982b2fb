//! The connections page (`/connections`) and the white-label handoff that opens it, through the
//! real server as a browser and a white-label backend would drive them: only the account's own
//! connections listed, an `api_key` connection made through the form (CSRF enforced), disconnect,
//! another account's id a 404; a handoff code single use, dead after 30 seconds, bound to its
//! client (branding, "back" link), and refused for a wrong secret, a third-party client, another
//! client's token or a return URL off the client's list.

use serde_json::{Value, json};

use crate::connections::ACME;
use crate::harness::{Flow, PNG_DATA_URI, Server, client, input, location, operator_token, query_param};

const APP_CALLBACK: &str = "http://127.0.0.1:53682/callback";
const APP_SETTINGS: &str = "https://yourapp.com/settings/integrations";

fn server() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("providers.toml");
    std::fs::write(&file, ACME).unwrap();
    let server = Server::start_with(&[
        ("BRIDGEKEEPER_CONNECTIONS__CATALOG_FILE", file.to_str().unwrap()),
        ("BRIDGEKEEPER_CONNECTIONS__PROVIDERS__GOOGLE__OAUTH2__CLIENT_ID", "google-client-id-123"),
        ("BRIDGEKEEPER_CONNECTIONS__PROVIDERS__GOOGLE__OAUTH2__CLIENT_SECRET", "google-secret-do-not-show"),
    ]);
    (server, dir)
}

/// The connections page as this browser sees it (200 expected).
async fn page(flow: &Flow) -> String {
    let res = flow.http.get(flow.url("/connections")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    res.text().await.unwrap()
}

/// Connects acme through the page's form; the new connection's id.
async fn connect_acme(flow: &Flow, key: &str) -> String {
    let html = page(flow).await;
    let res = flow
        .http
        .post(flow.url("/connections/connect"))
        .form(&[("csrf_token", input(&html, "csrf_token").as_str()), ("provider", "acme"), ("api_key", key)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let back = location(&res);
    assert!(back.starts_with("/connections?connectionId=") && back.ends_with("&status=active"), "{back}");
    back.trim_start_matches("/connections?connectionId=").trim_end_matches("&status=active").to_owned()
}

/// The account's connections through the REST API, as this signed-in browser.
async fn api_connections(flow: &Flow) -> Vec<Value> {
    let v: Value = flow.http.get(flow.url("/api/v1/connections")).send().await.unwrap().json().await.unwrap();
    v["connections"].as_array().unwrap().clone()
}

#[tokio::test]
async fn connections_page_needs_a_sign_in_and_lists_only_own_connections() {
    let (server, _dir) = server();
    let res = client().get(server.url("/connections")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/login?next=%2Fconnections");

    let alice = Flow::signup(&server, "alice@example.com").await;
    let bob = Flow::signup(&server, "bob@example.com").await;
    let a = connect_acme(&alice, "alice-key-1").await;
    let b = connect_acme(&bob, "bob-key-1").await;

    let html = page(&alice).await;
    assert!(html.contains(&a), "alice's connection is listed");
    assert!(!html.contains(&b), "bob's connection is not on alice's page");
    assert!(html.contains("Acme CRM") && html.contains("Connected"), "{html}");
    assert!(!html.contains("alice-key-1"), "a key is never shown again");
    assert!(html.contains("Signed in as alice@example.com"));
    // A connect button per provider, an API-key form with a labelled field for key providers.
    assert!(html.contains(r#"<label for="key-acme">Acme API token</label>"#), "{html}");
    assert!(html.contains(r#"<input id="key-acme" type="password" name="api_key""#), "{html}");
    assert!(!html.contains("<script"), "no scripts on the page");
    let html = page(&bob).await;
    assert!(html.contains(&b) && !html.contains(&a));
}

#[tokio::test]
async fn api_key_connect_through_the_form_enforces_csrf() {
    let (server, _dir) = server();
    let alice = Flow::signup(&server, "alice@example.com").await;
    let post = |form: Vec<(&'static str, String)>| {
        let http = alice.http.clone();
        let url = alice.url("/connections/connect");
        async move { http.post(url).form(&form).send().await.unwrap() }
    };
    // No token, a forged token, another browser's token: refused, nothing stored.
    let res = post(vec![("provider", "acme".into()), ("api_key", "k1".into())]).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("This form has expired"));
    let res = post(vec![("csrf_token", "AAAA".into()), ("provider", "acme".into()), ("api_key", "k1".into())]).await;
    assert_eq!(res.status(), 400);
    let stranger = client();
    let other = stranger.get(server.url("/login")).send().await.unwrap().text().await.unwrap();
    let res =
        post(vec![("csrf_token", input(&other, "csrf_token")), ("provider", "acme".into()), ("api_key", "k1".into())])
            .await;
    assert_eq!(res.status(), 400);
    assert!(api_connections(&alice).await.is_empty(), "nothing created without a valid CSRF token");

    // An empty key and an unknown provider are refused in words.
    let html = page(&alice).await;
    let token = input(&html, "csrf_token");
    let res = post(vec![("csrf_token", token.clone()), ("provider", "acme".into()), ("api_key", "  ".into())]).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("Enter your Acme API token to connect Acme CRM."));
    let res = post(vec![("csrf_token", token.clone()), ("provider", "nope".into())]).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("Unknown service &quot;nope&quot;."));
    assert!(api_connections(&alice).await.is_empty());

    let id = connect_acme(&alice, "sk-live-123").await;
    let listed = api_connections(&alice).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["status"], "active");
    let res = alice.http.get(alice.url(&format!("/connections?connectionId={id}&status=active"))).send().await.unwrap();
    let html = res.text().await.unwrap();
    assert!(html.contains(r#"<p class="notice" role="status">Connected Acme CRM.</p>"#), "{html}");
    assert!(!html.contains("sk-live-123"));
}

#[tokio::test]
async fn disconnect_through_the_page_and_other_accounts_ids_are_404() {
    let (server, _dir) = server();
    let alice = Flow::signup(&server, "alice@example.com").await;
    let bob = Flow::signup(&server, "bob@example.com").await;
    let a = connect_acme(&alice, "alice-key").await;
    let b = connect_acme(&bob, "bob-key").await;

    let html = page(&alice).await;
    let token = input(&html, "csrf_token");
    assert!(html.contains(&format!(r#"action="/connections/{a}/disconnect""#)), "{html}");
    // Without the CSRF token nothing happens.
    let res = alice.http.post(alice.url(&format!("/connections/{a}/disconnect"))).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(api_connections(&alice).await.len(), 1);
    // Bob's connection id from Alice's browser: not found, and Bob's connection stays.
    let res = alice
        .http
        .post(alice.url(&format!("/connections/{b}/disconnect")))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(api_connections(&bob).await.len(), 1);

    let res = alice
        .http
        .post(alice.url(&format!("/connections/{a}/disconnect")))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/connections?disconnected=1");
    assert!(api_connections(&alice).await.is_empty());
    let html = alice.http.get(alice.url("/connections?disconnected=1")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Disconnected.") && html.contains("No services connected yet."), "{html}");
    // Twice: gone.
    let res = alice
        .http
        .post(alice.url(&format!("/connections/{a}/disconnect")))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

/// A white-label client as in reference 000 (confidential, branded), made by the operator.
async fn whitelabel(server: &Server, op: &str, name: &str, color: &str) -> (String, String) {
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/auth-clients"))
        .bearer_auth(op)
        .json(&json!({
            "name": name, "type": "confidential", "roles": ["whitelabel-customer"],
            "domains": ["yourapp.com"], "redirectUris": [APP_CALLBACK, "https://yourapp.com/auth/callback"],
            "allowedScopes": ["connections", "account", "openid"],
            "branding": {"logo": PNG_DATA_URI, "description": format!("{name} — AI workspace"), "brandColor": color},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    (v["clientId"].as_str().unwrap().to_owned(), v["clientSecret"].as_str().unwrap().to_owned())
}

/// The customer's access token for the white-label client (signed in on the app's branded pages).
async fn customer_token(customer: &Flow, client_id: &str, secret: &str) -> String {
    let v = customer.login_with(client_id, Some(secret), APP_CALLBACK, "connections account", &[]).await;
    v["access_token"].as_str().unwrap().to_owned()
}

async fn handoff_init(server: &Server, token: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url("/api/v1/auth/handoff/init"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn init_body(client_id: &str, secret: &str, redirect: &str) -> Value {
    json!({"clientId": client_id, "clientSecret": secret, "redirectUri": redirect, "intent": "connections"})
}

struct Setup {
    server: Server,
    _dir: tempfile::TempDir,
    client_id: String,
    secret: String,
    customer: Flow,
    token: String,
}

async fn setup() -> Setup {
    let (server, dir) = server();
    let op = operator_token(&server);
    let (client_id, secret) = whitelabel(&server, &op, "YourApp", "#4F46E5").await;
    let customer = Flow::signup(&server, "customer@example.com").await;
    let token = customer_token(&customer, &client_id, &secret).await;
    Setup { server, _dir: dir, client_id, secret, customer, token }
}

async fn issue_code(s: &Setup) -> Value {
    let res = handoff_init(&s.server, &s.token, init_body(&s.client_id, &s.secret, APP_SETTINGS)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    res.json().await.unwrap()
}

#[tokio::test]
async fn handoff_opens_the_branded_page_signed_in_once_only() {
    let s = setup().await;
    let v = issue_code(&s).await;
    assert_eq!(v["expiresIn"], 30);
    assert_eq!(v["intent"], "connections");
    let code = v["code"].as_str().unwrap();
    let url = v["url"].as_str().unwrap();
    assert_eq!(url, s.server.url(&format!("/connections/handoff?code={code}")));

    // A fresh browser (the customer's, never signed in here) follows the link.
    let browser = client();
    let res = browser.get(url).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/connections");
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with("bk_handoff=") && cookie.contains("Path=/connections; HttpOnly; SameSite=Lax"),
        "{cookie}"
    );
    let res = browser.get(s.server.url("/connections")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    // In the client's branding, as the consent page shows it, with a way back to the app.
    assert!(html.contains(&format!(r#"<link rel="stylesheet" href="/static/brand/{}.css">"#, s.client_id)), "{html}");
    assert!(html.contains(r#"<span class="brand-name">YourApp</span>"#), "{html}");
    assert!(html.contains("YourApp — AI workspace"));
    assert!(html.contains(r#"class="brand-logo" src="data:image&#x2f;png;base64,"#), "{html}");
    assert!(
        html.contains(
            r#"<a href="https:&#x2f;&#x2f;yourapp.com&#x2f;settings&#x2f;integrations">&larr; Back to YourApp</a>"#
        ),
        "{html}"
    );
    assert!(html.contains("<title>Connected services · YourApp</title>"), "{html}");
    assert!(!html.contains(r#"<div class="brand">Bridgekeeper</div>"#));
    assert!(html.contains("Signed in as customer@example.com"));

    // The handed-off sign-in is the page's only: the rest of the site does not see it.
    let home = browser.get(s.server.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(home.contains("Welcome") && !home.contains("customer@example.com"), "{home}");
    assert_eq!(browser.get(s.server.url("/api/v1/connections")).send().await.unwrap().status(), 401);

    // It can connect (CSRF-bound to the handed-off session) …
    let form_token = input(&html, "csrf_token");
    let res = browser
        .post(s.server.url("/connections/connect"))
        .form(&[("csrf_token", form_token.as_str()), ("provider", "acme"), ("api_key", "customer-key")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(api_connections(&s.customer).await.len(), 1, "the connection is the customer's");

    // An oauth2 connect comes back to the callback, which knows the handed-off browser: no sign-in there.
    let res = browser
        .post(s.server.url("/connections/connect"))
        .form(&[("csrf_token", form_token.as_str()), ("provider", "google")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let state = query_param(&location(&res), "state").unwrap();
    let mut callback = url::Url::parse(&s.server.url("/api/v1/connections/callback")).unwrap();
    callback.query_pairs_mut().append_pair("state", &state).append_pair("error", "access_denied");
    let res = browser.get(callback.as_str()).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), s.server.url("/connections?error=access_denied"));

    // … and the code works once.
    let again = client().get(url).send().await.unwrap();
    assert_eq!(again.status(), 400);
    assert!(again.headers().get("set-cookie").is_none(), "no session for a used code");
    let text = again.text().await.unwrap();
    assert!(text.contains("This link has expired"), "{text}");
    let res = client().get(s.server.url("/connections/handoff?code=bkh_made_up")).send().await.unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn handoff_code_expires_after_30_seconds() {
    let s = setup().await;
    let v = issue_code(&s).await;
    tokio::time::sleep(std::time::Duration::from_secs(31)).await;
    let res = client().get(v["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("set-cookie").is_none(), "no session for an expired code");
    assert!(res.text().await.unwrap().contains("work once, for 30 seconds"));
}

#[tokio::test]
async fn handoff_init_refuses_bad_credentials_other_clients_and_open_redirects() {
    let s = setup().await;
    let status_of = |res: reqwest::Response| res.status().as_u16();
    // A wrong secret.
    let res = handoff_init(&s.server, &s.token, init_body(&s.client_id, "wrong-secret", APP_SETTINGS)).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    // No customer token.
    let res = reqwest::Client::new()
        .post(s.server.url("/api/v1/auth/handoff/init"))
        .json(&init_body(&s.client_id, &s.secret, APP_SETTINGS))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // Return URLs off the client's list: another site, a look-alike host, http on its domain, a page of ours.
    let ours = s.server.url("/");
    for bad in [
        "https://evil.example/",
        "https://yourapp.com.evil.example/settings",
        "http://yourapp.com/settings",
        "javascript:alert(1)",
        ours.as_str(),
    ] {
        let res = handoff_init(&s.server, &s.token, init_body(&s.client_id, &s.secret, bad)).await;
        assert_eq!(res.status(), 400, "{bad}");
        let p: Value = res.json().await.unwrap();
        assert_eq!(p["field"], "redirectUri", "{bad}: {p}");
    }
    // One of its redirect URIs and its domains are fine; an unknown intent is not.
    let res = handoff_init(&s.server, &s.token, init_body(&s.client_id, &s.secret, APP_CALLBACK)).await;
    assert_eq!(status_of(res), 200);
    let mut body = init_body(&s.client_id, &s.secret, APP_SETTINGS);
    body["intent"] = json!("security");
    let res = handoff_init(&s.server, &s.token, body).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["field"], "intent");

    // Another white-label client presenting this client's customer token.
    let op = operator_token(&s.server);
    let (other_id, other_secret) = whitelabel(&s.server, &op, "OtherApp", "#0B7285").await;
    let res = handoff_init(&s.server, &s.token, init_body(&other_id, &other_secret, APP_SETTINGS)).await;
    assert_eq!(res.status(), 403);
    let p: Value = res.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("issued to another client"), "{p}");

    // A third-party client (dynamic registration) cannot hand off, with its own token either.
    let (tp_id, tp_tokens) = s.customer.login_client("connections").await;
    let res = handoff_init(&s.server, &tp_tokens.access, init_body(&tp_id, "", APP_CALLBACK)).await;
    assert_eq!(res.status(), 403);
    let p: Value = res.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("white-label"), "{p}");
    // A token without the scope `connections`.
    let narrow = s.customer.login_with(&s.client_id, Some(&s.secret), APP_CALLBACK, "account", &[]).await;
    let res = handoff_init(
        &s.server,
        narrow["access_token"].as_str().unwrap(),
        init_body(&s.client_id, &s.secret, APP_SETTINGS),
    )
    .await;
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn a_handoff_code_opens_its_own_clients_branding_only() {
    let s = setup().await;
    let op = operator_token(&s.server);
    let (other_id, other_secret) = whitelabel(&s.server, &op, "OtherApp", "#0B7285").await;
    let other_token = customer_token(&s.customer, &other_id, &other_secret).await;
    let res = handoff_init(&s.server, &other_token, init_body(&other_id, &other_secret, APP_SETTINGS)).await;
    assert_eq!(res.status(), 200);
    let other: Value = res.json().await.unwrap();
    let mine = issue_code(&s).await;

    let browser = client();
    browser.get(other["url"].as_str().unwrap()).send().await.unwrap();
    let html = browser.get(s.server.url("/connections")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Back to OtherApp") && !html.contains("YourApp"), "{html}");
    // The other code still opens its own client's page.
    let browser = client();
    browser.get(mine["url"].as_str().unwrap()).send().await.unwrap();
    let html = browser.get(s.server.url("/connections")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Back to YourApp") && !html.contains("OtherApp"), "{html}");
}

#[tokio::test]
async fn oauth2_connect_from_the_page_goes_to_the_provider_and_comes_back_to_it() {
    let (server, _dir) = server();
    let alice = Flow::signup(&server, "alice@example.com").await;
    let html = page(&alice).await;
    assert!(html.contains("Connect Google"), "{html}");
    assert!(!html.contains("google-client-id-123") && !html.contains("google-secret"), "no client credentials shown");
    let res = alice
        .http
        .post(alice.url("/connections/connect"))
        .form(&[("csrf_token", input(&html, "csrf_token").as_str()), ("provider", "google")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let to = location(&res);
    assert!(to.starts_with("https://accounts.google.com/"), "{to}");
    assert_eq!(query_param(&to, "redirect_uri").unwrap(), server.url("/api/v1/connections/callback"));
    assert_eq!(query_param(&to, "client_id").unwrap(), "google-client-id-123");
    let state = query_param(&to, "state").unwrap();

    // The person refuses at Google: back on the page, told so in words, nothing stored.
    let mut callback = url::Url::parse(&server.url("/api/v1/connections/callback")).unwrap();
    callback
        .query_pairs_mut()
        .append_pair("state", &state)
        .append_pair("error", "access_denied")
        .append_pair("error_description", "The user <b>said</b> no");
    let res = alice.http.get(callback.as_str()).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let back = location(&res);
    assert!(back.starts_with(&server.url("/connections?error=access_denied")), "{back}");
    let html = alice.http.get(&back).send().await.unwrap().text().await.unwrap();
    assert!(
        html.contains("The service was not connected: access was denied at the provider. The provider said: The user &lt;b&gt;said&lt;&#x2f;b&gt; no"),
        "{html}"
    );
    assert!(api_connections(&alice).await.is_empty());
}

#[tokio::test]
async fn an_expired_connection_is_reconnected_and_replaced() {
    let (server, _dir) = server();
    let alice = Flow::signup(&server, "alice@example.com").await;
    let old = connect_acme(&alice, "old-key").await;
    // The provider stopped taking the key: the connection is expired (as a refused refresh leaves it).
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&server.db_url()).await.unwrap();
    sqlx::query("UPDATE connections SET status = 'expired', last_error = 'the provider refused the key' WHERE id = $1")
        .bind(&old)
        .execute(&db)
        .await
        .unwrap();
    db.close().await;

    let html = page(&alice).await;
    assert!(html.contains("Expired: reconnect to use it again"), "{html}");
    assert!(html.contains("Last error: the provider refused the key"), "{html}");
    assert!(html.contains(&format!(r#"<label for="rekey-{old}">New Acme API token</label>"#)), "{html}");
    assert!(html.contains(&format!(r#"<input type="hidden" name="replaces" value="{old}">"#)), "{html}");
    let res = alice
        .http
        .post(alice.url("/connections/connect"))
        .form(&[
            ("csrf_token", input(&html, "csrf_token").as_str()),
            ("provider", "acme"),
            ("replaces", old.as_str()),
            ("api_key", "new-key"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let listed = api_connections(&alice).await;
    assert_eq!(listed.len(), 1, "the expired connection was replaced: {listed:?}");
    assert_ne!(listed[0]["id"], old.as_str());
    assert_eq!(listed[0]["status"], "active");
}

#[tokio::test]
async fn an_account_handoff_opens_the_dashboard_in_the_apps_branding_without_its_security_page() {
    let s = setup().await;
    let mut body = init_body(&s.client_id, &s.secret, APP_SETTINGS);
    body["intent"] = json!("account");
    // The dashboard manages apps and tokens: a customer token without `account` cannot open it.
    let narrow = s.customer.login_with(&s.client_id, Some(&s.secret), APP_CALLBACK, "connections", &[]).await;
    let res = handoff_init(&s.server, narrow["access_token"].as_str().unwrap(), body.clone()).await;
    assert_eq!(res.status(), 403);
    let res = handoff_init(&s.server, &s.token, body).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["intent"], "account");

    let browser = client();
    let res = browser.get(v["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/account");
    let paths: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().split("; ").find(|p| p.starts_with("Path=")).unwrap().to_owned())
        .collect();
    assert!(
        paths.contains(&"Path=/account".to_owned()) && paths.contains(&"Path=/connections".to_owned()),
        "{paths:?}"
    );

    for page in ["/account", "/account/apps", "/account/tokens", "/account/activity", "/connections"] {
        let res = browser.get(s.server.url(page)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{page}");
        let html = res.text().await.unwrap();
        assert!(html.contains(&format!("/static/brand/{}.css", s.client_id)), "{page} is branded: {html}");
        assert!(html.contains("customer@example.com"), "{page}");
    }
    let overview = browser.get(s.server.url("/account")).send().await.unwrap().text().await.unwrap();
    assert!(overview.contains("Back to YourApp"), "{overview}");
    assert!(!overview.contains(r#"href="&#x2f;account&#x2f;security""#), "no security page in the navigation");
    // The security page (password, second factor, sessions) needs a sign-in here.
    let res = browser.get(s.server.url("/account/security")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(location(&res).starts_with("/login?next="));
    // A token made on the handed-off tokens page is the customer's.
    let tokens = browser.get(s.server.url("/account/tokens")).send().await.unwrap().text().await.unwrap();
    let res = browser
        .post(s.server.url("/account/tokens"))
        .form(&[
            ("csrf_token", input(&tokens, "csrf_token")),
            ("name", "from the app".to_owned()),
            ("scope", "universal-mcp-read".to_owned()),
            ("expires", "default".to_owned()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    // The rest of the site does not see the handed-off sign-in.
    assert_eq!(browser.get(s.server.url("/api/v1/account")).send().await.unwrap().status(), 401);
}
