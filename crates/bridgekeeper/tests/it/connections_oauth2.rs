//! Connecting an `oauth2` provider through the real server against a small real upstream (an HTTPS
//! authorization server run by the test, trusted through `connections.extra_ca_file` and reached
//! with `connections.allow_private_addresses`): the authorization URL carries the flow (state,
//! PKCE S256, scopes, callback); the callback exchanges the code with the verifier, reads the user
//! info, stores the sealed tokens and redirects with the connection; a replayed or unknown state,
//! another account's browser, the provider's refusal and a bad code store nothing; deleting revokes
//! at the provider first; refresh happens exactly once for concurrent callers on two instances,
//! stores the rotated refresh token, turns `invalid_grant` into `expired` and cools down after a
//! provider failure; a token endpoint
//! that is slow, failing, huge or redirecting gets a clear error within the time limit.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Flow, Server, challenge, client, location, query_param};

const CLIENT_REDIRECT: &str = "http://127.0.0.1:9/callback";

/// What the upstream saw.
#[derive(Default)]
pub(crate) struct Seen {
    /// The PKCE challenge the test read from the authorization URL (the upstream's authorize step).
    challenge: Option<String>,
    exchanges: usize,
    bodies: Vec<String>,
    /// Bodies of revocation requests.
    revoked: Vec<String>,
    /// Refresh requests seen, and the one refresh token the upstream accepts now (rotated on use).
    pub(crate) refreshes: usize,
    pub(crate) valid_refresh: Option<String>,
    /// The token endpoint answers refreshes with 503.
    pub(crate) refresh_down: bool,
    /// How long the token endpoint takes to answer a refresh, after it has rotated the refresh
    /// token (400 ms when unset: slow enough that concurrent callers overlap).
    pub(crate) refresh_delay_ms: Option<u64>,
    /// Refresh answers written out in full.
    pub(crate) answered: usize,
}

pub(crate) struct Upstream {
    pub(crate) base: String,
    pub(crate) seen: Arc<Mutex<Seen>>,
    pub(crate) dir: tempfile::TempDir,
}

fn form(body: &str) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes()).into_owned().collect()
}

