//! Signing out ends the browser session on the server: a copy of the old cookie (another tab, one
//! stolen before sign-out) no longer acts for the account, on the REST API or on the pages.

use crate::harness::{Flow, Server, input, location};

const CB: &str = "http://127.0.0.1:9/callback";

/// A browser without a cookie jar: the test holds the cookie itself, so it can replay it.
fn bare() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn cookie_of(res: &reqwest::Response) -> String {
    let set = res.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// Signs in with a fresh anonymous cookie; returns the signed-in cookie (`bk_session=…`).
async fn sign_in(server: &Server, flow: &Flow) -> String {
    let page = bare().get(server.url("/login")).send().await.unwrap();
    let anonymous = cookie_of(&page);
    let html = page.text().await.unwrap();
    let res = bare()
        .post(server.url("/login"))
        .header("cookie", &anonymous)
        .form(&[
            ("csrf_token", input(&html, "csrf_token")),
            ("next", "/".into()),
            ("email", flow.email.clone()),
            ("password", flow.password.clone()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    cookie_of(&res)
}

async fn account_status(server: &Server, cookie: &str) -> u16 {
    bare().get(server.url("/api/v1/account")).header("cookie", cookie).send().await.unwrap().status().as_u16()
}

async fn sign_out(server: &Server, cookie: &str) {
    let home = bare().get(server.url("/")).header("cookie", cookie).send().await.unwrap().text().await.unwrap();
    assert!(home.contains(r#"action="/logout""#), "signed in: {home}");
    let res = bare()
        .post(server.url("/logout"))
        .header("cookie", cookie)
        .form(&[("csrf_token", input(&home, "csrf_token"))])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/login");
    assert!(res.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"), "the browser drops its cookie");
}

#[tokio::test]
async fn sign_out_ends_the_session_for_every_copy_of_the_cookie() {
    let server = Server::start();
    let flow = Flow::signup(&server, "signout@example.com").await;
    let client_id = flow.register(CB, "universal-mcp-read").await;
    let cookie = sign_in(&server, &flow).await;
    let other_browser = sign_in(&server, &flow).await;
    assert_eq!(account_status(&server, &cookie).await, 200);
    let authorize = flow.authorize_url(&client_id, CB, "universal-mcp-read", "s");
    let res = bare().get(&authorize).header("cookie", &cookie).send().await.unwrap();
    assert!(location(&res).starts_with("/consent?"), "signed in: straight to consent");
    let consent = location(&res);

    sign_out(&server, &cookie).await;

    // The old cookie, replayed: refused by the API, signed out on the pages.
    assert_eq!(account_status(&server, &cookie).await, 401, "the API still accepts a signed-out cookie");
    let res = bare()
        .post(server.url("/api/v1/auth/pat"))
        .header("cookie", &cookie)
        .json(&serde_json::json!({"name": "after sign-out", "scopes": ["account"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = bare().get(&authorize).header("cookie", &cookie).send().await.unwrap();
    assert!(location(&res).starts_with("/login?next="), "authorize: {}", location(&res));
    let res = bare().get(server.url(&consent)).header("cookie", &cookie).send().await.unwrap();
    assert!(location(&res).starts_with("/login?next="), "consent: {}", location(&res));
    let home = bare().get(server.url("/")).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    assert!(!home.contains("signout@example.com"), "{home}");

    // Only that session ended: the same person's other browser is still signed in.
    assert_eq!(account_status(&server, &other_browser).await, 200);
    // Signing in again works.
    let again = sign_in(&server, &flow).await;
    assert_eq!(account_status(&server, &again).await, 200);
}

#[tokio::test]
async fn sign_out_on_one_instance_is_seen_by_another_within_a_second() {
    let a = Server::start();
    let b = a.start_peer(&[]);
    let flow = Flow::signup(&a, "signout-peer@example.com").await;
    let cookie = sign_in(&a, &flow).await;
    assert_eq!(account_status(&b, &cookie).await, 200, "the peer knows the session");
    sign_out(&a, &cookie).await;
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    assert_eq!(account_status(&b, &cookie).await, 401, "the peer still honours a signed-out cookie");
}
