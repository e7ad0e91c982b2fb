//! The account dashboard (`/account/…`) as a person's browser uses it: every page needs a live
//! sign-in; every form needs the session's CSRF token (without it nothing changes); an id of
//! another account's grant, token or browser session answers 404 and changes nothing; revoking an
//! app or a token there stops its credentials on `/mcp`; "Sign out everywhere" ends every browser.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Flow, Server, input, location, whoami};

fn bare() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn page(flow: &Flow, path: &str) -> (u16, String) {
    let res = flow.http.get(flow.url(path)).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// The CSRF token of the signed-in browser (from a dashboard page).
async fn csrf(flow: &Flow) -> String {
    let (status, html) = page(flow, "/account/security").await;
    assert_eq!(status, 200, "{html}");
    input(&html, "csrf_token")
}

async fn post(flow: &Flow, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    flow.http.post(flow.url(path)).form(form).send().await.unwrap()
}

/// A PAT made through the REST API in the signed-in browser.
async fn rest_pat(flow: &Flow, name: &str) -> Value {
    let res = flow
        .http
        .post(flow.url("/api/v1/auth/pat"))
        .json(&json!({"name": name, "scopes": ["universal-mcp-read-write", "account"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

/// The id of the account's app grant for `access` (the session its tokens belong to).
async fn grant_id(flow: &Flow, access: &str) -> String {
    let res = reqwest::Client::new().get(flow.url("/api/v1/sessions")).bearer_auth(access).send().await.unwrap();
    let v: Value = res.json().await.unwrap();
    v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "oauth")
        .unwrap_or_else(|| panic!("no app session: {v}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The handle of this browser's session on the security page.
async fn own_session_handle(flow: &Flow) -> String {
    let (_, html) = page(flow, "/account/security").await;
    let item = html.split(r#"<li class="item current">"#).nth(1).expect("this browser is listed");
    let action = item.split(r#"action="/account/sessions/"#).nth(1).unwrap();
    action.split('/').next().unwrap().to_owned()
}

async fn signed_in(flow: &Flow) -> bool {
    flow.http.get(flow.url("/api/v1/account")).send().await.unwrap().status() == 200
}

async fn refused_within_a_second(base: &str, token: &str) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    loop {
        if whoami(base, token).await.0 == 401 {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn dashboard_pages_need_a_signed_in_browser() {
    let server = Server::start();
    for (path, next) in [
        ("/account", "%2Faccount"),
        ("/account/apps", "%2Faccount%2Fapps"),
        ("/account/tokens", "%2Faccount%2Ftokens"),
        ("/account/activity?kind=auth.signin", "%2Faccount%2Factivity%3Fkind%3Dauth.signin"),
        ("/account/security", "%2Faccount%2Fsecurity"),
    ] {
        let res = bare().get(server.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 303, "{path}");
        assert_eq!(location(&res), format!("/login?next={next}"), "{path}");
        assert!(res.headers()["set-cookie"].to_str().unwrap().starts_with("bk_session="), "a cookie for the form");
    }
    // Signed in, each page answers, unframeable, with no store and no script but on the activity page.
    let flow = Flow::signup(&server, "dash-pages@example.com").await;
    for path in ["/account", "/account/apps", "/account/tokens", "/account/activity", "/account/security"] {
        let res = flow.http.get(flow.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let h = res.headers();
        assert_eq!(h["cache-control"], "no-store", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("form-action 'self'"), "{path}: {csp}");
        assert_eq!(csp.contains("script-src 'self'"), path == "/account/activity", "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        let html = res.text().await.unwrap();
        assert!(html.contains("dash-pages@example.com"), "{path}");
        assert!(!html.contains("<script>"), "no inline script on {path}");
    }
    let js = bare().get(server.url("/static/dashboard.js")).send().await.unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(js.text().await.unwrap().contains("new EventSource('/api/v1/events')"));
}

#[tokio::test]
async fn dashboard_post_without_csrf_changes_nothing() {
    let server = Server::start();
    let flow = Flow::signup(&server, "dash-csrf@example.com").await;
    let (_, app) = flow.login_client("universal-mcp-read-write account").await;
    let sid = grant_id(&flow, &app.access).await;
    let pat = rest_pat(&flow, "kept").await;
    let (pat_id, pat_token) = (pat["id"].as_str().unwrap().to_owned(), pat["token"].as_str().unwrap().to_owned());
    let handle = own_session_handle(&flow).await;
    let pats_before = flow.http.get(flow.url("/api/v1/auth/pat")).send().await.unwrap().json::<Value>().await.unwrap();

    let other = Flow::signup(&server, "dash-csrf-other@example.com").await;
    let foreign = csrf(&other).await;
    let tries: Vec<(String, Vec<(&str, &str)>)> = vec![
        (format!("/account/apps/{sid}/revoke"), vec![]),
        (format!("/account/tokens/{pat_id}/revoke"), vec![]),
        ("/account/tokens".into(), vec![("name", "sneaky"), ("scope", "account")]),
        (format!("/account/sessions/{handle}/end"), vec![]),
        ("/account/sessions/end-all".into(), vec![]),
    ];
    for (path, fields) in &tries {
        for token in [None, Some("forged"), Some("")] {
            let mut form = fields.clone();
            if let Some(t) = token {
                form.push(("csrf_token", t));
            }
            let res = post(&flow, path, &form).await;
            assert_eq!(res.status(), 400, "{path} with {token:?}");
            assert!(res.text().await.unwrap().contains("This form has expired"), "{path}");
        }
        // Another browser's token (a session of its own) does not work either.
        let mut form = fields.clone();
        form.push(("csrf_token", &foreign));
        assert_eq!(post(&flow, path, &form).await.status(), 400, "{path} with another session's token");
    }
    assert_eq!(whoami(&server.base, &app.access).await.0, 200, "the app still works");
    assert_eq!(whoami(&server.base, &pat_token).await.0, 200, "the token still works");
    assert!(signed_in(&flow).await, "still signed in");
    let pats_after = flow.http.get(flow.url("/api/v1/auth/pat")).send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(pats_before, pats_after, "no token was created or revoked");
}

#[tokio::test]
async fn dashboard_cannot_touch_another_accounts_grant_pat_or_session() {
    let server = Server::start();
    let alice = Flow::signup(&server, "dash-alice@example.com").await;
    let bob = Flow::signup(&server, "dash-bob@example.com").await;
    let (_, bobs_app) = bob.login_client("universal-mcp-read-write account").await;
    let bobs_sid = grant_id(&bob, &bobs_app.access).await;
    let bobs_pat = rest_pat(&bob, "bob's").await;
    let bobs_handle = own_session_handle(&bob).await;
    let token = csrf(&alice).await;

    for path in [
        format!("/account/apps/{bobs_sid}/revoke"),
        format!("/account/tokens/{}/revoke", bobs_pat["id"].as_str().unwrap()),
        // Bob's PAT's own session, named as an app.
        format!("/account/apps/{}/revoke", bobs_pat["session_id"].as_str().unwrap()),
        format!("/account/sessions/{bobs_handle}/end"),
        "/account/apps/ses_nonexistent/revoke".into(),
        "/account/tokens/pat_nonexistent/revoke".into(),
        "/account/sessions/AAAAAAAAAAAAAAAAAAAAAA/end".into(),
    ] {
        let res = post(&alice, &path, &[("csrf_token", &token)]).await;
        assert_eq!(res.status(), 404, "{path}: another account's id answers like none");
        let body = res.text().await.unwrap();
        assert!(body.contains("There is no such"), "{path}: {body}");
        assert!(!body.contains("dash-bob"), "{path}: nothing of bob's is shown");
    }
    assert_eq!(whoami(&server.base, &bobs_app.access).await.0, 200, "bob's app still works");
    assert_eq!(whoami(&server.base, bobs_pat["token"].as_str().unwrap()).await.0, 200, "bob's token still works");
    assert!(signed_in(&bob).await, "bob is still signed in");
    assert!(signed_in(&alice).await);
    // Alice's pages never show bob's things.
    for path in ["/account/apps", "/account/tokens", "/account/security", "/account/activity"] {
        let (_, html) = page(&alice, path).await;
        assert!(!html.contains(&bobs_sid) && !html.contains(&bobs_handle) && !html.contains("bob's"), "{path}");
    }
}

#[tokio::test]
async fn dashboard_revocations_stop_credentials_and_sign_out_everywhere() {
    let server = Server::start();
    let flow = Flow::signup(&server, "dash-revoke@example.com").await;
    let token = csrf(&flow).await;

    // A token made on the page: shown once (no-store), works on /mcp, listed without its secret.
    let res = post(
        &flow,
        "/account/tokens",
        &[
            ("csrf_token", &token),
            ("name", "laptop"),
            ("scope", "universal-mcp-read-write"),
            ("scope", "agents-all"),
            ("expires", "7"),
            ("default_permission", "read"),
            ("agents", "all"),
            ("knowledge_bases", "all"),
        ],
    )
    .await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    let pat =
        html.split(r#"id="new-token" class="secret" type="text" value=""#).nth(1).unwrap().split('"').next().unwrap();
    assert!(pat.starts_with("bkp_"), "{pat}");
    assert_eq!(html.matches(pat).count(), 1, "the token is on its page once");
    let listed: Value = flow.http.get(flow.url("/api/v1/auth/pat")).send().await.unwrap().json().await.unwrap();
    let made = &listed["tokens"][0];
    assert_eq!(made["name"], "laptop");
    assert_eq!(made["scopes"], json!(["universal-mcp-read-write"]), "agents-all is never given to a PAT");
    assert_eq!(made["default_provider_permission"], "read");
    let week = made["expires_at"].as_i64().unwrap() - made["created_at"].as_i64().unwrap();
    assert_eq!(week, 7 * 86_400);
    assert_eq!(whoami(&server.base, pat).await.0, 200);
    let (_, tokens_page) = page(&flow, "/account/tokens").await;
    assert!(tokens_page.contains("laptop") && !tokens_page.contains(pat), "listed, never shown again");

    // Revoked on the page: refused on /mcp.
    let pat_id = made["id"].as_str().unwrap();
    let res = post(&flow, &format!("/account/tokens/{pat_id}/revoke"), &[("csrf_token", &token)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/account/tokens?revoked=1");
    assert!(refused_within_a_second(&server.base, pat).await, "the revoked token still works");

    // An app, revoked on the apps page: its access token is refused, and so is its refresh token.
    let (client_id, app) = flow.login_client("universal-mcp-read-write account").await;
    let sid = grant_id(&flow, &app.access).await;
    let (_, apps_page) = page(&flow, "/account/apps").await;
    assert!(apps_page.contains(&format!(r#"action="/account/apps/{sid}/revoke""#)), "{apps_page}");
    assert!(apps_page.contains("<dd>127.0.0.1</dd>"), "where the app sends the person back to: {apps_page}");
    let res = post(&flow, &format!("/account/apps/{sid}/revoke"), &[("csrf_token", &token)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/account/apps?revoked=1");
    assert!(refused_within_a_second(&server.base, &app.access).await, "the revoked app still works");
    assert_eq!(flow.refresh(&client_id, &app.refresh).await.status(), 400, "its refresh token is dead too");
    let (_, apps_page) = page(&flow, "/account/apps").await;
    assert!(!apps_page.contains(&sid), "no longer listed");

    // The activity page shows what happened, and filters by kind.
    let (status, activity) = page(&flow, "/account/activity?kind=session.revoked").await;
    assert_eq!(status, 200);
    assert!(
        activity.contains(r#"<span class="event-label">App access revoked</span>"#)
            && !activity.contains(r#"<span class="event-label">Personal access token revoked</span>"#),
        "{activity}"
    );
    let (_, activity) = page(&flow, "/account/activity").await;
    assert!(activity.contains("pat.revoked") && activity.contains("session.revoked"), "{activity}");

    // Two browsers of the same person; "Sign out everywhere" in one ends both.
    let other =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap();
    let login = other.get(flow.url("/login")).send().await.unwrap().text().await.unwrap();
    let res = other
        .post(flow.url("/login"))
        .form(&[
            ("csrf_token", input(&login, "csrf_token")),
            ("next", "/account".into()),
            ("email", flow.email.clone()),
            ("password", flow.password.clone()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(other.get(flow.url("/account")).send().await.unwrap().status(), 200);
    let (_, security) = page(&flow, "/account/security").await;
    assert_eq!(security.matches(r#"<li class="item"#).count(), 2, "both browsers listed: {security}");
    let res = post(&flow, "/account/sessions/end-all", &[("csrf_token", &token)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/login");
    assert!(res.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let res = other.get(flow.url("/account")).send().await.unwrap();
    assert_eq!(res.status(), 303, "the other browser is signed out");
    assert_eq!(location(&res), "/login?next=%2Faccount");
    assert_eq!(other.get(flow.url("/api/v1/account")).send().await.unwrap().status(), 401);
    assert!(!signed_in(&flow).await);
}

#[tokio::test]
async fn ending_one_browser_session_leaves_the_others() {
    let server = Server::start();
    let flow = Flow::signup(&server, "dash-one@example.com").await;
    // The same person in a second browser.
    let other =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap();
    let login = other.get(flow.url("/login")).send().await.unwrap().text().await.unwrap();
    let res = other
        .post(flow.url("/login"))
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0")
        .form(&[
            ("csrf_token", input(&login, "csrf_token")),
            ("next", "/account".into()),
            ("email", flow.email.clone()),
            ("password", flow.password.clone()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let other_page = other
        .get(flow.url("/account/security"))
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let other_handle = other_page
        .split(r#"<li class="item current">"#)
        .nth(1)
        .unwrap()
        .split(r#"action="/account/sessions/"#)
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let (_, security) = page(&flow, "/account/security").await;
    assert!(security.contains("Firefox on Linux"), "the other browser is named by its user agent: {security}");
    let token = csrf(&flow).await;
    let res = post(&flow, &format!("/account/sessions/{other_handle}/end"), &[("csrf_token", &token)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/account/security?notice=session_ended");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(other.get(flow.url("/api/v1/account")).send().await.unwrap().status(), 401, "that browser is out");
    assert!(signed_in(&flow).await, "this one is still in");
    let (_, security) = page(&flow, "/account/security?notice=session_ended").await;
    assert!(security.contains("That browser was signed out."));
    assert!(!security.contains(&other_handle));
    // Ending this browser's own session signs it out.
    let own = own_session_handle(&flow).await;
    let res = post(&flow, &format!("/account/sessions/{own}/end"), &[("csrf_token", &token)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/login");
    assert!(!signed_in(&flow).await);
}
