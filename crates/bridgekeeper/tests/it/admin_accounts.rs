//! The operator's side of accounts, through the real binary: `/api/v1/admin/accounts…` with an
//! operator token, and `bridgekeeper admin account list | show | disable | enable | delete` on the
//! server's database. Disabling revokes every token and session of the account at once; a disabled
//! account cannot sign in; deleting erases its credentials and keeps its audit rows (the hash chain
//! still verifies); a person's token, whatever its scopes, gets 403 on every admin route.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Flow, Server, client, input, location, operator_token, whoami};

const CB: &str = "http://127.0.0.1:9/callback";

/// Every scope there is (a white-label client may be granted all of them).
const ALL_SCOPES: &str = "universal-mcp-read universal-mcp-read-write llm-all agents-all agents-use connections account \
                          user-data providers openid profile email";

/// A request to the admin API with `token` as bearer (none: no credential at all).
async fn admin(server: &Server, token: Option<&str>, method: Method, path: &str) -> reqwest::Response {
    let mut req = reqwest::Client::new().request(method, server.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

/// `GET /api/v1/admin/accounts/{id}` as the operator: the account's JSON.
async fn show(server: &Server, op: &str, id: &str) -> Value {
    let res = admin(server, Some(op), Method::GET, &format!("/api/v1/admin/accounts/{id}")).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn problem(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    res.json().await.unwrap()
}

/// The account id of whoever holds `token` (scope `account`).
async fn account_id(server: &Server, token: &str) -> String {
    let v: Value = reqwest::Client::new()
        .get(server.url("/api/v1/account"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["id"].as_str().unwrap().to_owned()
}

/// `GET /api/v1/account` with a bearer credential: its status.
async fn rest_status(server: &Server, token: &str) -> u16 {
    reqwest::Client::new().get(server.url("/api/v1/account")).bearer_auth(token).send().await.unwrap().status().as_u16()
}

/// `GET /api/v1/account` with the browser's cookie: its status.
async fn browser_status(server: &Server, flow: &Flow) -> u16 {
    flow.http.get(server.url("/api/v1/account")).send().await.unwrap().status().as_u16()
}

/// A PAT made in the signed-in browser.
async fn browser_pat(server: &Server, flow: &Flow, scopes: &[&str]) -> String {
    let res = flow
        .http
        .post(server.url("/api/v1/auth/pat"))
        .json(&json!({"name": "pat", "scopes": scopes}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
}

/// A token with every scope: an operator-made white-label client, authorized by `flow`'s person.
async fn token_with_every_scope(server: &Server, op: &str, flow: &Flow) -> Value {
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/auth-clients"))
        .bearer_auth(op)
        .json(&json!({
            "name": "Our own app", "type": "public", "roles": ["whitelabel-customer"],
            "domains": ["ours.example"], "redirectUris": [CB],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.unwrap()["clientId"].as_str().unwrap().to_owned();
    let t = flow.login_with(&id, None, CB, ALL_SCOPES, &[]).await;
    let mut granted: Vec<&str> = t["scope"].as_str().unwrap().split(' ').collect();
    granted.sort();
    let mut all: Vec<&str> = ALL_SCOPES.split_whitespace().collect();
    all.sort();
    assert_eq!(granted, all, "the token carries every scope");
    let mut t = t;
    t["client_id"] = json!(id);
    t
}

/// The operator's audit rows of `kind`, once at least `n` are written (events are asynchronous).
async fn audit_rows(server: &Server, op: &str, query: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v: Value = admin(server, Some(op), Method::GET, &format!("/api/v1/admin/audit?limit=1000&{query}"))
            .await
            .json()
            .await
            .unwrap();
        let rows = v["events"].as_array().cloned().unwrap_or_default();
        if rows.len() >= n || std::time::Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A connection for `token`'s account to an `api_key` provider the server's catalog adds.
async fn connect_acme(server: &Server, token: &str) {
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/connections/initiate"))
        .bearer_auth(token)
        .json(&json!({"providerId": "acme", "redirectUrl": CB, "providerParams": {"apiKey": "acme-key-0123456789"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

/// A server whose catalog adds the `api_key` provider `acme`.
fn server_with_acme() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("providers.toml");
    std::fs::write(&file, crate::connections::ACME).unwrap();
    (Server::start_with(&[("BRIDGEKEEPER_CONNECTIONS__CATALOG_FILE", file.to_str().unwrap())]), dir)
}

async fn db(server: &Server) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&server.db_url()).await.unwrap()
}

/// How many rows of `table` belong to the account (`column` = its id).
async fn rows_of(pool: &sqlx::AnyPool, table: &str, id: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table} WHERE account_id = $1")))
        .bind(id.to_owned())
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Signs in through the login form in a fresh browser; the browser (signed in or not).
async fn sign_in(server: &Server, email: &str, password: &str) -> (reqwest::Response, reqwest::Client) {
    let http = client();
    let page = http.get(server.url("/login")).send().await.unwrap().text().await.unwrap();
    let res = http
        .post(server.url("/login"))
        .form(&[
            ("csrf_token", input(&page, "csrf_token").as_str()),
            ("next", "/"),
            ("email", email),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    (res, http)
}

#[tokio::test]
async fn security_disabling_an_account_revokes_every_token_and_session_at_once() {
    let server = Server::start();
    let op = operator_token(&server);
    let flow = Flow::signup(&server, "to-disable@example.com").await;
    let (client_id, app) = flow.login_client("universal-mcp-read-write account").await;
    let pat = browser_pat(&server, &flow, &["account", "universal-mcp-read-write"]).await;
    let id = account_id(&server, &app.access).await;
    // Someone else's credentials, to show they are untouched.
    let bystander = Flow::signup(&server, "bystander@example.com").await;
    let (_, other) = bystander.login_client("universal-mcp-read-write account").await;
    // A legacy MCP session opened with the app's token.
    let mcp_session = flow.mcp_initialize(&app.access, "2025-11-25").await;
    for token in [app.access.as_str(), pat.as_str()] {
        assert_eq!(whoami(&server.base, token).await.0, 200);
        assert_eq!(rest_status(&server, token).await, 200);
    }
    assert_eq!(browser_status(&server, &flow).await, 200);
    let home = flow.http.get(server.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(home.contains("to-disable@example.com"), "the home page shows the person signed in");
    let before = show(&server, &op, &id).await;
    assert_eq!(
        (before["status"].clone(), before["liveGrants"].clone(), before["livePats"].clone()),
        (json!("active"), json!(1), json!(1))
    );

    let res = admin(&server, Some(&op), Method::POST, &format!("/api/v1/admin/accounts/{id}/disable")).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(
        (v["status"].clone(), v["liveGrants"].clone(), v["livePats"].clone()),
        (json!("disabled"), json!(0), json!(0))
    );
    assert!(v["disabledAt"].as_i64().is_some());

    // Right away, with no wait: on /mcp, on the REST API, in the browser, at the token endpoint.
    for token in [app.access.as_str(), pat.as_str()] {
        assert_eq!(whoami(&server.base, token).await.0, 401, "refused on /mcp");
        assert_eq!(rest_status(&server, token).await, 401, "refused on the REST API");
    }
    let res = flow
        .mcp_in(&app.access, &mcp_session, "2025-11-25", "tools/call", json!({"name": "whoami", "arguments": {}}))
        .await;
    assert_eq!(res.status(), 401, "refused in its MCP session");
    assert_eq!(browser_status(&server, &flow).await, 401, "the browser is signed out");
    let home = flow.http.get(server.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(!home.contains("to-disable@example.com"), "the home page no longer shows the person signed in");
    let res = flow.refresh(&client_id, &app.refresh).await;
    assert_eq!(res.status(), 400, "refresh is refused");
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");
    // Another account is untouched.
    assert_eq!(whoami(&server.base, &other.access).await.0, 200);
    assert_eq!(browser_status(&server, &bystander).await, 200);

    // Audited with the operator token's id, without the account's email.
    let rows = audit_rows(&server, &op, "kind=account.disabled", 1).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0]["actor"]["operator_token_id"].as_str().is_some_and(|o| o.starts_with("opt_")), "{}", rows[0]);
    assert_eq!((rows[0]["account_id"].clone(), rows[0]["target"].clone()), (json!(id), json!(id)));
    assert_eq!(rows[0]["details"]["sessions_revoked"], 2, "the app's grant and the PAT's session");
    assert!(!rows[0].to_string().contains("to-disable@example.com"), "{}", rows[0]);

    // Idempotent: again, 200, nothing more to revoke, the first time kept.
    let res = admin(&server, Some(&op), Method::POST, &format!("/api/v1/admin/accounts/{id}/disable")).await;
    assert_eq!(res.status(), 200);
    let again: Value = res.json().await.unwrap();
    assert_eq!(again["disabledAt"], v["disabledAt"]);
    // Enabling brings nothing back: the person signs in again for new tokens.
    let res = admin(&server, Some(&op), Method::POST, &format!("/api/v1/admin/accounts/{id}/enable")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "active");
    for token in [app.access.as_str(), pat.as_str()] {
        assert_eq!(whoami(&server.base, token).await.0, 401);
    }
    assert_eq!(browser_status(&server, &flow).await, 401);
    assert_eq!(flow.refresh(&client_id, &app.refresh).await.status(), 400);
    // Unknown accounts: 404.
    for (m, p) in [
        (Method::GET, "/api/v1/admin/accounts/acc_missing"),
        (Method::POST, "/api/v1/admin/accounts/acc_missing/disable"),
        (Method::POST, "/api/v1/admin/accounts/acc_missing/enable"),
        (Method::DELETE, "/api/v1/admin/accounts/acc_missing?confirm=acc_missing"),
    ] {
        problem(admin(&server, Some(&op), m, p).await, 404).await;
    }
}

/// Fails until the sign-in page refuses a disabled account (`Account::is_disabled()`).
#[tokio::test]
async fn security_a_disabled_account_cannot_sign_in() {
    let server = Server::start();
    let op = operator_token(&server);
    let flow = Flow::signup(&server, "locked-out@example.com").await;
    let (_, app) = flow.login_client("account").await;
    let id = account_id(&server, &app.access).await;
    let res = admin(&server, Some(&op), Method::POST, &format!("/api/v1/admin/accounts/{id}/disable")).await;
    assert_eq!(res.status(), 200);

    // The right password, from a fresh browser: not signed in.
    let (res, http) = sign_in(&server, &flow.email, &flow.password).await;
    let signed_in = http.get(server.url("/api/v1/account")).send().await.unwrap().status() == 200;
    assert!(!signed_in, "a disabled account signed in (sign-in answered {})", res.status());
    let pool = db(&server).await;
    let live: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM browser_sessions WHERE account_id = $1 AND ended_at IS NULL")
            .bind(id.clone())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(live, 0, "no browser session was opened for it");
    // Nor through an app's authorization request: no code is issued.
    let redirect = CB;
    let client_id = flow.register(redirect, "account").await;
    let fresh =
        Flow { http: client(), base: flow.base.clone(), email: flow.email.clone(), password: flow.password.clone() };
    let url = fresh.authorize_url(&client_id, redirect, "account", "st");
    let mut next = url;
    for _ in 0..6 {
        let res = fresh.http.get(&next).send().await.unwrap();
        if res.status().is_redirection() {
            let to = location(&res);
            assert!(!to.contains("code="), "a code was issued to a disabled account: {to}");
            if !to.starts_with('/') {
                break;
            }
            next = server.url(&to);
            continue;
        }
        let page = res.text().await.unwrap();
        assert!(!page.contains("action=\"/consent\""), "the consent page was shown to a disabled account");
        if !page.contains("action=\"/login\"") {
            break;
        }
        let r = fresh
            .http
            .post(server.url("/login"))
            .form(&[
                ("csrf_token", input(&page, "csrf_token")),
                ("next", input(&page, "next")),
                ("email", fresh.email.clone()),
                ("password", fresh.password.clone()),
            ])
            .send()
            .await
            .unwrap();
        if !r.status().is_redirection() {
            break;
        }
        next = server.url(&location(&r));
    }
    assert_eq!(fresh.http.get(server.url("/api/v1/account")).send().await.unwrap().status(), 401);

    // Enabled again: the same password signs in.
    let res = admin(&server, Some(&op), Method::POST, &format!("/api/v1/admin/accounts/{id}/enable")).await;
    assert_eq!(res.status(), 200);
    let (res, http) = sign_in(&server, &flow.email, &flow.password).await;
    assert_eq!(res.status(), 303);
    assert_eq!(http.get(server.url("/api/v1/account")).send().await.unwrap().status(), 200);
}

/// The account's audit rows are kept as they were: the hash chain covers every row's details, so
/// rewriting the email in them would break `admin audit verify` (the retention period prunes them).
/// What is checked: the rows stay, the chain verifies, and nothing written about the deletion names
/// the email.
#[tokio::test]
async fn security_deleting_an_account_erases_its_credentials_and_keeps_its_audit_redacted() {
    let (server, _catalog) = server_with_acme();
    let op = operator_token(&server);
    let flow = Flow::signup(&server, "to-delete@example.com").await;
    let (client_id, app) = flow.login_client("account connections universal-mcp-read").await;
    let id = account_id(&server, &app.access).await;
    let pat = browser_pat(&server, &flow, &["account"]).await;
    connect_acme(&server, &app.access).await;
    let neighbour = Flow::signup(&server, "neighbour@example.com").await;
    let (_, other) = neighbour.login_client("account connections").await;
    let other_id = account_id(&server, &other.access).await;
    connect_acme(&server, &other.access).await;
    let pool = db(&server).await;
    for table in ["connections", "personal_access_tokens", "email_tokens", "browser_sessions"] {
        assert!(rows_of(&pool, table, &id).await >= 1, "{table} holds something before");
    }
    // A wrong password: its audit row names the account's email.
    let (res, _) = sign_in(&server, "to-delete@example.com", "not the password at all").await;
    assert_eq!(res.status(), 401);
    let names_email = |rows: &[Value]| rows.iter().any(|r| r.to_string().contains("to-delete@example.com"));
    let mut audit_before = Vec::new();
    for _ in 0..100 {
        audit_before = audit_rows(&server, &op, &format!("account_id={id}"), 1).await;
        if names_email(&audit_before) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(audit_before.iter().any(|r| r["kind"] == "auth.signin"), "{audit_before:?}");

    // Unconfirmed, or confirmed for another id: refused, nothing changes.
    for q in ["", "?confirm=", "?confirm=acc_other", "?confirm=yes"] {
        let p =
            problem(admin(&server, Some(&op), Method::DELETE, &format!("/api/v1/admin/accounts/{id}{q}")).await, 400)
                .await;
        assert_eq!(p["field"], "confirm", "{q}: {p}");
    }
    assert_eq!(show(&server, &op, &id).await["status"], "active");
    assert_eq!(rest_status(&server, &app.access).await, 200, "still live");
    assert_eq!(rest_status(&server, &pat).await, 200);

    let res = admin(&server, Some(&op), Method::DELETE, &format!("/api/v1/admin/accounts/{id}?confirm={id}")).await;
    assert_eq!(res.status(), 204);

    // Every credential refused at once.
    for token in [app.access.as_str(), pat.as_str()] {
        assert_eq!(rest_status(&server, token).await, 401);
    }
    assert_eq!(browser_status(&server, &flow).await, 401);
    assert_eq!(flow.refresh(&client_id, &app.refresh).await.status(), 400);
    // Erased from the database, not merely revoked: the connections' sealed credentials, PATs,
    // emailed links, browser sessions.
    for table in ["connections", "personal_access_tokens", "email_tokens", "browser_sessions", "connection_flows"] {
        assert_eq!(rows_of(&pool, table, &id).await, 0, "{table}");
    }
    let (email, hash): (String, Option<String>) =
        sqlx::query_as("SELECT email, password_hash FROM accounts WHERE id = $1")
            .bind(id.clone())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((email.as_str(), hash), (format!("deleted-{id}@invalid").as_str(), None));
    let v = show(&server, &op, &id).await;
    assert_eq!(
        (v["status"].clone(), v["email"].clone(), v["connections"].clone()),
        (json!("deleted"), json!(email), json!(0))
    );
    assert!(v["deletedAt"].as_i64().is_some() && v["disabledAt"].as_i64().is_some());
    // The neighbour keeps everything.
    assert_eq!(rows_of(&pool, "connections", &other_id).await, 1);
    assert_eq!(rest_status(&server, &other.access).await, 200);
    // Irreversible: it cannot be enabled; deleting again is harmless.
    problem(admin(&server, Some(&op), Method::POST, &format!("/api/v1/admin/accounts/{id}/enable")).await, 409).await;
    let res = admin(&server, Some(&op), Method::DELETE, &format!("/api/v1/admin/accounts/{id}?confirm={id}")).await;
    assert_eq!(res.status(), 204);
    // The address is free: it signs up again, as a new account.
    let again = Flow::signup(&server, "to-delete@example.com").await;
    let (_, t) = again.login_client("account").await;
    assert_ne!(account_id(&server, &t.access).await, id);

    // The audit rows stay, without the email (redacted), the chain verifies, and the deletion's
    // own row names no email.
    assert!(names_email(&audit_before), "{audit_before:?}");
    let after = audit_rows(&server, &op, &format!("account_id={id}"), audit_before.len() + 1).await;
    for row in &audit_before {
        let kept = after.iter().find(|r| r["id"] == row["id"]).unwrap_or_else(|| panic!("a row vanished: {row}"));
        assert_eq!((&kept["kind"], &kept["seq"], &kept["hash"]), (&row["kind"], &row["seq"], &row["hash"]));
        assert!(!kept.to_string().contains("to-delete@example.com"), "the email is redacted: {kept}");
        if row.to_string().contains("to-delete@example.com") {
            assert!(kept["redacted_at"].as_i64().is_some(), "marked redacted: {kept}");
            assert!(kept.to_string().contains(&format!("deleted-{id}@invalid")), "{kept}");
        } else {
            assert_eq!(kept, row, "a row without the email is untouched");
        }
    }
    let deleted = after.iter().find(|r| r["kind"] == "account.deleted").expect("account.deleted audited");
    assert!(deleted["actor"]["operator_token_id"].as_str().is_some());
    assert_eq!(deleted["details"]["connections_erased"], 1);
    assert!(!deleted.to_string().contains("to-delete@example.com"), "{deleted}");
    let out =
        server.command().args(["admin", "audit", "verify", "--data-dir"]).arg(server.dir.path()).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("intact") && said.contains("redacted when their account was deleted"), "{said}");
}

#[tokio::test]
async fn security_account_admin_needs_an_operator_token() {
    let server = Server::start();
    let op = operator_token(&server);
    let flow = Flow::signup(&server, "curious@example.com").await;
    let every = token_with_every_scope(&server, &op, &flow).await;
    let access = every["access_token"].as_str().unwrap().to_owned();
    let pat = browser_pat(&server, &flow, &ALL_SCOPES.split_whitespace().collect::<Vec<_>>()).await;
    let own = account_id(&server, &access).await;
    let other_flow = Flow::signup(&server, "target@example.com").await;
    let (_, other) = other_flow.login_client("account").await;
    let other_id = account_id(&server, &other.access).await;

    let routes = |id: &str| {
        vec![
            (Method::GET, "/api/v1/admin/accounts".to_owned()),
            (Method::GET, "/api/v1/admin/accounts?status=active&email=target".to_owned()),
            (Method::GET, format!("/api/v1/admin/accounts/{id}")),
            (Method::POST, format!("/api/v1/admin/accounts/{id}/disable")),
            (Method::POST, format!("/api/v1/admin/accounts/{id}/enable")),
            (Method::DELETE, format!("/api/v1/admin/accounts/{id}?confirm={id}")),
        ]
    };
    // The same answer for its own account, another one and one that does not exist: no oracle.
    let mut answers = Vec::new();
    for id in [own.as_str(), other_id.as_str(), "acc_missing"] {
        for (m, path) in routes(id) {
            for token in [access.as_str(), pat.as_str()] {
                let p = problem(admin(&server, Some(token), m.clone(), &path).await, 403).await;
                answers.push(p.to_string());
            }
            // The signed-in browser (which acts with every scope), from our own origin.
            let res =
                flow.http.request(m.clone(), server.url(&path)).header("Origin", &server.issuer).send().await.unwrap();
            answers.push(problem(res, 403).await.to_string());
            // No credential, and an operator-shaped token that is not one.
            problem(admin(&server, None, m.clone(), &path).await, 401).await;
            problem(admin(&server, Some("bko_not-a-real-operator-token"), m.clone(), &path).await, 401).await;
        }
    }
    answers.dedup();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(!answers[0].contains("target@example.com") && !answers[0].contains(&other_id), "{}", answers[0]);
    // Nothing changed.
    for id in [&own, &other_id] {
        assert_eq!(show(&server, &op, id).await["status"], "active");
    }
    assert_eq!(rest_status(&server, &access).await, 200);
    assert_eq!(rest_status(&server, &other.access).await, 200);
    // A revoked operator token is refused too.
    let out = server
        .command()
        .args(["admin", "token", "create", "--name", "short-lived", "--data-dir"])
        .arg(server.dir.path())
        .output()
        .unwrap();
    // The text output, as a person reads it: labelled lines.
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |label: &str| {
        let line = text.lines().find_map(|l| l.strip_prefix(label)).unwrap_or_else(|| panic!("no {label} in {text}"));
        line.split_whitespace().next().unwrap().to_owned()
    };
    let (op_id, op2) = (field("id: "), field("token: "));
    assert!(text.contains("(shown once"), "{text}");
    assert_eq!(admin(&server, Some(&op2), Method::GET, "/api/v1/admin/accounts").await.status(), 200);
    let out = server
        .command()
        .args(["admin", "token", "revoke", &op_id, "--data-dir"])
        .arg(server.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    problem(admin(&server, Some(&op2), Method::GET, "/api/v1/admin/accounts").await, 401).await;
}

#[tokio::test]
async fn admin_accounts_are_listed_filtered_and_paged_for_operators() {
    let server = Server::start();
    let op = operator_token(&server);
    let mut ids = Vec::new();
    for email in ["list-a@example.com", "list-b@example.org", "list-c@example.com"] {
        let flow = Flow::signup(&server, email).await;
        let (_, t) = flow.login_client("account").await;
        ids.push(account_id(&server, &t.access).await);
    }
    admin(&server, Some(&op), Method::POST, &format!("/api/v1/admin/accounts/{}/disable", ids[1])).await;
    let list = |q: &'static str| {
        let op = op.clone();
        let server = &server;
        async move {
            let res = admin(server, Some(&op), Method::GET, &format!("/api/v1/admin/accounts{q}")).await;
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap()
        }
    };
    let emails = |v: &Value| -> Vec<String> {
        v["accounts"].as_array().unwrap().iter().map(|a| a["email"].as_str().unwrap().to_owned()).collect()
    };
    let all = list("").await;
    assert_eq!(emails(&all), ["list-c@example.com", "list-b@example.org", "list-a@example.com"], "newest first");
    assert_eq!((all["total"].clone(), all["page"].clone(), all["limit"].clone()), (json!(3), json!(1), json!(20)));
    let a = &all["accounts"][2];
    for key in [
        "id",
        "email",
        "emailVerified",
        "createdAt",
        "status",
        "disabledAt",
        "deletedAt",
        "liveGrants",
        "livePats",
        "connections",
    ] {
        assert!(a.get(key).is_some(), "{key} in {a}");
    }
    assert!(a.get("passwordHash").is_none() && !a.to_string().contains("argon2"), "{a}");
    assert_eq!((a["emailVerified"].clone(), a["liveGrants"].clone()), (json!(false), json!(1)));
    assert_eq!(emails(&list("?email=EXAMPLE.ORG").await), ["list-b@example.org"]);
    assert_eq!(emails(&list("?status=disabled").await), ["list-b@example.org"]);
    assert_eq!(emails(&list("?status=active&email=list").await), ["list-c@example.com", "list-a@example.com"]);
    let p2 = list("?limit=2&page=2").await;
    assert_eq!((emails(&p2), p2["totalPages"].clone()), (vec!["list-a@example.com".to_owned()], json!(2)));
    for (q, field) in [
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?page=0", "page"),
        ("?status=gone", "status"),
        ("?sort=x", "sort"),
    ] {
        let p = problem(admin(&server, Some(&op), Method::GET, &format!("/api/v1/admin/accounts{q}")).await, 400).await;
        assert_eq!(p["field"], field, "{q}");
    }
}

/// `bridgekeeper admin account …` with the server's data directory (and database on PostgreSQL).
fn cli(server: &Server, args: &[&str]) -> std::process::Output {
    server.command().args(["admin", "account"]).args(args).arg("--data-dir").arg(server.dir.path()).output().unwrap()
}

fn cli_json(server: &Server, args: &[&str]) -> Value {
    let out = cli(server, args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Polls until `token` is refused on `/mcp` and the REST API (another process changed the database:
/// this server's caches see it within a second).
async fn refused_within_a_second(server: &Server, token: &str) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    loop {
        if whoami(&server.base, token).await.0 == 401 && rest_status(server, token).await == 401 {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn cli_admin_account_lists_shows_disables_enables_and_deletes() {
    let server = Server::start();
    let flow = Flow::signup(&server, "cli-person@example.com").await;
    let (client_id, app) = flow.login_client("universal-mcp-read-write account").await;
    let pat = browser_pat(&server, &flow, &["account"]).await;
    let id = account_id(&server, &app.access).await;
    let other = Flow::signup(&server, "cli-other@example.org").await;
    let (_, other_t) = other.login_client("account").await;

    // list: JSON and text, filters.
    let v = cli_json(&server, &["list", "--format", "json"]);
    assert_eq!(v["total"], 2);
    let me = v["accounts"].as_array().unwrap().iter().find(|a| a["id"] == json!(id)).unwrap().clone();
    assert_eq!(
        (me["email"].clone(), me["status"].clone(), me["liveGrants"].clone(), me["livePats"].clone()),
        (json!("cli-person@example.com"), json!("active"), json!(1), json!(1))
    );
    let v = cli_json(&server, &["list", "--email", "EXAMPLE.ORG", "--format", "json"]);
    assert_eq!(v["accounts"].as_array().unwrap().len(), 1);
    assert_eq!(v["accounts"][0]["email"], "cli-other@example.org");
    let out = cli(&server, &["list"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("cli-person@example.com") && text.contains(&id) && text.contains("2 accounts"), "{text}");
    assert!(!text.contains("argon2"), "{text}");
    // show.
    let v = cli_json(&server, &["show", &id, "--format", "json"]);
    assert_eq!((v["id"].clone(), v["status"].clone()), (json!(id), json!("active")));
    let text = String::from_utf8(cli(&server, &["show", &id]).stdout).unwrap();
    assert!(text.contains("cli-person@example.com") && text.contains("active"), "{text}");
    let out = cli(&server, &["show", "acc_missing"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no account acc_missing"));

    // disable: every token refused (this server sees it within a second), audited as from the CLI.
    let v = cli_json(&server, &["disable", &id, "--format", "json"]);
    assert_eq!((v["account"]["status"].clone(), v["revoked"]["sessions"].clone()), (json!("disabled"), json!(2)));
    assert!(refused_within_a_second(&server, &app.access).await);
    assert!(refused_within_a_second(&server, &pat).await);
    assert_eq!(flow.refresh(&client_id, &app.refresh).await.status(), 400);
    assert_eq!(rest_status(&server, &other_t.access).await, 200, "the other account is untouched");
    let text = String::from_utf8(cli(&server, &["disable", &id]).stdout).unwrap();
    assert!(text.contains("already disabled"), "{text}");
    let out = server
        .command()
        .args(["admin", "audit", "tail", "--format", "json", "--account", &id, "--data-dir"])
        .arg(server.dir.path())
        .output()
        .unwrap();
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let disabled: Vec<&Value> = rows.iter().filter(|r| r["kind"] == "account.disabled").collect();
    assert_eq!(disabled.len(), 2, "{rows:?}");
    assert_eq!(disabled[0]["details"]["via"], "cli");

    // enable.
    let v = cli_json(&server, &["enable", &id, "--format", "json"]);
    assert_eq!(v["status"], "active");
    let text = String::from_utf8(cli(&server, &["enable", &id]).stdout).unwrap();
    assert!(text.contains("already active"), "{text}");

    // delete: only with --yes.
    let out = cli(&server, &["delete", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(cli_json(&server, &["show", &id, "--format", "json"])["status"], "active", "nothing changed");
    let v = cli_json(&server, &["delete", &id, "--yes", "--format", "json"]);
    assert_eq!(v["account"]["status"], "deleted");
    assert_eq!(v["account"]["email"], format!("deleted-{id}@invalid"));
    assert!(v["erased"]["emailLinks"].as_i64().unwrap() >= 1, "{v}");
    let out = cli(&server, &["enable", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("deleted"));
    let v = cli_json(&server, &["list", "--status", "deleted", "--format", "json"]);
    assert_eq!(v["total"], 1);
    let out =
        server.command().args(["admin", "audit", "verify", "--data-dir"]).arg(server.dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    // Bad input is refused before anything is read.
    assert!(!cli(&server, &["list", "--limit", "0"]).status.success());
    assert!(!cli(&server, &["list", "--status", "gone"]).status.success());
}
