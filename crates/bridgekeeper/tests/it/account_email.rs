//! The account lifecycle through a person's mailbox, against the real binary in its embedded
//! default (log-only mail: every message is written to `{data_dir}/outbox` instead of sent):
//! verifying the address, resetting a forgotten password, changing the password. The named
//! security tests: a reset link works once and not after it expires, a reset request does not tell
//! whether an account uses the address (same answer, same timing class), a password change needs
//! the current password and ends every other browser session.

use std::time::{Duration, Instant};

use crate::harness::{Flow, Server, client, input, location};

/// The messages in the outbox so far, oldest first (file names are time-ordered), decoded.
pub(crate) fn outbox(server: &Server) -> Vec<String> {
    let dir = server.dir.path().join("outbox");
    let mut files: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(d) => d.map(|e| e.unwrap().path()).collect(),
        Err(_) => return Vec::new(),
    };
    files.sort();
    files.iter().map(|f| quoted_printable(&std::fs::read_to_string(f).unwrap())).collect()
}

/// Undoes quoted-printable soft line breaks and `=XX` escapes (long lines are sent that way).
fn quoted_printable(raw: &str) -> String {
    let joined = raw.replace("=\r\n", "");
    let mut out = Vec::new();
    let b = joined.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'='
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits for a message to `to` whose subject is `subject` (messages are sent after the answer).
pub(crate) async fn wait_for_mail(server: &Server, to: &str, subject: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(m) = outbox(server)
            .into_iter()
            .rev()
            .find(|m| m.contains(&format!("To: {to}")) && m.contains(&format!("Subject: {subject}")))
        {
            return m;
        }
        assert!(Instant::now() < deadline, "no message {subject:?} to {to} within 10 s: {:?}", outbox(server));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The path and query of the first link to `path` in a message.
pub(crate) fn link_in(message: &str, path: &str) -> String {
    let start = message.find(&format!("{path}?token=")).unwrap_or_else(|| panic!("no {path} link in {message}"));
    message[start..].split_whitespace().next().unwrap().to_owned()
}

async fn userinfo_email_verified(server: &Server, access: &str) -> bool {
    let info: serde_json::Value = client()
        .get(server.url("/api/v1/auth/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    info["email_verified"].as_bool().expect("email_verified in userinfo")
}

/// A CSRF token for the signed-in session of `http` (the home page's sign-out form carries one).
async fn csrf(server: &Server, http: &reqwest::Client) -> String {
    let home = http.get(server.url("/")).send().await.unwrap().text().await.unwrap();
    input(&home, "csrf_token")
}

async fn sign_in(server: &Server, email: &str, password: &str) -> (reqwest::Client, u16) {
    let http = client();
    let page = http.get(server.url("/login")).send().await.unwrap().text().await.unwrap();
    let res = http
        .post(server.url("/login"))
        .form(&[
            ("csrf_token", input(&page, "csrf_token")),
            ("next", "/".into()),
            ("email", email.into()),
            ("password", password.into()),
        ])
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (http, status)
}

async fn signed_in(server: &Server, http: &reqwest::Client) -> bool {
    http.get(server.url("/api/v1/account")).send().await.unwrap().status() == 200
}

/// Asks for a reset link for `email` from a fresh browser; the answer page's text.
async fn request_reset(server: &Server, email: &str) -> (u16, String) {
    let http = client();
    let page = http.get(server.url("/forgot-password")).send().await.unwrap().text().await.unwrap();
    let res = http
        .post(server.url("/forgot-password"))
        .form(&[("csrf_token", input(&page, "csrf_token")), ("email", email.into())])
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// How long a reset request for `email` takes to be answered (the form fetched first, untimed).
async fn timed_reset(server: &Server, email: &str) -> Duration {
    let http = client();
    let page = http.get(server.url("/forgot-password")).send().await.unwrap().text().await.unwrap();
    let form = [("csrf_token", input(&page, "csrf_token")), ("email", email.to_owned())];
    let t = Instant::now();
    let res = http.post(server.url("/forgot-password")).form(&form).send().await.unwrap();
    let body = res.bytes().await.unwrap();
    let took = t.elapsed();
    assert!(!body.is_empty());
    took
}

/// Follows a reset link and sets `password`; the answer.
async fn reset_with(server: &Server, link: &str, password: &str) -> reqwest::Response {
    let http = client();
    let form = http.get(server.url(link)).send().await.unwrap();
    assert_eq!(form.status(), 200, "the reset form");
    let html = form.text().await.unwrap();
    http.post(server.url("/reset-password"))
        .form(&[
            ("csrf_token", input(&html, "csrf_token")),
            ("token", input(&html, "token")),
            ("new_password", password.into()),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_verification_link_proves_the_address_once_and_tokens_then_say_so() {
    let server = Server::start();
    let flow = Flow::signup(&server, "verify-me@example.com").await;
    let message = wait_for_mail(&server, "verify-me@example.com", "Verify your email address").await;
    let link = link_in(&message, "/verify-email");
    assert!(link.len() > 50, "a long random token: {link}");
    assert!(!server.logs().contains(&link[link.find('=').unwrap() + 1..]), "the token never reaches the log");
    assert!(server.logs().contains("written to the outbox"), "log-only mode says where the message went");

    let (_, tokens) = flow.login_client("openid email").await;
    assert!(!userinfo_email_verified(&server, &tokens.access).await, "not verified before the link is followed");

    let res = client().get(server.url(&link)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("verify-me@example.com is verified"));
    assert!(userinfo_email_verified(&server, &tokens.access).await, "userinfo tells the truth at once");
    let (_, fresh) = flow.login_client("openid email").await;
    let id_token = fresh.id_token.expect("an ID token");
    assert_eq!(crate::harness::jwt_parts(&id_token).1["email_verified"], true);

    let again = client().get(server.url(&link)).send().await.unwrap();
    assert_eq!(again.status(), 400);
    assert!(again.text().await.unwrap().contains("used already"));
    let forged = client().get(server.url("/verify-email?token=not-a-token")).send().await.unwrap();
    assert_eq!(forged.status(), 400);

    // Signing up again with the address sends nothing (the answer is the same as a new sign-up's).
    let before = outbox(&server).len();
    let http = client();
    let page = http.get(server.url("/signup")).send().await.unwrap().text().await.unwrap();
    let res = http
        .post(server.url("/signup"))
        .form(&[
            ("csrf_token", input(&page, "csrf_token")),
            ("next", "/".into()),
            ("email", "verify-me@example.com".into()),
            ("password", "another password 123".into()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(outbox(&server).len(), before);
}

#[tokio::test]
async fn security_reset_link_works_once_and_ends_every_session() {
    let server = Server::start();
    let flow = Flow::signup(&server, "forgetful@example.com").await;
    assert!(signed_in(&server, &flow.http).await);
    let (status, _) = request_reset(&server, "Forgetful@Example.com ").await;
    assert_eq!(status, 200);
    let message = wait_for_mail(&server, "forgetful@example.com", "Reset your password").await;
    let link = link_in(&message, "/reset-password");

    // Too short: refused, and the link is not spent.
    let short = reset_with(&server, &link, "short").await;
    assert_eq!(short.status(), 400);
    assert!(short.text().await.unwrap().contains("at least 8 characters"));

    let res = reset_with(&server, &link, "a brand new password").await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/login?reset=1");
    assert!(!signed_in(&server, &flow.http).await, "the browser signed in before the reset is signed out");
    assert_eq!(sign_in(&server, "forgetful@example.com", &flow.password).await.1, 401, "the old password is dead");
    let (http, status) = sign_in(&server, "forgetful@example.com", "a brand new password").await;
    assert_eq!(status, 303);
    assert!(signed_in(&server, &http).await);
    wait_for_mail(&server, "forgetful@example.com", "Your password was reset").await;

    // Replay: the form is not shown again, and a POST of the used token changes nothing.
    let replay = client().get(server.url(&link)).send().await.unwrap();
    assert_eq!(replay.status(), 400);
    assert!(replay.text().await.unwrap().contains("used already"));
    let http2 = client();
    let page = http2.get(server.url("/forgot-password")).send().await.unwrap().text().await.unwrap();
    let token = link.split("token=").nth(1).unwrap();
    let post = http2
        .post(server.url("/reset-password"))
        .form(&[
            ("csrf_token", input(&page, "csrf_token")),
            ("token", token.into()),
            ("new_password", "attacker password!".into()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 400);
    assert_eq!(sign_in(&server, "forgetful@example.com", "attacker password!").await.1, 401);
    assert_eq!(sign_in(&server, "forgetful@example.com", "a brand new password").await.1, 303);
}

#[tokio::test]
async fn security_reset_link_expires() {
    let server = Server::start();
    let flow = Flow::signup(&server, "late@example.com").await;
    request_reset(&server, "late@example.com").await;
    let link = link_in(&wait_for_mail(&server, "late@example.com", "Reset your password").await, "/reset-password");
    // Half an hour later (the clock is the server's own: the link's expiry is moved instead).
    let http = client();
    let form = http.get(server.url(&link)).send().await.unwrap().text().await.unwrap();
    let db = db(&server).await;
    sqlx::query("UPDATE email_tokens SET expires_at = created_at + 1800 - 2000 WHERE purpose = 'reset_password'")
        .execute(&db)
        .await
        .unwrap();
    let res = http.get(server.url(&link)).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("expired"));
    let post = http
        .post(server.url("/reset-password"))
        .form(&[
            ("csrf_token", input(&form, "csrf_token")),
            ("token", input(&form, "token")),
            ("new_password", "too late password".into()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 400);
    assert_eq!(sign_in(&server, "late@example.com", "too late password").await.1, 401);
    assert_eq!(sign_in(&server, "late@example.com", &flow.password).await.1, 303, "unchanged");
}

async fn db(server: &Server) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&server.db_url()).await.unwrap()
}

#[tokio::test]
async fn security_reset_request_does_not_tell_whether_an_account_exists() {
    let server = Server::start();
    Flow::signup(&server, "known@example.com").await;
    let (known_status, known_page) = request_reset(&server, "known@example.com").await;
    let (unknown_status, unknown_page) = request_reset(&server, "nobody-here@example.com").await;
    assert_eq!((known_status, unknown_status), (200, 200));
    assert_eq!(known_page, unknown_page, "the same page, byte for byte");
    // Timing class: the lookup and the mail happen after the answer, so neither answer waits on them.
    // Only the POST is timed, interleaved, ten of each; compared by their fastest (the least
    // disturbed by whatever else the machine runs) and their medians.
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..10 {
        // Fresh addresses each time for the unknown side, the same known one (3 sends an hour are
        // allowed per address; over that the answer is the same and nothing is sent).
        known.push(timed_reset(&server, "known@example.com").await);
        unknown.push(timed_reset(&server, &format!("unknown-{i}@example.com")).await);
    }
    known.sort();
    unknown.sort();
    let fastest = known[0].abs_diff(unknown[0]);
    assert!(fastest < Duration::from_millis(20), "fastest answers differ by {fastest:?}: {known:?} / {unknown:?}");
    let (k, u) = (known[5], unknown[5]);
    assert!(
        k.abs_diff(u) < Duration::from_millis(50) || k.max(u) < k.min(u) * 3,
        "median answer times differ: known {k:?}, unknown {u:?}"
    );
    // Only the account's owner got mail, and at most three messages an hour.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = outbox(&server);
    assert!(all.iter().all(|m| !m.contains("To: unknown-") && !m.contains("To: nobody-here")));
    let resets = all
        .iter()
        .filter(|m| m.contains("To: known@example.com") && m.contains("Subject: Reset your password"))
        .count();
    assert_eq!(resets, 3, "three reset messages an hour per address");
}

#[tokio::test]
async fn security_password_change_needs_the_current_password_and_ends_other_sessions() {
    let server = Server::start();
    let flow = Flow::signup(&server, "changer@example.com").await;
    let (other, _) = sign_in(&server, "changer@example.com", &flow.password).await;
    assert!(signed_in(&server, &other).await);
    let change = |current: &str, new: &str, token: String| {
        let form = [("csrf_token", token), ("current_password", current.to_owned()), ("new_password", new.to_owned())];
        flow.http.post(server.url("/account/password")).form(&form).send()
    };

    // No CSRF token: the form is refused and nothing changes.
    let res = flow
        .http
        .post(server.url("/account/password"))
        .form(&[("current_password", flow.password.as_str()), ("new_password", "no csrf password")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = change("wrong password!!", "whatever password", csrf(&server, &flow.http).await).await.unwrap();
    assert_eq!(location(&res), "/account/security?error=wrong_password");
    let res = change(&flow.password, "short", csrf(&server, &flow.http).await).await.unwrap();
    assert_eq!(location(&res), "/account/security?error=password_too_short");
    assert_eq!(sign_in(&server, "changer@example.com", &flow.password).await.1, 303, "unchanged so far");
    assert!(signed_in(&server, &other).await);

    let res = change(&flow.password, "my new password 42", csrf(&server, &flow.http).await).await.unwrap();
    assert_eq!(location(&res), "/account/security?notice=password_changed");
    assert!(res.headers().get("set-cookie").is_some(), "this browser gets a new session id");
    assert!(signed_in(&server, &flow.http).await, "this browser stays signed in");
    assert!(!signed_in(&server, &other).await, "every other browser is signed out");
    assert_eq!(sign_in(&server, "changer@example.com", &flow.password).await.1, 401);
    assert_eq!(sign_in(&server, "changer@example.com", "my new password 42").await.1, 303);
    wait_for_mail(&server, "changer@example.com", "Your password was changed").await;

    // Guessing the current password is slowed down: 5 failures a minute.
    for _ in 0..5 {
        change("guess guess guess", "whatever password", csrf(&server, &flow.http).await).await.unwrap();
    }
    let res = change("my new password 42", "third password here", csrf(&server, &flow.http).await).await.unwrap();
    assert_eq!(location(&res), "/account/security?error=too_many", "even the right password waits");
}

#[tokio::test]
async fn resending_the_verification_link() {
    let server = Server::start();
    let flow = Flow::signup(&server, "resend@example.com").await;
    wait_for_mail(&server, "resend@example.com", "Verify your email address").await;
    let res = flow
        .http
        .post(server.url("/account/email/verify"))
        .form(&[("csrf_token", csrf(&server, &flow.http).await)])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&res), "/account/security?notice=verification_sent");
    let deadline = Instant::now() + Duration::from_secs(10);
    while outbox(&server).len() < 2 {
        assert!(Instant::now() < deadline, "no second message");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let newest = outbox(&server).pop().unwrap();
    let res = client().get(server.url(&link_in(&newest, "/verify-email"))).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = flow
        .http
        .post(server.url("/account/email/verify"))
        .form(&[("csrf_token", csrf(&server, &flow.http).await)])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&res), "/account/security?error=already_verified");
    // Not signed in: off to sign in, nothing sent.
    let anon = client();
    let page = anon.get(server.url("/login")).send().await.unwrap().text().await.unwrap();
    let res = anon
        .post(server.url("/account/email/verify"))
        .form(&[("csrf_token", input(&page, "csrf_token"))])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(location(&res).starts_with("/login?next="));
}

#[tokio::test]
async fn changing_the_address_takes_the_link_sent_to_the_new_one_and_tells_the_old_one() {
    let server = Server::start();
    let flow = Flow::signup(&server, "old-address@example.com").await;
    let page = flow.http.get(server.url("/account/email")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("old-address@example.com"));
    let change = |new: &str, pw: &str| {
        let form = [
            ("csrf_token", input(&page, "csrf_token")),
            ("new_email", new.to_owned()),
            ("current_password", pw.to_owned()),
        ];
        flow.http.post(server.url("/account/email")).form(&form).send()
    };
    assert_eq!(change("new-address@example.com", "wrong password!").await.unwrap().status(), 401);
    assert_eq!(change("not an address", &flow.password).await.unwrap().status(), 400);
    let res = change("New-Address@Example.com", &flow.password).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("We sent a link to new-address@example.com"));
    let message = wait_for_mail(&server, "new-address@example.com", "Confirm your new email address").await;
    let link = link_in(&message, "/confirm-email-change");
    // Nothing changed until the link is followed.
    assert_eq!(sign_in(&server, "old-address@example.com", &flow.password).await.1, 303);

    let res = client().get(server.url(&link)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("now uses new-address@example.com"));
    wait_for_mail(&server, "old-address@example.com", "Your email address was changed").await;
    assert_eq!(sign_in(&server, "old-address@example.com", &flow.password).await.1, 401);
    assert_eq!(sign_in(&server, "new-address@example.com", &flow.password).await.1, 303);
    let (_, tokens) = flow.login_client("openid email").await;
    assert!(userinfo_email_verified(&server, &tokens.access).await, "the new address is verified by the link");
    assert_eq!(client().get(server.url(&link)).send().await.unwrap().status(), 400, "the link works once");

    // A link to an address another account took meanwhile changes nothing.
    let page = flow.http.get(server.url("/account/email")).send().await.unwrap().text().await.unwrap();
    let form = [
        ("csrf_token", input(&page, "csrf_token")),
        ("new_email", "contested@example.com".to_owned()),
        ("current_password", flow.password.clone()),
    ];
    assert_eq!(flow.http.post(server.url("/account/email")).form(&form).send().await.unwrap().status(), 200);
    let link = link_in(
        &wait_for_mail(&server, "contested@example.com", "Confirm your new email address").await,
        "/confirm-email-change",
    );
    Flow::signup(&server, "contested@example.com").await;
    let res = client().get(server.url(&link)).send().await.unwrap();
    assert_eq!(res.status(), 409);
    assert_eq!(sign_in(&server, "new-address@example.com", &flow.password).await.1, 303, "unchanged");
}
