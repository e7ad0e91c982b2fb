//! Sign-in pages: one error for unknown email and wrong password, failure limits, CSRF, safe redirects.

use crate::harness::{Flow, Server, client, input, location};

async fn try_login(
    server: &Server,
    http: &reqwest::Client,
    email: &str,
    password: &str,
    next: &str,
) -> reqwest::Response {
    let page = http.get(server.url("/login")).send().await.unwrap().text().await.unwrap();
    http.post(server.url("/login"))
        .form(&[
            ("csrf_token", input(&page, "csrf_token").as_str()),
            ("next", next),
            ("email", email),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_error() {
    let server = Server::start();
    Flow::signup(&server, "known@example.com").await;
    let http = client();
    let a = try_login(&server, &http, "known@example.com", "wrong password!", "/").await;
    let b = try_login(&server, &http, "nobody@example.com", "wrong password!", "/").await;
    assert_eq!(a.status(), 401);
    assert_eq!(b.status(), 401);
    let (ta, tb) = (a.text().await.unwrap(), b.text().await.unwrap());
    assert!(ta.contains("Invalid email or password."));
    assert_eq!(ta.replace("known@", "X@"), tb.replace("nobody@", "X@"), "pages differ only in the echoed email");
}

#[tokio::test]
async fn login_failures_are_slowed_down_per_account() {
    let server = Server::start();
    let flow = Flow::signup(&server, "victim@example.com").await;
    let http = client();
    for _ in 0..5 {
        assert_eq!(try_login(&server, &http, "victim@example.com", "guess guess", "/").await.status(), 401);
    }
    // The sixth attempt within the minute is refused even with the right password.
    let res = try_login(&server, &http, "victim@example.com", &flow.password, "/").await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().get("retry-after").is_some());
    // Other accounts are unaffected.
    Flow::signup(&server, "other@example.com").await;
    let ok = try_login(&server, &client(), "other@example.com", &flow.password, "/").await;
    assert_eq!(ok.status(), 303);
}

#[tokio::test]
async fn login_requires_csrf_token_and_redirects_only_locally() {
    let server = Server::start();
    let flow = Flow::signup(&server, "csrf@example.com").await;
    let http = client();
    http.get(server.url("/login")).send().await.unwrap();
    let res = http
        .post(server.url("/login"))
        .form(&[("email", "csrf@example.com"), ("password", flow.password.as_str()), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    for evil in ["https://evil.example/", "//evil.example/", "/\\evil.example"] {
        let res = try_login(&server, &client(), "csrf@example.com", &flow.password, evil).await;
        assert_eq!(res.status(), 303);
        assert_eq!(location(&res), "/", "next={evil}");
    }
}

#[tokio::test]
async fn session_cookie_is_httponly_samesite_lax() {
    let server = Server::start();
    let res = client().get(server.url("/login")).send().await.unwrap();
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("bk_session="));
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"), "{cookie}");
    // A tampered cookie is ignored (treated as signed out).
    let page = client()
        .get(server.url("/"))
        .header("cookie", cookie.split(';').next().unwrap().replace("bk_session=", "bk_session=x"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Welcome"));
}

/// A taken email is not refused on the page (that would tell it is registered): see
/// `security_sign_in::signup_does_not_reveal_a_registered_email`.
#[tokio::test]
async fn signup_validates_input() {
    let server = Server::start();
    Flow::signup(&server, "dup@example.com").await;
    let http = client();
    let page = http.get(server.url("/signup")).send().await.unwrap().text().await.unwrap();
    let csrf = input(&page, "csrf_token");
    let post = |email: &'static str, pw: &'static str| {
        let (http, url, csrf) = (http.clone(), server.url("/signup"), csrf.clone());
        async move {
            http.post(url)
                .form(&[("csrf_token", csrf.as_str()), ("email", email), ("password", pw), ("next", "/")])
                .send()
                .await
                .unwrap()
        }
    };
    let res = post("not-an-email", "long enough password").await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("valid email"));
    let res = post("short@example.com", "short").await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("at least 8"));
}
