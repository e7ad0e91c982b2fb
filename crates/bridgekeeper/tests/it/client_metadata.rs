//! Client ID Metadata Documents: a `client_id` that is an HTTPS URL is fetched safely (no private,
//! loopback or link-local addresses, no redirects, size and time limits), validated against the
//! URL it came from, cached as its headers allow, and shown on the consent page with its host.
//! The documents are served by a local HTTPS server whose test CA the binary is told to trust
//! (`client_metadata_documents.extra_ca_file`); reaching it needs the development setting
//! `allow_private_addresses`, and the tests without it prove the default refuses every such address.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Flow, Server, challenge, location, query_param};

const VERIFIER: &str = crate::harness::VERIFIER;
const CB: &str = "http://127.0.0.1:9/callback";

/// A CA and a certificate for localhost/127.0.0.1 signed by it (openssl, as on every machine here).
pub(crate) fn make_certs(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key"]
        .iter()
        .copied()
        .chain(["-out", "ca.pem", "-days", "2", "-subj", "/CN=bridgekeeper test CA"])
        .chain(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"])
        .collect::<Vec<_>>());
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
}

/// The documents the test server answers with, by path.
struct Docs {
    base: String,
    fetches: Arc<AtomicUsize>,
    dir: tempfile::TempDir,
}

impl Docs {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    fn ca(&self) -> String {
        self.dir.path().join("ca.pem").to_string_lossy().into_owned()
    }
}

fn document(base: &str, path: &str) -> Value {
    json!({
        "client_id": format!("{base}{path}"),
        "client_name": "Document Client",
        "redirect_uris": [CB],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    })
}

/// Serves over HTTPS on 127.0.0.1 (as `localhost`): `/ok.json` (cached 10 minutes), `/nostore.json`,
/// `/mismatch.json`, `/secret.json`, `/redirect.json` (302 to the cloud metadata address),
/// `/big.json` (10 MB), `/slow.json` (answers after 10 s), anything else 404.
async fn serve_documents() -> Docs {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
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
    let fetches = Arc::new(AtomicUsize::new(0));
    let (b, f) = (base.clone(), fetches.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, base, fetches) = (acceptor.clone(), b.clone(), f.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req).lines().next().unwrap_or("").to_owned();
                let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
                fetches.fetch_add(1, Ordering::SeqCst);
                let json = |v: Value, cache: &str| {
                    let body = v.to_string();
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: {cache}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .into_bytes()
                };
                let res: Vec<u8> = match path.as_str() {
                    "/ok.json" => json(document(&base, "/ok.json"), "max-age=600"),
                    "/nostore.json" => json(document(&base, "/nostore.json"), "no-store"),
                    "/mismatch.json" => json(document(&base, "/ok.json"), "max-age=600"),
                    "/secret.json" => {
                        let mut d = document(&base, "/secret.json");
                        d["client_secret"] = json!("s3cret");
                        json(d, "max-age=600")
                    }
                    "/redirect.json" => b"HTTP/1.1 302 Found\r\nLocation: https://169.254.169.254/latest/meta-data\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                    "/big.json" => {
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
                    "/slow.json" => {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        json(document(&base, "/slow.json"), "max-age=600")
                    }
                    _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                };
                let _ = tls.write_all(&res).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Docs { base, fetches, dir }
}

fn authorize_url(server: &Server, client_id: &str, redirect_uri: &str) -> String {
    let mut u = url::Url::parse(&server.url("/api/v1/auth/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", "universal-mcp-read-write")
        .append_pair("state", "st")
        .append_pair("code_challenge", &challenge(VERIFIER))
        .append_pair("code_challenge_method", "S256");
    u.to_string()
}

/// The error page an authorization request for `client_id` gets (never a redirect).
async fn refused(flow: &Flow, server: &Server, client_id: &str) -> String {
    let res = flow.http.get(authorize_url(server, client_id, CB)).send().await.unwrap();
    assert_eq!(res.status(), 400, "{client_id}");
    assert!(res.headers().get("location").is_none());
    res.text().await.unwrap()
}

fn dev_server(docs: &Docs, extra: &[(&str, &str)]) -> Server {
    let ca = docs.ca();
    let mut env = vec![
        ("BRIDGEKEEPER_CLIENT_METADATA_DOCUMENTS__ALLOW_PRIVATE_ADDRESSES", "true"),
        ("BRIDGEKEEPER_CLIENT_METADATA_DOCUMENTS__EXTRA_CA_FILE", ca.as_str()),
    ];
    env.extend_from_slice(extra);
    Server::start_with(&env)
}

#[tokio::test]
async fn security_cimd_never_fetches_from_private_loopback_or_link_local_addresses() {
    let docs = serve_documents().await;
    // The default: the document server on this machine is out of reach, by name or by address.
    let server = Server::start();
    let flow = Flow::signup(&server, "ssrf@example.com").await;
    let port = docs.base.rsplit(':').next().unwrap();
    for (id, why) in [
        (format!("https://127.0.0.1:{port}/ok.json"), "127.0.0.1 is not a public address"),
        ("https://169.254.169.254/latest/meta-data/c.json".into(), "169.254.169.254 is not a public address"),
        (format!("https://[::1]:{port}/ok.json"), "::1 is not a public address"),
        ("https://10.0.0.7/c.json".into(), "10.0.0.7 is not a public address"),
        (docs.url("/ok.json"), "localhost could not be resolved to a public address"),
    ] {
        let page = refused(&flow, &server, &id).await;
        assert!(page.contains(why), "{id}: {page}");
    }
    assert_eq!(docs.fetches.load(Ordering::SeqCst), 0, "nothing reached the document server");
    // The token endpoint refuses such a client too.
    let res = flow
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_id", "https://169.254.169.254/c.json"),
        ])
        .await;
    assert_eq!(res.status(), 401);
    let meta: Value =
        reqwest::get(server.url("/.well-known/oauth-authorization-server")).await.unwrap().json().await.unwrap();
    assert_eq!(meta["client_id_metadata_document_supported"], true);
}