/// `/token` (code `good-code` with the right verifier and client → tokens; anything else →
/// `invalid_grant`) and `/userinfo` (for the issued access token), over HTTPS on localhost.
pub(crate) async fn upstream() -> Upstream {
    let dir = tempfile::tempdir().unwrap();
    crate::client_metadata::make_certs(dir.path());
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(dir.path().join("leaf.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(dir.path().join("leaf.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://localhost:{}", listener.local_addr().unwrap().port());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, seen) = (acceptor.clone(), s.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                let head_end = loop {
                    if let Some(i) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&req[..head_end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                while req.len() < head_end + len {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let body = String::from_utf8_lossy(&req[head_end..head_end + len]).to_string();
                let path = head.lines().next().unwrap_or("").split(' ').nth(1).unwrap_or("/").to_owned();
                let reply = |status: &str, v: Value| {
                    let b = v.to_string();
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                        b.len()
                    )
                };
                let code = form(&body).get("code").cloned().unwrap_or_default();
                let res = match path.as_str() {
                    "/token" if code == "slow-code" => {
                        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                        reply("200 OK", json!({"access_token": "late"}))
                    }
                    "/token" if code == "5xx-code" => reply("503 Service Unavailable", json!({"error": "down"})),
                    "/token" if code == "redirect-code" => {
                        "HTTP/1.1 302 Found\r\nLocation: https://169.254.169.254/latest/meta-data\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
                    }
                    "/token" if code == "big-code" => {
                        let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", 10 << 20);
                        let _ = tls.write_all(head.as_bytes()).await;
                        let chunk = vec![b' '; 1 << 16];
                        for _ in 0..160 {
                            if tls.write_all(&chunk).await.is_err() {
                                return;
                            }
                        }
                        return;
                    }
                    "/token" if form(&body).get("grant_type").map(String::as_str) == Some("refresh_token") => {
                        let f = form(&body);
                        let (answer, delay) = {
                            let mut seen = seen.lock().unwrap();
                            seen.refreshes += 1;
                            let n = seen.refreshes;
                            let answer = if seen.refresh_down {
                                reply("503 Service Unavailable", json!({}))
                            } else if seen.valid_refresh.is_some() && f.get("refresh_token") == seen.valid_refresh.as_ref() && f.get("client_secret").map(String::as_str) == Some("bk-secret") {
                                // Rotation, decided before answering (as a real server commits it):
                                // the used refresh token stops working, a new one is issued.
                                let next = format!("upstream-rt-{}", n + 1);
                                seen.valid_refresh = Some(next.clone());
                                reply("200 OK", json!({"access_token": format!("upstream-at-{}", n + 1), "refresh_token": next, "expires_in": 600, "token_type": "Bearer"}))
                            } else {
                                reply("400 Bad Request", json!({"error": "invalid_grant"}))
                            };
                            (answer, seen.refresh_delay_ms.unwrap_or(400))
                        };
                        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                        if tls.write_all(answer.as_bytes()).await.is_ok() && tls.flush().await.is_ok() {
                            seen.lock().unwrap().answered += 1;
                        }
                        let _ = tls.shutdown().await;
                        return;
                    }
                    "/token" => {
                        let f = form(&body);
                        let mut seen = seen.lock().unwrap();
                        seen.exchanges += 1;
                        seen.bodies.push(body.clone());
                        let verifier_ok = match (&seen.challenge, f.get("code_verifier")) {
                            (Some(c), Some(v)) => &challenge(v) == c,
                            _ => false,
                        };
                        let client_ok = f.get("client_id").map(String::as_str) == Some("bk-client")
                            && f.get("client_secret").map(String::as_str) == Some("bk-secret");
                        if f.get("grant_type").map(String::as_str) == Some("authorization_code")
                            && f.get("code").map(String::as_str) == Some("good-code")
                            && verifier_ok
                            && client_ok
                        {
                            seen.valid_refresh = Some("upstream-rt-1".into());
                            reply(
                                "200 OK",
                                json!({"access_token": "upstream-at-1", "refresh_token": "upstream-rt-1", "expires_in": 3600, "token_type": "Bearer", "scope": "read write"}),
                            )
                        } else {
                            reply(
                                "400 Bad Request",
                                json!({"error": "invalid_grant", "error_description": "the code is not valid"}),
                            )
                        }
                    }
                    "/revoke" => {
                        seen.lock().unwrap().revoked.push(body.clone());
                        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
                    }
                    "/userinfo" if head.contains("Bearer upstream-at-1") || head.contains("bearer upstream-at-1") => {
                        reply(
                            "200 OK",
                            json!({"sub": "upstream-user-7", "email": "tee@upstream.example", "name": "Tee"}),
                        )
                    }
                    _ => reply("404 Not Found", json!({})),
                };
                let _ = tls.write_all(res.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Upstream { base, seen, dir }
}

/// A server whose catalog has `testidp`, an oauth2 provider at the upstream.
fn server(up: &Upstream) -> (Server, tempfile::TempDir) {
    let dir = catalog(up);
    let server = Server::start_with(&env_of(up, &dir).iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
    (server, dir)
}

/// A directory holding `providers.toml` with `testidp`.
pub(crate) fn catalog(up: &Upstream) -> tempfile::TempDir {
    catalog_with(up, "")
}

/// The same with `extra` providers after `testidp`.
pub(crate) fn catalog_with(up: &Upstream, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("providers.toml");
    let base = &up.base;
    std::fs::write(
        &file,
        format!(
            r#"
[testidp]
name = "Test IdP"
auth = "oauth2"
[testidp.oauth2]
authorize_url = "{base}/authorize"
token_url = "{base}/token"
userinfo_url = "{base}/userinfo"
revoke_url = "{base}/revoke"
scopes = ["read", "write"]
client_id = "bk-client"
client_secret = "bk-secret"
authorize_params = {{ access_type = "offline" }}
{extra}
"#
        ),
    )
    .unwrap();
    dir
}

/// The environment of a server (or its peer) using the upstream; `dir` holds the catalog file.
pub(crate) fn env_of(up: &Upstream, dir: &tempfile::TempDir) -> Vec<(&'static str, String)> {
    vec![
        ("BRIDGEKEEPER_CONNECTIONS__CATALOG_FILE", dir.path().join("providers.toml").to_string_lossy().into_owned()),
        ("BRIDGEKEEPER_CONNECTIONS__ALLOW_PRIVATE_ADDRESSES", "true".into()),
        ("BRIDGEKEEPER_CONNECTIONS__EXTRA_CA_FILE", up.dir.path().join("ca.pem").to_string_lossy().into_owned()),
        ("BRIDGEKEEPER_CONNECTIONS__TIMEOUT_MS", "1500".into()),
    ]
}

async fn initiate(server: &Server, token: &str) -> String {
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/connections/initiate"))
        .bearer_auth(token)
        .json(&json!({"providerId": "testidp", "redirectUrl": CLIENT_REDIRECT}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["providerMetadata"]["name"], "Test IdP");
    v["authorizationUrl"].as_str().unwrap().to_owned()
}

/// The provider sending the browser back to the callback with `params`.
async fn callback(server: &Server, browser: &reqwest::Client, params: &[(&str, &str)]) -> reqwest::Response {
    let mut u = url::Url::parse(&server.url("/api/v1/connections/callback")).unwrap();
    u.query_pairs_mut().extend_pairs(params);
    browser.get(u).send().await.unwrap()
}

async fn total(server: &Server, token: &str) -> u64 {
    let v: Value = reqwest::Client::new()
        .get(server.url("/api/v1/connections"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["total"].as_u64().unwrap()
}

#[tokio::test]
async fn oauth2_connection_through_a_real_upstream() {
    let up = upstream().await;
    let (server, _dir) = server(&up);
    let flow = Flow::signup(&server, "oauth2@example.com").await;
    let token = flow.login_client("connections").await.1.access;
    let authorize = initiate(&server, &token).await;
    assert!(authorize.starts_with(&format!("{}/authorize?", up.base)), "{authorize}");
    let q = |name: &str| query_param(&authorize, name);
    assert_eq!(q("client_id").as_deref(), Some("bk-client"));
    assert_eq!(q("redirect_uri"), Some(format!("{}/api/v1/connections/callback", server.issuer)));
    assert_eq!((q("response_type").as_deref(), q("scope").as_deref()), (Some("code"), Some("read write")));
    assert_eq!((q("code_challenge_method").as_deref(), q("access_type").as_deref()), (Some("S256"), Some("offline")));
    let state = q("state").unwrap();
    assert!(state.len() >= 43, "256 random bits");
    up.seen.lock().unwrap().challenge = q("code_challenge");

    // The provider approved: the person's browser (signed in here) comes back with the code.
    let browser = flow.http.clone();
    let res = callback(&server, &browser, &[("code", "good-code"), ("state", &state)]).await;
    assert_eq!(res.status(), 303);
    let back = location(&res);
    assert!(back.starts_with(CLIENT_REDIRECT), "{back}");
    assert_eq!(query_param(&back, "status").as_deref(), Some("active"));
    let id = query_param(&back, "connectionId").unwrap();
    let c: Value = reqwest::Client::new()
        .get(server.url(&format!("/api/v1/connections/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((c["providerId"].as_str(), c["providerUserId"].as_str()), (Some("testidp"), Some("upstream-user-7")));
    assert_eq!((c["scopes"].clone(), c["canRefresh"].clone()), (json!(["read", "write"]), json!(true)));
    assert_eq!(c["metadata"]["email"], "tee@upstream.example");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((c["expiresAt"].as_i64().unwrap() - (now + 3600)).abs() < 30);
    assert!(!c.to_string().contains("upstream-at-1") && !c.to_string().contains("upstream-rt-1"));
    assert!(!server.logs().contains("upstream-at-1") && !server.logs().contains("bk-secret"));
    assert_eq!(up.seen.lock().unwrap().exchanges, 1);

    // The state is single use: a replay is an error page, nothing is stored or exchanged.
    let res = callback(&server, &browser, &[("code", "good-code"), ("state", &state)]).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("unknown or was already used"));
    let res = callback(&server, &browser, &[("code", "good-code"), ("state", "made-up")]).await;
    assert_eq!(res.status(), 400);
    let exchanges = up.seen.lock().unwrap().exchanges;
    assert_eq!((exchanges, total(&server, &token).await), (1, 1));

    // The provider refused: its error goes back to the return URL (escaped), nothing stored.
    let refused = initiate(&server, &token).await;
    let st = query_param(&refused, "state").unwrap();
    let res = callback(
        &server,
        &browser,
        &[("error", "access_denied"), ("error_description", "<b>no</b>&x=1"), ("state", &st)],
    )
    .await;
    assert_eq!(res.status(), 303);
    let back = location(&res);
    assert!(back.starts_with(CLIENT_REDIRECT) && !back.contains("<b>"), "{back}");
    assert_eq!(query_param(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(&back, "error_description").as_deref(), Some("<b>no</b>&x=1"));
    assert_eq!(query_param(&back, "connectionId"), None);

    // A code the provider does not accept: its error passed on, nothing stored.
    let bad = initiate(&server, &token).await;
    let st = query_param(&bad, "state").unwrap();
    let res = callback(&server, &browser, &[("code", "bad-code"), ("state", &st)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(query_param(&location(&res), "error").as_deref(), Some("invalid_grant"));
    assert_eq!(total(&server, &token).await, 1);

    // Another account's signed-in browser cannot finish this account's flow.
    let other = Flow::signup(&server, "someone-else@example.com").await;
    let theirs = initiate(&server, &token).await;
    let st = query_param(&theirs, "state").unwrap();
    let res = callback(&server, &other.http, &[("code", "good-code"), ("state", &st)]).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("another account"));
    assert_eq!(total(&server, &token).await, 1);
    assert_eq!(total(&server, &other.login_client("connections").await.1.access).await, 0, "nor for the other account");
    // The client's secret went to the token endpoint only (in the body, as configured).
    assert!(up.seen.lock().unwrap().bodies.iter().all(|b| b.contains("client_secret=bk-secret")));

    // Deleting revokes the grant at the provider (its refresh token, RFC 7009), then erases it here.
    let res = reqwest::Client::new()
        .delete(server.url(&format!("/api/v1/connections/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let revoked = up.seen.lock().unwrap().revoked.clone();
    assert_eq!(revoked.len(), 1);
    let f = form(&revoked[0]);
    assert_eq!((f["token"].as_str(), f["token_type_hint"].as_str()), ("upstream-rt-1", "refresh_token"));
    assert_eq!(f["client_id"], "bk-client");
    assert_eq!(total(&server, &token).await, 0);
}

#[tokio::test]
async fn a_slow_failing_huge_or_redirecting_token_endpoint_is_a_clear_error_and_stores_nothing() {
    let up = upstream().await;
    let (server, _dir) = server(&up);
    let flow = Flow::signup(&server, "upstream-faults@example.com").await;
    let token = flow.login_client("connections").await.1.access;
    let browser = flow.http.clone();
    for code in ["slow-code", "5xx-code", "redirect-code", "big-code"] {
        let st = query_param(&initiate(&server, &token).await, "state").unwrap();
        let started = std::time::Instant::now();
        let res = callback(&server, &browser, &[("code", code), ("state", &st)]).await;
        assert!(started.elapsed() < std::time::Duration::from_secs(4), "{code}: answered within the time limit");
        assert_eq!(res.status(), 303, "{code}");
        let back = location(&res);
        assert_eq!(query_param(&back, "error").as_deref(), Some("temporarily_unavailable"), "{code}: {back}");
        assert_eq!(query_param(&back, "connectionId"), None);
    }
    assert_eq!(total(&server, &token).await, 0);
}

/// Connects `testidp` for `token`'s account through the whole flow, the person's signed-in
/// `browser` coming back; the connection id.
pub(crate) async fn connect(server: &Server, up: &Upstream, token: &str, browser: &reqwest::Client) -> String {
    let authorize = initiate(server, token).await;
    up.seen.lock().unwrap().challenge = query_param(&authorize, "code_challenge");
    let state = query_param(&authorize, "state").unwrap();
    let res = callback(server, browser, &[("code", "good-code"), ("state", &state)]).await;
    assert_eq!(res.status(), 303);
    query_param(&location(&res), "connectionId").unwrap()
}

pub(crate) async fn put_refresh(base: &str, token: &str, id: &str) -> reqwest::Response {
    reqwest::Client::new()
        .put(format!("{base}/api/v1/connections/{id}/refresh"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn concurrent_refreshes_on_two_instances_call_the_provider_once() {
    let up = upstream().await;
    let dir = catalog(&up);
    // Two instances behind one public URL (tokens of one are good on the other).
    let mut env: Vec<(&str, String)> = env_of(&up, &dir);
    env.push(("BRIDGEKEEPER_ISSUER", "http://127.0.0.1:1".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_with(&env);
    let peer = server.start_peer(&env);
    let flow = Flow::signup(&server, "refresh@example.com").await;
    let token = flow.login_client("connections").await.1.access;
    let id = connect(&server, &up, &token, &flow.http).await;

    // 100 callers at once, half on each instance: one refresh at the provider, every caller served.
    let mut calls = Vec::new();
    for i in 0..100 {
        let base = if i % 2 == 0 { server.base.clone() } else { peer.base.clone() };
        let (token, id) = (token.clone(), id.clone());
        calls.push(tokio::spawn(async move {
            let res = put_refresh(&base, &token, &id).await;
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }));
    }
    for c in calls {
        let (status, v) = c.await.unwrap();
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["status"], "active");
    }
    assert_eq!(up.seen.lock().unwrap().refreshes, 1, "exactly one upstream refresh");

    // The rotated refresh token was stored: the next refresh presents it (the old one is dead upstream).
    let res = put_refresh(&server.base, &token, &id).await;
    assert_eq!(res.status(), 200);
    assert_eq!(up.seen.lock().unwrap().refreshes, 2);

    // The provider stops accepting the refresh token: the connection is expired, with a reason.
    up.seen.lock().unwrap().valid_refresh = None;
    let v: Value = put_refresh(&peer.base, &token, &id).await.json().await.unwrap();
    assert_eq!(v["status"], "expired");
    assert!(v["lastError"].as_str().unwrap().contains("invalid_grant"), "{v}");
    let res = put_refresh(&server.base, &token, &id).await;
    assert_eq!(res.status(), 409, "an expired connection is reconnected, not refreshed");
    assert_eq!(up.seen.lock().unwrap().refreshes, 3);
    // Another tenant's refresh of it is a 404.
    let other = Flow::signup(&server, "refresh-other@example.com").await.login_client("connections").await.1.access;
    assert_eq!(put_refresh(&server.base, &other, &id).await.status(), 404);

    // A provider that is down: 503 with Retry-After, and no second attempt during the cool-down.
    let second = connect(&server, &up, &token, &flow.http).await;
    up.seen.lock().unwrap().refresh_down = true;
    let res = put_refresh(&server.base, &token, &second).await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    let res = put_refresh(&peer.base, &token, &second).await;
    assert_eq!(res.status(), 503);
    assert_eq!(up.seen.lock().unwrap().refreshes, 4, "cooling down: the provider is not asked again");
    let v: Value = reqwest::Client::new()
        .get(server.url(&format!("/api/v1/connections/{second}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "active");
    assert!(v["lastError"].as_str().unwrap().contains("could not be reached"), "{v}");
}

/// Login CSRF on the connect flow: someone who starts a flow sends its authorization URL to a
/// victim, whose browser comes back from the provider with the victim's code. Only a browser
/// signed in here as the flow's own account may finish it; a browser signed in as nobody is sent to
/// sign in first (the flow is kept for it), and one signed in as anyone else finishes nothing.
#[tokio::test]
async fn security_a_connect_flow_finishes_only_in_its_own_accounts_browser() {
    let up = upstream().await;
    let (server, _dir) = server(&up);
    let attacker = Flow::signup(&server, "starts-flows@example.com").await;
    let token = attacker.login_client("connections").await.1.access;
    let authorize = initiate(&server, &token).await;
    up.seen.lock().unwrap().challenge = query_param(&authorize, "code_challenge");
    let state = query_param(&authorize, "state").unwrap();
    let params = [("code", "good-code"), ("state", state.as_str())];

    // A browser signed in as nobody: to the sign-in page, coming back to this same callback.
    let res = callback(&server, &client(), &params).await;
    assert_eq!(res.status(), 303);
    let to = location(&res);
    assert!(to.starts_with("/login?next=%2Fapi%2Fv1%2Fconnections%2Fcallback%3F"), "{to}");
    assert!(query_param(&format!("http://x{to}"), "next").unwrap().contains(&state), "{to}");
    // The victim, signed in as themself: nothing is connected anywhere, and no redirect.
    let victim = Flow::signup(&server, "victim@example.com").await;
    let res = callback(&server, &victim.http, &params).await;
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    let victim_token = victim.login_client("connections").await.1.access;
    assert_eq!(total(&server, &victim_token).await, 0);
    assert_eq!(total(&server, &token).await, 0);
    // That use spent the state: even the flow's own browser cannot finish it now.
    let res = callback(&server, &attacker.http, &params).await;
    assert_eq!(res.status(), 400);
    assert_eq!(total(&server, &token).await, 0);
    // A provider error for someone else's flow is not bounced to the flow's return URL either.
    let st = query_param(&initiate(&server, &token).await, "state").unwrap();
    let res = callback(&server, &victim.http, &[("error", "access_denied"), ("state", st.as_str())]).await;
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
}

/// RFC 9207 mix-up defence: a provider configured with its issuer must name itself (`iss`) in the
/// answer; a missing or different `iss` connects nothing, an exact one connects.
#[tokio::test]
async fn security_a_provider_with_an_issuer_must_name_itself_in_the_answer() {
    let up = upstream().await;
    let dir = catalog(&up);
    let issuer = format!("{}/issuer", up.base);
    let mut env = env_of(&up, &dir);
    env.push(("BRIDGEKEEPER_CONNECTIONS__PROVIDERS__TESTIDP__OAUTH2__ISSUER", issuer.clone()));
    let server = Server::start_with(&env.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
    let flow = Flow::signup(&server, "issuer@example.com").await;
    let token = flow.login_client("connections").await.1.access;
    for iss in [None, Some("https://evil.example"), Some(&format!("{issuer}/"))] {
        let authorize = initiate(&server, &token).await;
        up.seen.lock().unwrap().challenge = query_param(&authorize, "code_challenge");
        let state = query_param(&authorize, "state").unwrap();
        let mut params = vec![("code", "good-code"), ("state", state.as_str())];
        if let Some(i) = iss {
            params.push(("iss", i));
        }
        let res = callback(&server, &flow.http, &params).await;
        assert_eq!(res.status(), 303);
        let back = location(&res);
        assert_eq!(query_param(&back, "error").as_deref(), Some("invalid_request"), "{iss:?}: {back}");
        assert_eq!(query_param(&back, "connectionId"), None);
    }
    assert_eq!(total(&server, &token).await, 0);
    let authorize = initiate(&server, &token).await;
    up.seen.lock().unwrap().challenge = query_param(&authorize, "code_challenge");
    let state = query_param(&authorize, "state").unwrap();
    let res = callback(&server, &flow.http, &[("code", "good-code"), ("state", &state), ("iss", &issuer)]).await;
    assert_eq!(query_param(&location(&res), "status").as_deref(), Some("active"), "{}", location(&res));
    assert_eq!(total(&server, &token).await, 1);
}

/// A grant the provider made but that cannot be kept here (the account's quota is reached) is
/// given back to the provider (revoked), not left orphaned upstream.
#[tokio::test]
async fn a_grant_that_cannot_be_stored_is_revoked_upstream() {
    let up = upstream().await;
    let dir = catalog(&up);
    let mut env = env_of(&up, &dir);
    env.push(("BRIDGEKEEPER_LIMITS__MAX_CONNECTIONS_PER_ACCOUNT", "1".into()));
    let server = Server::start_with(&env.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
    let flow = Flow::signup(&server, "full@example.com").await;
    let token = flow.login_client("connections").await.1.access;
    connect(&server, &up, &token, &flow.http).await;
    assert!(up.seen.lock().unwrap().revoked.is_empty());
    let authorize = initiate(&server, &token).await;
    up.seen.lock().unwrap().challenge = query_param(&authorize, "code_challenge");
    let state = query_param(&authorize, "state").unwrap();
    let res = callback(&server, &flow.http, &[("code", "good-code"), ("state", &state)]).await;
    assert_eq!(query_param(&location(&res), "error").as_deref(), Some("quota_exceeded"), "{}", location(&res));
    assert_eq!(up.seen.lock().unwrap().revoked.len(), 1, "the unstored grant was revoked at the provider");
    assert_eq!(total(&server, &token).await, 1);
}

#[tokio::test]
async fn security_the_pkce_verifier_is_never_stored() {
    let up = upstream().await;
    let (server, _dir) = server(&up);
    let flow = Flow::signup(&server, "pkce@example.com").await;
    let token = flow.login_client("connections").await.1.access;
    let authorize = initiate(&server, &token).await;
    let state = query_param(&authorize, "state").unwrap();
    up.seen.lock().unwrap().challenge = query_param(&authorize, "code_challenge");
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&server.db_url()).await.unwrap();
    let stored = |db: sqlx::AnyPool| async move {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM connection_flows WHERE code_verifier IS NOT NULL")
            .fetch_one(&db)
            .await
            .unwrap();
        let flows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM connection_flows").fetch_one(&db).await.unwrap();
        (n, flows)
    };
    assert_eq!(stored(db.clone()).await, (0, 1), "the flow is recorded without a verifier");
    // The provider accepts the verifier Bridgekeeper derives from the returning state.
    let res = callback(&server, &flow.http, &[("code", "good-code"), ("state", &state)]).await;
    assert_eq!(res.status(), 303);
    assert!(query_param(&location(&res), "connectionId").is_some(), "{}", location(&res));
    let body = up.seen.lock().unwrap().bodies[0].clone();
    let verifier = form(&body)["code_verifier"].clone();
    assert!(verifier.len() >= 43, "{verifier}");
    assert_eq!(stored(db.clone()).await, (0, 1));
    let upstream: Option<String> =
        sqlx::query_scalar("SELECT upstream FROM connection_flows").fetch_one(&db).await.unwrap();
    assert_eq!(upstream, None, "an oauth2 flow carries nothing discovered");
    assert!(!server.logs().contains(&verifier));
    // Another state gives another verifier (each flow's own).
    let again = initiate(&server, &token).await;
    assert_ne!(query_param(&again, "code_challenge"), query_param(&authorize, "code_challenge"));
}
