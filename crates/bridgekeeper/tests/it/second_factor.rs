//! Two-factor sign-in through the real binary: enrolling an authenticator from the page's key,
//! signing in with its code, recovery codes, an operator requiring a second factor. Named security
//! tests: a TOTP code is refused once used (within its window, the enrolment's own code included);
//! a recovery code works once; wrong codes are slowed down.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::harness::{Flow, Server, client, input, location};

/// The authenticator a phone app would make from the key shown on the page.
pub(crate) struct App(totp_rs::Totp);

impl App {
    fn from_page(html: &str) -> App {
        let start = html.find(r#"id="totp-secret">"#).expect("the key is shown") + r#"id="totp-secret">"#.len();
        let key: String = html[start..].split('<').next().unwrap().chars().filter(|c| !c.is_whitespace()).collect();
        let secret = totp_rs::Secret::try_from_base32(&key).expect("a base32 key");
        App(totp_rs::Builder::new().with_secret(secret).build().unwrap())
    }

    fn code_at_step(&self, step: u64) -> String {
        self.0.generate(step * 30).to_string()
    }
}

fn step_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() / 30
}

/// Enrols an authenticator for the signed-in `flow`; the app, the step of the code used, the recovery codes.
pub(crate) async fn enrol(server: &Server, flow: &Flow) -> (App, u64, Vec<String>) {
    let page = flow.http.get(server.url("/account/security/totp")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"src="data:image&#x2f;svg+xml;base64,"#), "a QR code: {html}");
    let app = App::from_page(&html);
    let step = step_now();
    let res = flow
        .http
        .post(server.url("/account/security/totp"))
        .form(&[
            ("csrf_token", input(&html, "csrf_token")),
            ("pending", input(&html, "pending")),
            ("code", app.code_at_step(step)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let codes = recovery_codes(&res.text().await.unwrap());
    assert_eq!(codes.len(), 10);
    (app, step, codes)
}

fn recovery_codes(html: &str) -> Vec<String> {
    html.split("<li><code>").skip(1).map(|p| p.split('<').next().unwrap().to_owned()).collect()
}

/// Signs in with the password from a fresh browser; the browser and where it was sent.
async fn password(server: &Server, email: &str, pw: &str) -> (reqwest::Client, String) {
    let http = client();
    let page = http.get(server.url("/login")).send().await.unwrap().text().await.unwrap();
    let res = http
        .post(server.url("/login"))
        .form(&[
            ("csrf_token", input(&page, "csrf_token")),
            ("next", "/".into()),
            ("email", email.into()),
            ("password", pw.into()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    (http, location(&res))
}

/// Sends a code on the second-factor page; the answer's status.
pub(crate) async fn second_factor(server: &Server, http: &reqwest::Client, code: &str) -> u16 {
    let page = http.get(server.url("/login/second-factor?next=%2F")).send().await.unwrap().text().await.unwrap();
    let res = http
        .post(server.url("/login/second-factor"))
        .form(&[("csrf_token", input(&page, "csrf_token")), ("next", "/".into()), ("code", code.into())])
        .send()
        .await
        .unwrap();
    res.status().as_u16()
}

async fn signed_in(server: &Server, http: &reqwest::Client) -> bool {
    http.get(server.url("/api/v1/account")).send().await.unwrap().status() == 200
}

#[tokio::test]
async fn security_totp_code_cannot_be_replayed_within_its_window() {
    let server = Server::start();
    let flow = Flow::signup(&server, "two-factor@example.com").await;
    let (app, step, _) = enrol(&server, &flow).await;

    let (http, to) = password(&server, &flow.email, &flow.password).await;
    assert_eq!(to, "/login/second-factor?next=%2F", "the password alone does not sign in");
    assert!(!signed_in(&server, &http).await);
    assert_eq!(second_factor(&server, &http, &app.code_at_step(step)).await, 401, "the enrolment's code, replayed");
    assert_eq!(second_factor(&server, &http, "000000").await, 401);
    assert_eq!(second_factor(&server, &http, &app.code_at_step(step + 1)).await, 303);
    assert!(signed_in(&server, &http).await);
    // Audited with the factor used (the audit log is written in batches: wait for it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let audit = http.get(server.url("/api/v1/audit")).send().await.unwrap().text().await.unwrap();
        if audit.contains(r#""second_factor":"totp""#) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no auth.signin with second_factor in {audit}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // The same code in another browser, still within its window: refused.
    let (other, _) = password(&server, &flow.email, &flow.password).await;
    assert_eq!(second_factor(&server, &other, &app.code_at_step(step + 1)).await, 401);
    assert!(!signed_in(&server, &other).await);
    // The marker belongs to the browser that gave the password: a code alone signs nobody in.
    let stranger = client();
    let page = stranger.get(server.url("/login")).send().await.unwrap().text().await.unwrap();
    let res = stranger
        .post(server.url("/login/second-factor"))
        .form(&[("csrf_token", input(&page, "csrf_token")), ("next", "/".into()), ("code", app.code_at_step(step + 2))])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("Sign in again"));
    assert!(!signed_in(&server, &stranger).await);
}

#[tokio::test]
async fn security_recovery_code_works_once() {
    let server = Server::start();
    let flow = Flow::signup(&server, "recovery@example.com").await;
    let (_, _, codes) = enrol(&server, &flow).await;
    assert!(codes.iter().all(|c| c.len() == 11 && c.as_bytes()[5] == b'-'), "{codes:?}");

    let (http, _) = password(&server, &flow.email, &flow.password).await;
    assert_eq!(second_factor(&server, &http, &codes[0].to_lowercase()).await, 303, "case and dash do not matter");
    assert!(signed_in(&server, &http).await);
    let (again, _) = password(&server, &flow.email, &flow.password).await;
    assert_eq!(second_factor(&server, &again, &codes[0]).await, 401, "used once already");
    assert_eq!(second_factor(&server, &again, &codes[1].replace('-', "")).await, 303);
    // Codes of another account do not work here.
    let other = Flow::signup(&server, "other-recovery@example.com").await;
    let (_, _, theirs) = enrol(&server, &other).await;
    let (third, _) = password(&server, &flow.email, &flow.password).await;
    assert_eq!(second_factor(&server, &third, &theirs[0]).await, 401);
}

#[tokio::test]
async fn security_wrong_second_factor_codes_are_slowed_down() {
    let server = Server::start();
    let flow = Flow::signup(&server, "guessed@example.com").await;
    let (app, step, _) = enrol(&server, &flow).await;
    let (http, _) = password(&server, &flow.email, &flow.password).await;
    for _ in 0..5 {
        assert_eq!(second_factor(&server, &http, "123456").await, 401);
    }
    assert_eq!(second_factor(&server, &http, &app.code_at_step(step + 1)).await, 429, "even the right code waits");
    assert!(!signed_in(&server, &http).await);
}

#[tokio::test]
async fn turning_the_second_factor_off_needs_the_password() {
    let server = Server::start();
    let flow = Flow::signup(&server, "off@example.com").await;
    enrol(&server, &flow).await;
    let page = flow.http.get(server.url("/account/security/totp")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("10 unused recovery codes left"), "{page}");
    let off = |pw: &str| {
        flow.http
            .post(server.url("/account/security/totp/disable"))
            .form(&[("csrf_token", input(&page, "csrf_token")), ("current_password", pw.into())])
            .send()
    };
    assert_eq!(off("not my password").await.unwrap().status(), 400);
    let res = off(&flow.password).await.unwrap();
    assert_eq!(location(&res), "/account/security?notice=second_factor_removed");
    let (_, to) = password(&server, &flow.email, &flow.password).await;
    assert_eq!(to, "/", "the password alone signs in again");
}

#[tokio::test]
async fn an_operator_can_require_a_second_factor_of_every_account() {
    let server = Server::start_with(&[("BRIDGEKEEPER_ACCOUNTS__REQUIRE_SECOND_FACTOR", "true")]);
    // Sign-up, then the password: not signed in until an authenticator is set up.
    let http = client();
    let page = http.get(server.url("/signup")).send().await.unwrap().text().await.unwrap();
    http.post(server.url("/signup"))
        .form(&[
            ("csrf_token", input(&page, "csrf_token")),
            ("next", "/".into()),
            ("email", "must@example.com".into()),
            ("password", "a long enough password".into()),
        ])
        .send()
        .await
        .unwrap();
    let (http, to) = password(&server, "must@example.com", "a long enough password").await;
    assert_eq!(to, "/login/second-factor?next=%2F");
    let enrol_page = http.get(server.url(&to)).send().await.unwrap().text().await.unwrap();
    assert!(enrol_page.contains("requires a second factor"), "{enrol_page}");
    assert!(!signed_in(&server, &http).await);
    let app = App::from_page(&enrol_page);
    let res = http
        .post(server.url("/login/second-factor"))
        .form(&[
            ("csrf_token", input(&enrol_page, "csrf_token")),
            ("next", "/".into()),
            ("pending", input(&enrol_page, "pending")),
            ("code", app.code_at_step(step_now())),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(recovery_codes(&res.text().await.unwrap()).len(), 10);
    assert!(signed_in(&server, &http).await, "enrolled and signed in");
    // It cannot be turned off.
    let status = http.get(server.url("/account/security/totp")).send().await.unwrap().text().await.unwrap();
    assert!(status.contains("requires two-factor sign-in for every account"));
    assert!(!status.contains("/account/security/totp/disable"), "no form to turn it off");
    let home = http.get(server.url("/")).send().await.unwrap().text().await.unwrap();
    let res = http
        .post(server.url("/account/security/totp/disable"))
        .form(&[("csrf_token", input(&home, "csrf_token")), ("current_password", "a long enough password".into())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}