#[tokio::test]
async fn security_cimd_refuses_redirects_big_and_slow_documents() {
    let docs = serve_documents().await;
    let server = dev_server(&docs, &[("BRIDGEKEEPER_CLIENT_METADATA_DOCUMENTS__TIMEOUT_MS", "1500")]);
    let flow = Flow::signup(&server, "limits@example.com").await;
    let page = refused(&flow, &server, &docs.url("/redirect.json")).await;
    assert!(page.contains("redirects are not followed"), "{page}");
    let page = refused(&flow, &server, &docs.url("/big.json")).await;
    assert!(page.contains("larger than 5120 bytes"), "{page}");
    let started = std::time::Instant::now();
    let page = refused(&flow, &server, &docs.url("/slow.json")).await;
    assert!(page.contains("no complete answer within"), "{page}");
    assert!(started.elapsed() < Duration::from_secs(5), "the fetch gave up at its limit: {:?}", started.elapsed());
    let page = refused(&flow, &server, &docs.url("/missing.json")).await;
    assert!(page.contains("HTTP 404"), "{page}");
    // URLs that cannot be document client ids at all.
    for (id, why) in [
        (format!("{}/", docs.base), "must have a path"),
        (format!("{}/a/../ok.json", docs.base), ". or .. path segments"),
        (format!("{}/ok.json?x=1", docs.base), "must not contain a query"),
    ] {
        let page = refused(&flow, &server, &id).await;
        assert!(page.contains(why), "{id}: {page}");
    }
}

#[tokio::test]
async fn security_cimd_document_must_name_its_own_url_and_carry_no_secret() {
    let docs = serve_documents().await;
    let server = dev_server(&docs, &[]);
    let flow = Flow::signup(&server, "mismatch@example.com").await;
    let page = refused(&flow, &server, &docs.url("/mismatch.json")).await;
    assert!(page.contains("client_id is not the URL it was fetched from"), "{page}");
    let page = refused(&flow, &server, &docs.url("/secret.json")).await;
    assert!(page.contains("must not carry a client secret"), "{page}");
    // The document's redirect URIs are the only ones.
    let res = flow
        .http
        .get(authorize_url(&server, &docs.url("/ok.json"), "http://127.0.0.1:9/elsewhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("not registered"));
}

#[tokio::test]
async fn cimd_client_signs_in_end_to_end_and_its_host_is_shown() {
    let docs = serve_documents().await;
    let server = dev_server(&docs, &[]);
    let flow = Flow::signup(&server, "cimd@example.com").await;
    let id = docs.url("/ok.json");
    let res = flow.http.get(authorize_url(&server, &id, CB)).send().await.unwrap();
    assert!(location(&res).starts_with("/consent?"), "{}", location(&res));
    let page = flow.http.get(server.url(&location(&res))).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Document Client"), "{page}");
    assert!(page.contains("described by a document published at <strong>localhost</strong>"), "{page}");
    let back = flow.approve(&authorize_url(&server, &id, CB)).await;
    let code = query_param(&back, "code").expect("a code");
    let tokens = flow.exchange_code(&id, CB, &code).await;
    let res = flow.mcp(&tokens.access, "tools/call", json!({"name": "whoami", "arguments": {}})).await;
    let status = res.status().as_u16();
    let who: Value = res.json().await.unwrap_or_default();
    assert_eq!(status, 200, "{who}");
    assert!(who.to_string().contains(&id), "whoami names the document client: {who}");
    assert_eq!(flow.refresh(&id, &tokens.refresh).await.status(), 200);
    // A loopback redirect URI in a public document: consent is asked again next time.
    let again = flow.http.get(authorize_url(&server, &id, CB)).send().await.unwrap();
    assert!(location(&again).starts_with("/consent?"));
    // Cached for its max-age: one fetch for all of the above.
    assert_eq!(docs.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn cimd_document_without_caching_is_fetched_each_time() {
    let docs = serve_documents().await;
    let server = dev_server(&docs, &[]);
    let flow = Flow::signup(&server, "nostore@example.com").await;
    let id = docs.url("/nostore.json");
    for _ in 0..2 {
        let res = flow.http.get(authorize_url(&server, &id, CB)).send().await.unwrap();
        assert!(location(&res).starts_with("/consent?"), "{}", location(&res));
    }
    assert_eq!(docs.fetches.load(Ordering::SeqCst), 2);
}
