//! The command line: admin account creation, migrate, configuration errors.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::harness::{Server, bin, client, input};

#[tokio::test]
async fn admin_account_create_prints_id_and_the_account_can_sign_in() {
    let server = Server::start();
    let mut child = server
        .command()
        .args(["admin", "account", "create", "--email", "Admin@Example.com", "--password-stdin", "--data-dir"])
        .arg(server.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"a long enough password\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(id.starts_with("acc_"), "{id}");

    let http = client();
    let page = http.get(server.url("/login")).send().await.unwrap().text().await.unwrap();
    let res = http
        .post(server.url("/login"))
        .form(&[
            ("csrf_token", input(&page, "csrf_token").as_str()),
            ("next", "/"),
            ("email", "admin@example.com"),
            ("password", "a long enough password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let home = http.get(server.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(home.contains("admin@example.com"));
}

fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn unknown_config_keys_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bk.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nlisten_adress = \"oops\"\n").unwrap();
    let out = run(&["serve", "--config", file.to_str().unwrap(), "--data-dir", dir.path().to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen_adress"), "{err}");
    let out = run(&["serve", "--data-dir", dir.path().to_str().unwrap()], &[("BRIDGEKEEPER_LISTN", "127.0.0.1:0")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("BRIDGEKEEPER_LISTN"));
}

#[test]
fn a_bad_tool_rate_limit_is_a_start_up_error_naming_its_rule() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bk.toml");
    std::fs::write(&file, "[mcp.tool_rate_limits.per_tool]\n\"github_*\" = \"10/fortnight\"\n").unwrap();
    let out = run(&["serve", "--config", file.to_str().unwrap(), "--data-dir", dir.path().to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mcp.tool_rate_limits.per_tool") && err.contains("github_*") && err.contains("10/fortnight"),
        "{err}"
    );
}

#[test]
fn migrate_creates_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["migrate", "--data-dir", dir.path().to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("bridgekeeper.db").exists());
    // Idempotent.
    assert!(run(&["migrate", "--data-dir", dir.path().to_str().unwrap()], &[]).status.success());
}

#[test]
fn environment_configures_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["serve", "--data-dir", dir.path().to_str().unwrap()], &[("BRIDGEKEEPER_LISTEN", "not-an-address")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not-an-address"));
}

#[test]
fn unreachable_database_is_reported_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = run(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", dir.path().to_str().unwrap()],
        &[
            ("BRIDGEKEEPER_DATABASE_URL", "postgres://bk:secret-pw@127.0.0.1:9/none"),
            ("BRIDGEKEEPER_MASTER_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
            ("BRIDGEKEEPER_DATABASE__CONNECT_RETRY_SECS", "4"),
        ],
    );
    assert!(!out.status.success());
    assert!(started.elapsed() >= std::time::Duration::from_secs(4), "it retried before giving up");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the database is unreachable"), "{err}");
    assert!(err.contains("retrying"), "{err}");
    assert!(!err.contains("secret-pw"), "the password never reaches the output: {err}");
    // PostgreSQL without a master key is refused with a clear message.
    let out = run(
        &["serve", "--data-dir", dir.path().to_str().unwrap()],
        &[
            ("BRIDGEKEEPER_DATABASE_URL", "postgres://127.0.0.1:9/none"),
            ("BRIDGEKEEPER_DATABASE__CONNECT_RETRY_SECS", "1"),
        ],
    );
    assert!(!out.status.success());
}
