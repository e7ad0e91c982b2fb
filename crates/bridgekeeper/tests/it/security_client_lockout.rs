//! Finding 2: failed client secrets from one source must not lock out the holder of the right
//! secret elsewhere, while the failing source itself stays throttled (brute-force protection).

use std::net::{IpAddr, Ipv4Addr};

use serde_json::{Value, json};

use crate::harness::Server;

/// A confidential client registered by DCR: (client_id, client_secret).
async fn confidential_client(server: &Server) -> (String, String) {
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/auth/register"))
        .json(&json!({"client_name": "Backend", "redirect_uris": ["http://127.0.0.1:9/cb"],
            "token_endpoint_auth_method": "client_secret_basic", "scope": "account"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    (v["client_id"].as_str().unwrap().to_owned(), v["client_secret"].as_str().unwrap().to_owned())
}

/// An HTTP client whose connections come from `ip` (any 127.0.0.0/8 address reaches the server).
fn from(ip: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder().local_address(IpAddr::V4(ip)).build().unwrap()
}

/// A token request authenticated with Basic `id:secret`; the grant itself is bogus, so a client
/// that authenticates gets 400 `invalid_grant`, one that does not gets 401, a throttled one 429.
async fn token_status(http: &reqwest::Client, server: &Server, id: &str, secret: &str) -> u16 {
    http.post(server.url("/api/v1/auth/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "bkr_not-a-real-token")])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn wrong_secrets_from_a_stranger_do_not_lock_out_the_client() {
    let server = Server::start();
    let (id, secret) = confidential_client(&server).await;
    let attacker = from(Ipv4Addr::new(127, 0, 0, 2));
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(token_status(&attacker, &server, &id, "bks_wrong").await);
    }
    assert!(statuses[..10].iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(&statuses[10..], &[429, 429], "the failing guesses are throttled: {statuses:?}");
    // The holder of the right secret is not refused — not even from the attacker's own address
    // (a shared NAT, or every request arriving through one proxy). It was never verified before,
    // so no remembered secret helps it.
    let shared = from(Ipv4Addr::new(127, 0, 0, 2));
    assert_eq!(token_status(&shared, &server, &id, &secret).await, 400, "authenticated: only the grant is bad");
    let holder = from(Ipv4Addr::new(127, 0, 0, 1));
    assert_eq!(token_status(&holder, &server, &id, &secret).await, 400);
    // Wrong secrets stay throttled.
    assert_eq!(token_status(&attacker, &server, &id, "bks_wrong").await, 429);
    assert_eq!(token_status(&attacker, &server, &id, "bks_wrong-again").await, 429);
}

#[tokio::test]
async fn one_source_guessing_across_clients_is_throttled() {
    let server = Server::start();
    let (a, _) = confidential_client(&server).await;
    let (b, _) = confidential_client(&server).await;
    let (c, _) = confidential_client(&server).await;
    let (d, d_secret) = confidential_client(&server).await;
    let attacker = from(Ipv4Addr::new(127, 0, 0, 3));
    // Under the limit of each client, but many failures from one source in total.
    let mut statuses = Vec::new();
    for id in [&a, &b, &c] {
        for _ in 0..9 {
            statuses.push(token_status(&attacker, &server, id, "bks_wrong").await);
        }
    }
    assert!(statuses.contains(&429), "a source spraying wrong secrets over clients is throttled: {statuses:?}");
    assert_eq!(token_status(&attacker, &server, &d, "bks_wrong").await, 429, "on a fresh client too");
    // The right secret still works, from that source and from any other.
    assert_eq!(token_status(&attacker, &server, &d, &d_secret).await, 400);
    assert_eq!(token_status(&from(Ipv4Addr::new(127, 0, 0, 1)), &server, &a, "bks_wrong").await, 401);
}
