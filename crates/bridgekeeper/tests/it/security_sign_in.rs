//! Sign-in and sign-up as an attacker probes them: over-long input is refused before it is counted,
//! audited or stored; failed sign-ins are limited per source and per account and source, so one source
//! can neither walk through many accounts nor lock an account's owner out elsewhere; sign-up does not
//! tell whether an email is registered.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Flow, Server, client, input, location, operator_token};

/// A browser whose connections come from `ip` (any 127.x.y.z reaches the server on loopback).
fn browser_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn try_login(server: &Server, http: &reqwest::Client, email: &str, password: &str) -> reqwest::Response {
    let page = http.get(server.url("/login")).send().await.unwrap().text().await.unwrap();
    http.post(server.url("/login"))
        .form(&[
            ("csrf_token", input(&page, "csrf_token").as_str()),
            ("next", "/"),
            ("email", email),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

async fn try_signup(server: &Server, http: &reqwest::Client, email: &str, password: &str) -> reqwest::Response {
    let page = http.get(server.url("/signup")).send().await.unwrap().text().await.unwrap();
    http.post(server.url("/signup"))
        .form(&[
            ("csrf_token", input(&page, "csrf_token").as_str()),
            ("next", "/consent?client_id=x"),
            ("email", email),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

/// The operator's audit rows once `until` holds (events are written asynchronously).
async fn audit_rows(server: &Server, op: &str, until: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v: Value = reqwest::Client::new()
            .get(server.url("/api/v1/admin/audit?limit=1000"))
            .bearer_auth(op)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows = v["events"].as_array().cloned().unwrap_or_default();
        if until(&rows) || std::time::Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Everything the server persisted: the embedded database's files, or the PostgreSQL audit and
/// account tables (read after the server stopped, so every audit batch is written).
async fn persisted_after_stop(server: Server) -> String {
    let url = server.db_url();
    let (status, dir) = server.stop();
    assert!(status.success());
    let mut bytes = Vec::new();
    if crate::harness::on_postgres() {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        for table in ["audit_events", "accounts", "browser_sessions"] {
            let rows: Vec<String> =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT CAST(t.* AS TEXT) FROM {table} t")))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            bytes.extend(rows.join("\n").into_bytes());
        }
    }
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            bytes.extend(std::fs::read(path).unwrap());
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn oversized_sign_in_input_is_refused_and_never_stored() {
    let server = Server::start();
    let op = operator_token(&server);
    let http = client();
    // A 60 KB "email", as the attacker sent it.
    let marker = "overlong-sign-in-input-";
    let huge = format!("{}@example.com", marker.repeat(2610));
    assert!(huge.len() > 60_000);
    let res = try_login(&server, &http, &huge, "whatever password").await;
    assert_eq!(res.status(), 400, "refused early, not counted as an ordinary failure");
    let page = res.text().await.unwrap();
    assert!(page.contains("An email address is at most 254 bytes long."), "{page}");
    assert!(!page.contains(marker), "what was typed is not shown back");
    // An over-long password is refused the same way (it can match no account).
    let res = try_login(&server, &http, "someone@example.com", &"p".repeat(1025)).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("at most 1024 bytes"));
    // A password typed into the email field: a failed sign-in whose audit row does not keep it.
    let pasted = "Tr0ub4dor&3-secret-pasted";
    assert_eq!(try_login(&server, &http, pasted, "x").await.status(), 401);
    // A plausible unknown address is kept as typed (who is being targeted matters).
    assert_eq!(try_login(&server, &http, "Target@Example.com", "guess guess").await.status(), 401);

    let rows = audit_rows(&server, &op, |rows| {
        rows.iter().filter(|r| r["kind"] == "auth.signin" && r["outcome"] == "failure").count() >= 4
    })
    .await;
    let failures: Vec<&Value> =
        rows.iter().filter(|r| r["kind"] == "auth.signin" && r["outcome"] == "failure").collect();
    let emails: Vec<&str> = failures.iter().filter_map(|r| r["details"]["email"].as_str()).collect();
    assert!(emails.contains(&format!("[not an email address: {} bytes]", huge.len()).as_str()), "{emails:?}");
    assert!(emails.contains(&format!("[not an email address: {} bytes]", pasted.len()).as_str()), "{emails:?}");
    assert!(emails.contains(&"target@example.com"), "{emails:?}");
    for r in &failures {
        assert!(r.to_string().len() < 2_000, "every sign-in audit row stays small: {} bytes", r.to_string().len());
    }
    let persisted = persisted_after_stop(server).await;
    assert!(!persisted.contains(marker), "the 60 KB email reached the database");
    assert!(!persisted.contains(pasted), "a password typed as an email reached the database");
}

#[tokio::test]
async fn one_source_cannot_try_many_accounts() {
    let server = Server::start();
    let owner = Flow::signup(&server, "owner-src@example.com").await;
    let attacker = browser_from("127.0.0.2");
    // 20 failures (the default per source), each for another account: none reaches the per-account limit.
    for i in 0..20 {
        let res = try_login(&server, &attacker, &format!("user{i}@example.com"), "guess guess").await;
        assert_eq!(res.status(), 401, "attempt {i}");
    }
    // The 21st from that source is refused whatever it tries, the right password included.
    let res = try_login(&server, &attacker, &owner.email, &owner.password).await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().get("retry-after").is_some());
    assert!(res.text().await.unwrap().contains("from this network"));
    // Another source is not affected.
    let res = try_login(&server, &browser_from("127.0.0.3"), &owner.email, &owner.password).await;
    assert_eq!(res.status(), 303);
}

#[tokio::test]
async fn wrong_passwords_from_one_source_do_not_lock_the_owner_out_elsewhere() {
    let server = Server::start();
    let owner = Flow::signup(&server, "victim-src@example.com").await;
    let attacker = browser_from("127.0.0.4");
    for _ in 0..5 {
        assert_eq!(try_login(&server, &attacker, &owner.email, "guess guess").await.status(), 401);
    }
    // The attacker's source is slowed down for this account, even with the right password …
    assert_eq!(try_login(&server, &attacker, &owner.email, &owner.password).await.status(), 429);
    // … but the owner, signing in from elsewhere, is not.
    let res = try_login(&server, &browser_from("127.0.0.5"), &owner.email, &owner.password).await;
    assert_eq!(res.status(), 303, "the owner is locked out by someone else's failures");
}

#[tokio::test]
async fn failed_sign_ins_for_one_account_have_a_ceiling_across_sources() {
    let server = Server::start_with(&[
        ("BRIDGEKEEPER_LIMITS__LOGIN_FAILURES_PER_MINUTE", "2"),
        ("BRIDGEKEEPER_LIMITS__LOGIN_FAILURES_PER_ACCOUNT_PER_MINUTE", "4"),
    ]);
    let owner = Flow::signup(&server, "ceiling@example.com").await;
    for ip in ["127.0.0.6", "127.0.0.7"] {
        let http = browser_from(ip);
        for _ in 0..2 {
            assert_eq!(try_login(&server, &http, &owner.email, "guess guess").await.status(), 401, "{ip}");
        }
    }
    // Four failures from two sources: the account's ceiling is reached for every source.
    let res = try_login(&server, &browser_from("127.0.0.8"), &owner.email, "guess guess").await;
    assert_eq!(res.status(), 429);
    // Other accounts are not affected.
    Flow::signup(&server, "other-ceiling@example.com").await;
}

#[tokio::test]
async fn signup_does_not_reveal_a_registered_email() {
    let server = Server::start();
    let owner = Flow::signup(&server, "taken@example.com").await;
    let (taken, fresh) = (client(), client());
    let a = try_signup(&server, &taken, "Taken@Example.com", "attacker's password").await;
    let b = try_signup(&server, &fresh, "fresh@example.com", "a fresh password").await;
    // The same answer: a 303 to the sign-in page, signed in neither way.
    assert_eq!((a.status(), b.status()), (reqwest::StatusCode::SEE_OTHER, reqwest::StatusCode::SEE_OTHER));
    assert_eq!(location(&a), location(&b));
    assert!(location(&a).starts_with("/login?next=%2Fconsent%3Fclient_id%3Dx&"), "{}", location(&a));
    assert!(a.headers().get("set-cookie").is_none() && b.headers().get("set-cookie").is_none());
    let (pa, pb) = (
        taken.get(server.url(&location(&a))).send().await.unwrap().text().await.unwrap(),
        fresh.get(server.url(&location(&b))).send().await.unwrap().text().await.unwrap(),
    );
    assert!(pa.contains("Sign in with your email address and password to continue."), "{pa}");
    assert_eq!(
        pa.replace(&input(&pa, "csrf_token"), "T"),
        pb.replace(&input(&pb, "csrf_token"), "T"),
        "the pages differ only in their CSRF token"
    );
    for http in [&taken, &fresh] {
        let home = http.get(server.url("/")).send().await.unwrap().text().await.unwrap();
        assert!(!home.contains("/logout"), "sign-up signed this browser in: {home}");
    }
    // The new account exists; the registered one kept its password.
    assert_eq!(try_login(&server, &client(), "fresh@example.com", "a fresh password").await.status(), 303);
    assert_eq!(try_login(&server, &client(), "taken@example.com", "attacker's password").await.status(), 401);
    assert_eq!(try_login(&server, &client(), &owner.email, &owner.password).await.status(), 303);
    // Bad input is still explained on the page, without echoing an over-long email.
    let res = try_signup(&server, &client(), &format!("{}@example.com", "x".repeat(300)), "long enough").await;
    assert_eq!(res.status(), 400);
    let page = res.text().await.unwrap();
    assert!(page.contains("Enter a valid email address.") && !page.contains(&"x".repeat(300)), "{page}");
}
