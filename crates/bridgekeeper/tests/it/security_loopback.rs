//! Finding 8: only real loopback addresses and `localhost` count as loopback for the
//! DNS-rebinding check on `/mcp` — not any name that starts with `127.`.

use serde_json::json;

use crate::harness::{Flow, Server};

#[tokio::test]
async fn loopback_lookalike_hosts_are_refused_on_mcp() {
    let server = Server::start();
    let flow = Flow::signup(&server, "loop@example.com").await;
    let (_, t) = flow.login_client("universal-mcp-read-write").await;
    let status = |header: &'static str, value: &'static str| {
        let (url, token) = (flow.url("/mcp"), t.access.clone());
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .header("X-Response-Format", "json")
                .header(header, value)
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for host in ["127.evil.example", "127.0.0.1.nip.io", "127.0.0.1.nip.io:8080", "127.1.evil.example:80", "127."] {
        assert_eq!(status("Host", host).await, 403, "Host {host}");
    }
    for origin in ["http://127.evil.example", "http://127.0.0.1.nip.io:8080", "https://127.0.0.1.evil.example"] {
        assert_eq!(status("Origin", origin).await, 403, "Origin {origin}");
    }
    // Real loopback addresses still count, with or without a port.
    for host in ["127.0.0.2:8080", "127.0.0.1", "[::1]:9000", "localhost", "LOCALHOST:3000"] {
        assert_eq!(status("Host", host).await, 200, "Host {host}");
    }
    for origin in ["http://127.0.0.5:5173", "http://[::1]:6274", "http://localhost"] {
        assert_eq!(status("Origin", origin).await, 200, "Origin {origin}");
    }
}
