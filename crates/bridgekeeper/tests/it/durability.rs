//! The embedded database over a server's life: a clean stop leaves no write-ahead log behind, and a
//! start that finds a large one (a crash, or an older version) waits for SQLite's recovery — saying
//! so — answers `/ready` 503 meanwhile instead of refusing connections, and then bounds the log.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Server, bin, client, on_postgres};

fn wal_size(dir: &std::path::Path) -> u64 {
    std::fs::metadata(dir.join("bridgekeeper.db-wal")).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test]
async fn clean_shutdown_empties_the_write_ahead_log() {
    if on_postgres() {
        return;
    }
    let server = Server::start();
    for _ in 0..20 {
        client().get(server.url("/.well-known/jwks.json")).send().await.unwrap();
    }
    crate::harness::Flow::signup(&server, "wal@example.com").await;
    let (status, dir) = server.stop();
    assert!(status.success(), "{status:?}");
    assert_eq!(wal_size(dir.path()), 0, "a clean stop checkpoints and empties the log");
}

/// Leaves `mb` MiB of committed but never checkpointed pages in the database's log, as a process
/// killed under load would (Python's sqlite3 module, exiting without closing the connection).
fn leave_large_log(db: &std::path::Path, mb: usize) {
    let script = format!(
        "import os, sqlite3\n\
         c = sqlite3.connect({db:?}, isolation_level=None)\n\
         c.execute('PRAGMA journal_mode=WAL'); c.execute('PRAGMA wal_autocheckpoint=0')\n\
         c.execute('CREATE TABLE IF NOT EXISTS test_ballast (b BLOB)')\n\
         for _ in range({mb}): c.execute('INSERT INTO test_ballast VALUES (randomblob(1048576))')\n\
         os._exit(0)\n",
        db = db.display().to_string(),
    );
    let status = Command::new("python3").args(["-c", &script]).status().expect("python3");
    assert!(status.success());
}

#[tokio::test]
async fn restart_with_a_large_log_left_behind_recovers_it_and_bounds_it() {
    if on_postgres() {
        return;
    }
    let mut first = Server::start();
    crate::harness::Flow::signup(&first, "recover@example.com").await;
    first.kill9();
    let dir = first.dir.path().to_owned();
    leave_large_log(&dir.join("bridgekeeper.db"), 300);
    let left = wal_size(&dir);
    assert!(left > 300 << 20, "the log left behind is {left} bytes");

    let mut child = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env("BRIDGEKEEPER_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let next_line = |lines: &mut Vec<String>, within: Duration| {
        let line = rx.recv_timeout(within).expect("the server stopped writing its log");
        lines.push(line.clone());
        line
    };
    // The address is known (and connections accepted) before the database is open.
    let addr = loop {
        let line = next_line(&mut lines, Duration::from_secs(30));
        if line.contains("accepting connections") {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            break v["fields"]["addr"].as_str().unwrap().to_owned();
        }
    };
    let (mut answers, deadline) = (Vec::new(), Instant::now() + Duration::from_secs(60));
    loop {
        let res = client().get(format!("http://{addr}/ready")).send().await.expect("connections are accepted");
        answers.push(res.status().as_u16());
        if res.status() == 200 {
            break;
        }
        assert_eq!(res.status(), 503, "not ready yet answers 503");
        assert!(Instant::now() < deadline, "not ready within 60 s of start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready_after = started.elapsed();
    while let Ok(line) = rx.try_recv() {
        lines.push(line);
    }
    let log = lines.join("\n");
    assert!(log.contains("recovering a large write-ahead log"), "start-up says what it waits for:\n{log}");
    let recovered: serde_json::Value = serde_json::from_str(
        lines.iter().find(|l| l.contains("the write-ahead log was recovered")).expect("and how long it took"),
    )
    .unwrap();
    let took_ms = recovered["fields"]["took_ms"].as_u64().unwrap();
    if took_ms >= 200 {
        assert_eq!(answers[0], 503, "during a {took_ms} ms recovery /ready said 503: {answers:?}");
    }
    // The server works, and the log it found is emptied in the background.
    assert_eq!(client().get(format!("http://{addr}/.well-known/jwks.json")).send().await.unwrap().status(), 200);
    let bounded_by = Instant::now() + Duration::from_secs(5);
    while wal_size(&dir) > 64 << 20 {
        assert!(Instant::now() < bounded_by, "the log is still {} bytes 5 s after start", wal_size(&dir));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "recovered a {} MB log in {took_ms} ms; ready after {ready_after:?}; /ready answers {answers:?}",
        left >> 20
    );
    let _ = child.kill();
    let _ = child.wait();
}
