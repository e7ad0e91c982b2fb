//! Sign-In with Ethereum (EIP-4361) against the real binary: messages signed in the test by secp256k1
//! keys as a wallet signs them (EIP-191 `personal_sign`), the nonce from `GET /api/v1/auth/nonce`,
//! `POST /api/v1/auth/authenticate`. A wallet signs up and signs in again to the same account; a
//! signed-in browser links an address, never one another account holds; a disabled account stays
//! out. The named security tests: a nonce works once (also when two uses race), a message for
//! another domain, URI or chain, outside its times, with a bad checksum, or signed by another key
//! is refused and spends nothing, and only this site's pages (its `Origin`) may ask.

use std::time::Duration;

use k256::ecdsa::SigningKey;
use serde_json::{Value, json};
use sha3::{Digest, Keccak256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::harness::{Flow, Server, client, input, operator_token};

/// A wallet: a secp256k1 key and its address.
struct Wallet {
    key: SigningKey,
}

impl Wallet {
    fn new(seed: u8) -> Wallet {
        // A fixed key per seed (each test has its own database).
        let mut bytes = [seed; 32];
        bytes[0] = 0x42;
        Wallet { key: SigningKey::from_slice(&bytes).unwrap() }
    }

    /// `0x` and the lower-case digits of the address: the last 20 bytes of the Keccak-256 of the
    /// uncompressed public key.
    fn lower(&self) -> String {
        let point = self.key.verifying_key().to_sec1_point(false);
        let hash = Keccak256::digest(&point.as_bytes()[1..]);
        format!("0x{}", hex(&hash[12..]))
    }

    /// The EIP-55 checksummed address.
    fn address(&self) -> String {
        let lower = self.lower();
        let hash = Keccak256::digest(&lower.as_bytes()[2..]);
        let digits: String = lower[2..]
            .chars()
            .enumerate()
            .map(|(i, c)| {
                let nibble = if i % 2 == 0 { hash[i / 2] >> 4 } else { hash[i / 2] & 0xf };
                if nibble >= 8 { c.to_ascii_uppercase() } else { c }
            })
            .collect();
        format!("0x{digits}")
    }

    /// `personal_sign`: Keccak-256 of "\x19Ethereum Signed Message:\n" + length + message, signed;
    /// r, s and v = 27 + recovery id, as hex.
    fn sign(&self, message: &str) -> String {
        let mut h = Keccak256::new();
        h.update(format!("\x19Ethereum Signed Message:\n{}", message.len()).as_bytes());
        h.update(message.as_bytes());
        let (sig, recovery) = self.key.sign_prehash_recoverable(&h.finalize());
        format!("0x{}{:02x}", hex(&sig.to_bytes()), 27 + recovery.to_byte())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// A message's fields, defaulting to a valid one for `server`.
struct Message {
    domain: String,
    address: String,
    uri: String,
    chain_id: u64,
    nonce: String,
    issued_at: String,
    extra: String,
}

impl Message {
    fn new(server: &Server, address: &str, nonce: &str) -> Message {
        Message {
            domain: server.issuer.trim_start_matches("http://").to_owned(),
            address: address.to_owned(),
            uri: format!("{}/login", server.issuer),
            chain_id: 1,
            nonce: nonce.to_owned(),
            issued_at: rfc3339(OffsetDateTime::now_utc()),
            extra: String::new(),
        }
    }

    fn text(&self) -> String {
        format!(
            "{} wants you to sign in with your Ethereum account:\n{}\n\nSign in to Bridgekeeper.\n\nURI: {}\nVersion: 1\n\
             Chain ID: {}\nNonce: {}\nIssued At: {}{}",
            self.domain, self.address, self.uri, self.chain_id, self.nonce, self.issued_at, self.extra
        )
    }
}

/// A change to a valid message (what a refusal test sends instead).
type Change = Box<dyn Fn(&mut Message)>;

/// A fresh nonce from the server.
async fn nonce(http: &reqwest::Client, server: &Server) -> String {
    let res = http.get(server.url("/api/v1/auth/nonce")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    v["nonce"].as_str().unwrap().to_owned()
}

/// `POST /api/v1/auth/authenticate` from this site's page (its Origin), with a CSRF token if given.
async fn authenticate(
    http: &reqwest::Client,
    server: &Server,
    message: &str,
    signature: &str,
    csrf: Option<&str>,
) -> reqwest::Response {
    let mut req = http
        .post(server.url("/api/v1/auth/authenticate"))
        .header("origin", server.issuer.clone())
        .json(&json!({ "message": message, "signature": signature }));
    if let Some(t) = csrf {
        req = req.header("x-csrf-token", t);
    }
    req.send().await.unwrap()
}

/// Signs in (or up) with `wallet` in `http`'s browser: the answer's status and JSON.
async fn wallet_sign_in(http: &reqwest::Client, server: &Server, wallet: &Wallet) -> (u16, Value) {
    let n = nonce(http, server).await;
    let m = Message::new(server, &wallet.address(), &n).text();
    let res = authenticate(http, server, &m, &wallet.sign(&m), None).await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// The refusal's status and code (problem JSON).
async fn refusal(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    assert_eq!(res.headers()["content-type"], "application/problem+json", "status {status}");
    let v: Value = res.json().await.unwrap();
    (status, v["code"].as_str().unwrap_or_default().to_owned())
}

/// Is `http`'s browser signed in (to whom: its account's id)?
async fn signed_in_as(http: &reqwest::Client, server: &Server) -> Option<String> {
    let res = http.get(server.url("/api/v1/account")).send().await.unwrap();
    if res.status() != 200 {
        return None;
    }
    let v: Value = res.json().await.unwrap();
    v["id"].as_str().map(str::to_owned)
}

/// A page of a signed-in browser (200), or its status.
async fn page(http: &reqwest::Client, server: &Server, path: &str) -> Result<String, u16> {
    let res = http.get(server.url(path)).send().await.unwrap();
    if res.status() != 200 {
        return Err(res.status().as_u16());
    }
    Ok(res.text().await.unwrap())
}

/// The CSRF token of a signed-in browser's pages.
async fn csrf(http: &reqwest::Client, server: &Server) -> String {
    let home = http.get(server.url("/")).send().await.unwrap().text().await.unwrap();
    input(&home, "csrf_token")
}

#[tokio::test]
async fn siwe_nonce_is_random_alphanumeric_short_lived_and_limited() {
    let server = Server::start_with(&[("BRIDGEKEEPER_SIWE__NONCES_PER_MINUTE", "3")]);
    let http = client();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let res = http.get(server.url("/api/v1/auth/nonce")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let v: Value = res.json().await.unwrap();
    let n = v["nonce"].as_str().unwrap();
    assert!(n.len() >= 24 && n.bytes().all(|b| b.is_ascii_alphanumeric()), "{n}");
    let expires = v["expiresAt"].as_i64().unwrap();
    assert!((now + 590..=now + 610).contains(&expires), "ten minutes: {v}");
    assert_eq!(v["domain"], server.issuer.trim_start_matches("http://"));
    assert_eq!(v["chainIds"], json!([1]));
    // The checksummed form of an address, for a page's script.
    let w = Wallet::new(1);
    let v: Value = http
        .get(server.url(&format!("/api/v1/auth/nonce?address={}", w.lower())))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["address"], w.address());
    assert_ne!(v["nonce"], n, "a new nonce each time");
    let res = http.get(server.url("/api/v1/auth/nonce")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // The fourth in a minute from this address.
    let res = http.get(server.url("/api/v1/auth/nonce")).send().await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().get("retry-after").is_some());
    assert_eq!(refusal(res).await, (429, "too_many_requests".to_owned()));
}

#[tokio::test]
async fn siwe_sign_up_then_sign_in_lands_in_the_same_account() {
    let server = Server::start();
    let wallet = Wallet::new(2);
    let first = client();
    let (status, v) = wallet_sign_in(&first, &server, &wallet).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!((v["created"].clone(), v["linked"].clone()), (json!(true), json!(false)));
    assert_eq!(v["address"], wallet.address());
    let account = v["accountId"].as_str().unwrap().to_owned();
    // The session cookie works on a signed-in page, which lists the address.
    assert_eq!(signed_in_as(&first, &server).await.as_deref(), Some(account.as_str()));
    // The account has no address: the undeliverable placeholder it holds is never shown as one.
    let me: Value = first.get(server.url("/api/v1/account")).send().await.unwrap().json().await.unwrap();
    assert!(me.get("email").is_none(), "no placeholder address in the account: {me}");
    let overview = page(&first, &server, "/account").await.expect("the account overview");
    assert!(!overview.contains("@invalid") && overview.contains("your wallet account"), "{overview}");
    let security = page(&first, &server, "/account/security").await.expect("the security page");
    assert!(security.contains("This account has no email address"), "no placeholder shown as an address");
    assert!(security.contains("This account signs in without a password."));
    assert!(security.contains("Linked addresses: 1") && security.contains("/account/security/wallets"));
    let wallets = page(&first, &server, "/account/security/wallets").await.expect("the wallets page");
    assert!(wallets.contains(&wallet.address()), "the address is listed");
    // Another browser, the same wallet: the same account, nothing created.
    let second = client();
    let (status, v) = wallet_sign_in(&second, &server, &wallet).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["accountId"], account.as_str());
    assert_eq!((v["created"].clone(), v["linked"].clone()), (json!(false), json!(false)));
    assert_eq!(signed_in_as(&second, &server).await.as_deref(), Some(account.as_str()));
    // The address in lower case is the same address (uniqueness ignores the checksum's capitals):
    // signing in from a third browser still lands there.
    let third = client();
    let (_, v) = wallet_sign_in(&third, &server, &wallet).await;
    assert_eq!(v["accountId"], account.as_str());
    // Its only way to sign in cannot be removed.
    let token = csrf(&first, &server).await;
    let res = first
        .post(server.url(&format!("/account/security/wallets/{}/unlink", wallet.address())))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/account/security/wallets?error=last_sign_in_method");
    let (status, _) = wallet_sign_in(&client(), &server, &wallet).await;
    assert_eq!(status, 200, "the address still signs in");
}

#[tokio::test]
async fn security_siwe_nonce_is_single_use() {
    let server = Server::start();
    let wallet = Wallet::new(3);
    let http = client();
    let n = nonce(&http, &server).await;
    let m = Message::new(&server, &wallet.address(), &n).text();
    let sig = wallet.sign(&m);
    let res = authenticate(&http, &server, &m, &sig, None).await;
    assert_eq!(res.status(), 201);
    // Replayed, from another browser: refused.
    let res = authenticate(&client(), &server, &m, &sig, None).await;
    assert_eq!(refusal(res).await, (401, "nonce_unknown".to_owned()));
    // A nonce the server never handed out.
    let forged = Message::new(&server, &wallet.address(), "abcdef0123456789abcdef0123456789").text();
    let res = authenticate(&client(), &server, &forged, &wallet.sign(&forged), None).await;
    assert_eq!(refusal(res).await, (401, "nonce_unknown".to_owned()));

    // Two uses of one nonce at the same moment (two browsers): exactly one signs in.
    let other = Wallet::new(4);
    let n = nonce(&http, &server).await;
    let m = Message::new(&server, &other.address(), &n).text();
    let sig = other.sign(&m);
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (url, origin, m, sig) =
            (server.url("/api/v1/auth/authenticate"), server.issuer.clone(), m.clone(), sig.clone());
        tasks.push(tokio::spawn(async move {
            client()
                .post(url)
                .header("origin", origin)
                .json(&json!({"message": m, "signature": sig}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 5, "{statuses:?}");
    // Audited, each refusal with its reason, never with the signature.
    let audit = client()
        .get(server.url("/api/v1/admin/audit?limit=100"))
        .bearer_auth(operator_token(&server))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(audit.contains("nonce_unknown") && audit.contains("siwe_sign_in"), "{audit}");
    assert!(audit.contains(&other.address()), "the address is named");
    assert!(!audit.contains(&sig[2..42]) && !server.logs().contains(&sig[2..42]), "no signature in audit or logs");
}

#[tokio::test]
async fn security_siwe_message_for_another_domain_is_refused() {
    let server = Server::start_with(&[("BRIDGEKEEPER_SIWE__CHAIN_IDS", "1,137")]);
    let wallet = Wallet::new(5);
    let http = client();
    let n = nonce(&http, &server).await;
    let cases: Vec<(Change, u16, &str)> = vec![
        (Box::new(|m| m.domain = "evil.example".into()), 400, "domain_mismatch"),
        (Box::new(|m| m.domain = "127.0.0.1:1".into()), 400, "domain_mismatch"),
        (Box::new(|m| m.uri = "https://evil.example/login".into()), 400, "uri_mismatch"),
        (Box::new(|m| m.chain_id = 5), 400, "chain_not_allowed"),
        (Box::new(|m| m.extra = "\nExpiration Time: 2020-01-01T00:00:00Z".into()), 401, "message_expired"),
        (
            Box::new(|m| {
                m.extra = format!("\nNot Before: {}", rfc3339(OffsetDateTime::now_utc() + Duration::from_secs(600)))
            }),
            401,
            "message_not_yet_valid",
        ),
        (
            Box::new(|m| m.issued_at = rfc3339(OffsetDateTime::now_utc() + Duration::from_secs(600))),
            401,
            "issued_in_future",
        ),
        (
            Box::new(|m| m.issued_at = rfc3339(OffsetDateTime::now_utc() - Duration::from_secs(3600))),
            401,
            "issued_before_nonce",
        ),
        (Box::new(|m| m.address = m.address.to_ascii_lowercase()), 400, "address_not_checksummed"),
        (
            Box::new(|m| {
                // One letter's case flipped: a wrong checksum.
                let i = m.address[2..].find(|c: char| c.is_ascii_alphabetic()).unwrap() + 2;
                let flipped = m.address[i..i + 1]
                    .chars()
                    .next()
                    .map(|c| if c.is_ascii_uppercase() { c.to_ascii_lowercase() } else { c.to_ascii_uppercase() });
                m.address.replace_range(i..i + 1, &flipped.unwrap().to_string());
            }),
            400,
            "address_checksum_invalid",
        ),
        (Box::new(|m| m.extra = "\n".into()), 400, "malformed_message"),
    ];
    for (change, status, code) in cases {
        let mut m = Message::new(&server, &wallet.address(), &n);
        change(&mut m);
        let text = m.text();
        let res = authenticate(&http, &server, &text, &wallet.sign(&text), None).await;
        assert_eq!(refusal(res).await, (status, code.to_owned()), "{text}");
    }
    // None of those refusals spent the nonce or created anything: the right message still works.
    let mut m = Message::new(&server, &wallet.address(), &n);
    m.chain_id = 137; // another allowed chain
    let text = m.text();
    let res = authenticate(&http, &server, &text, &wallet.sign(&text), None).await;
    assert_eq!(res.status(), 201);
}

#[tokio::test]
async fn security_siwe_signature_must_come_from_the_address() {
    let server = Server::start();
    let (wallet, thief) = (Wallet::new(6), Wallet::new(7));
    let http = client();
    let n = nonce(&http, &server).await;
    let m = Message::new(&server, &wallet.address(), &n).text();
    // Signed by another key.
    let res = authenticate(&http, &server, &m, &thief.sign(&m), None).await;
    assert_eq!(refusal(res).await, (401, "signature_mismatch".to_owned()));
    // The right key's signature of another message (this one's nonce).
    let other = m.replace("Sign in to Bridgekeeper.", "Sign in to Bridgekeeper!");
    let res = authenticate(&http, &server, &m, &wallet.sign(&other), None).await;
    assert_eq!(refusal(res).await, (401, "signature_mismatch".to_owned()));
    // Not a signature at all, or a bad v.
    let sig = wallet.sign(&m);
    let res = authenticate(&http, &server, &m, &sig[..100], None).await;
    assert_eq!(refusal(res).await, (400, "signature_malformed".to_owned()));
    let res = authenticate(&http, &server, &m, &format!("{}1d", &sig[..130]), None).await;
    assert_eq!(refusal(res).await, (400, "signature_recovery_invalid".to_owned()));
    assert_eq!(signed_in_as(&http, &server).await, None, "nobody was signed in");
    // v as 0/1 is accepted, and the nonce was not spent by the refusals.
    let v = u8::from_str_radix(&sig[130..], 16).unwrap() - 27;
    let res = authenticate(&http, &server, &m, &format!("{}{v:02x}", &sig[..130]), None).await;
    assert_eq!(res.status(), 201);
}

#[tokio::test]
async fn security_siwe_only_this_sites_pages_may_sign_in() {
    let server = Server::start();
    let wallet = Wallet::new(8);
    let http = client();
    let n = nonce(&http, &server).await;
    let m = Message::new(&server, &wallet.address(), &n).text();
    let sig = wallet.sign(&m);
    let body = json!({"message": m, "signature": sig});
    let url = server.url("/api/v1/auth/authenticate");
    // No Origin (a script not in a browser, or a browser that hides it): refused.
    let res = http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(refusal(res).await, (403, "origin_missing".to_owned()));
    // Another site's page (login CSRF).
    for origin in ["https://evil.example", "null", &format!("{}.evil.example", server.issuer)] {
        let res = http.post(&url).header("origin", origin).json(&body).send().await.unwrap();
        assert_eq!(refusal(res).await, (403, "origin_mismatch".to_owned()), "{origin}");
    }
    // A form's content type (what a cross-site form can send), even from this origin.
    let res = http
        .post(&url)
        .header("origin", server.issuer.clone())
        .header("content-type", "text/plain")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(res).await, (415, "unsupported_media_type".to_owned()));
    assert_eq!(signed_in_as(&http, &server).await, None);
    // A body far larger than any sign-in message is refused unread, as problem JSON. (On a
    // connection of its own: the server closes one whose body it did not read, and the next request
    // of the cookie jar's client must not be sent down it.)
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/auth/authenticate"))
        .header("origin", server.issuer.clone())
        .json(&json!({ "message": "x".repeat(64 * 1024), "signature": sig }))
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(res).await, (413, "payload_too_large".to_owned()));
    // From this site, the same request signs up.
    let res = authenticate(&http, &server, &m, &sig, None).await;
    assert_eq!(res.status(), 201);
    assert!(res.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("bk_session=")));
}

#[tokio::test]
async fn siwe_links_an_address_to_the_signed_in_account() {
    let server = Server::start();
    let person = Flow::signup(&server, "holder@example.com").await;
    let me = signed_in_as(&person.http, &server).await.expect("signed in");
    let wallet = Wallet::new(9);
    let n = nonce(&person.http, &server).await;
    let m = Message::new(&server, &wallet.address(), &n).text();
    let sig = wallet.sign(&m);
    // A signed-in browser must send its page's CSRF token.
    let res = authenticate(&person.http, &server, &m, &sig, None).await;
    assert_eq!(refusal(res).await, (403, "csrf_token_invalid".to_owned()));
    let res = authenticate(&person.http, &server, &m, &sig, Some("forged")).await;
    assert_eq!(refusal(res).await, (403, "csrf_token_invalid".to_owned()));
    let token = csrf(&person.http, &server).await;
    let res = authenticate(&person.http, &server, &m, &sig, Some(&token)).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(
        (v["accountId"].as_str(), v["linked"].clone(), v["created"].clone()),
        (Some(me.as_str()), json!(true), json!(false))
    );
    assert_eq!(
        signed_in_as(&person.http, &server).await.as_deref(),
        Some(me.as_str()),
        "still the same browser session"
    );
    let wallets = page(&person.http, &server, "/account/security/wallets").await.unwrap();
    assert!(wallets.contains(&wallet.address()), "listed on the wallets page");
    assert!(wallets.contains(r#"data-siwe="link""#), "with the button to link another");
    // A notice goes to the account's address.
    let outbox = server.dir.path().join("outbox");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = std::fs::read_dir(&outbox).into_iter().flatten().flatten().any(|f| {
            std::fs::read_to_string(f.path()).is_ok_and(|t| t.contains("An Ethereum wallet was added to your account"))
        });
        if found {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no notice mailed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Signed out, the wallet signs in to that account.
    let (status, v) = wallet_sign_in(&client(), &server, &wallet).await;
    assert_eq!((status, v["accountId"].as_str()), (200, Some(me.as_str())));
    // The account has a password, so the address may be removed; then it no longer signs in here.
    let res = person
        .http
        .post(server.url(&format!("/account/security/wallets/{}/unlink", wallet.address())))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["location"], "/account/security/wallets?notice=unlinked");
    let (status, v) = wallet_sign_in(&client(), &server, &wallet).await;
    assert_eq!(status, 201, "a new account for the address: {v}");
    assert_ne!(v["accountId"].as_str(), Some(me.as_str()));
}

#[tokio::test]
async fn security_siwe_linking_an_address_of_another_account_is_refused() {
    let server = Server::start();
    let wallet = Wallet::new(10);
    let owner = client();
    let (status, v) = wallet_sign_in(&owner, &server, &wallet).await;
    assert_eq!(status, 201);
    let owner_account = v["accountId"].as_str().unwrap().to_owned();
    let person = Flow::signup(&server, "other@example.com").await;
    let me = signed_in_as(&person.http, &server).await.unwrap();
    let token = csrf(&person.http, &server).await;
    let n = nonce(&person.http, &server).await;
    let m = Message::new(&server, &wallet.address(), &n).text();
    let res = authenticate(&person.http, &server, &m, &wallet.sign(&m), Some(&token)).await;
    assert_eq!(refusal(res).await, (409, "address_linked_elsewhere".to_owned()));
    // Nothing changed: this browser is still its own account, which holds no address; the address
    // is still the other account's.
    assert_eq!(signed_in_as(&person.http, &server).await.as_deref(), Some(me.as_str()));
    let wallets = page(&person.http, &server, "/account/security/wallets").await.unwrap();
    assert!(!wallets.contains(&wallet.address()));
    let (status, v) = wallet_sign_in(&client(), &server, &wallet).await;
    assert_eq!((status, v["accountId"].as_str()), (200, Some(owner_account.as_str())));
    // Nor can the other account remove it.
    let res = person
        .http
        .post(server.url(&format!("/account/security/wallets/{}/unlink", wallet.address())))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["location"], "/account/security/wallets?error=not_found");
    let (status, _) = wallet_sign_in(&client(), &server, &wallet).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn security_siwe_disabled_account_cannot_sign_in() {
    let server = Server::start();
    let wallet = Wallet::new(11);
    let browser = client();
    let (status, v) = wallet_sign_in(&browser, &server, &wallet).await;
    assert_eq!(status, 201);
    let account = v["accountId"].as_str().unwrap().to_owned();
    let op = operator_token(&server);
    let res = client()
        .post(server.url(&format!("/api/v1/admin/accounts/{account}/disable")))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(signed_in_as(&browser, &server).await, None, "its session ended");
    let fresh = client();
    let n = nonce(&fresh, &server).await;
    let m = Message::new(&server, &wallet.address(), &n).text();
    let res = authenticate(&fresh, &server, &m, &wallet.sign(&m), None).await;
    assert_eq!(refusal(res).await, (403, "account_disabled".to_owned()));
    assert_eq!(signed_in_as(&fresh, &server).await, None);
    // Nor does the old browser get in again.
    let res = authenticate(&browser, &server, &m, &wallet.sign(&m), None).await;
    assert_eq!(refusal(res).await, (403, "account_disabled".to_owned()));
}

#[tokio::test]
async fn siwe_respects_a_required_second_factor() {
    let server = Server::start_with(&[("BRIDGEKEEPER_ACCOUNTS__REQUIRE_SECOND_FACTOR", "true")]);
    let wallet = Wallet::new(12);
    let http = client();
    let (status, v) = wallet_sign_in(&http, &server, &wallet).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["secondFactorRequired"], true);
    assert!(v["redirect"].as_str().unwrap().starts_with("/login/second-factor"), "{v}");
    // Not signed in until the authenticator is set up.
    assert_eq!(signed_in_as(&http, &server).await, None);
    let page = http.get(server.url(v["redirect"].as_str().unwrap())).send().await.unwrap();
    assert_eq!(page.status(), 200, "the enrolment page, for this browser");
}

#[tokio::test]
async fn siwe_can_be_turned_off_and_accounts_left_uncreated() {
    let off = Server::start_with(&[("BRIDGEKEEPER_SIWE__ENABLED", "false")]);
    let http = client();
    assert_eq!(http.get(off.url("/api/v1/auth/nonce")).send().await.unwrap().status(), 404);
    let login = http.get(off.url("/login")).send().await.unwrap().text().await.unwrap();
    assert!(!login.contains("data-siwe"), "no button");
    drop(off);
    let closed = Server::start_with(&[("BRIDGEKEEPER_SIWE__CREATE_ACCOUNTS", "false")]);
    let login = http.get(closed.url("/login")).send().await.unwrap().text().await.unwrap();
    assert!(
        login.contains(r#"data-siwe="sign_in""#) && login.contains("/static/siwe.js"),
        "the button, hidden until a wallet shows"
    );
    let script = http.get(closed.url("/static/siwe.js")).send().await.unwrap();
    assert_eq!(script.status(), 200);
    assert!(script.text().await.unwrap().contains("personal_sign"));
    let wallet = Wallet::new(13);
    let n = nonce(&http, &closed).await;
    let m = Message::new(&closed, &wallet.address(), &n).text();
    let res = authenticate(&http, &closed, &m, &wallet.sign(&m), None).await;
    assert_eq!(refusal(res).await, (403, "sign_up_closed".to_owned()));
}

#[tokio::test]
async fn security_siwe_failures_count_against_the_source() {
    let server = Server::start_with(&[("BRIDGEKEEPER_LIMITS__LOGIN_FAILURES_PER_SOURCE_PER_MINUTE", "3")]);
    let (wallet, thief) = (Wallet::new(14), Wallet::new(15));
    let http = client();
    let n = nonce(&http, &server).await;
    let m = Message::new(&server, &wallet.address(), &n).text();
    for _ in 0..3 {
        let res = authenticate(&http, &server, &m, &thief.sign(&m), None).await;
        assert_eq!(refusal(res).await, (401, "signature_mismatch".to_owned()));
    }
    // Past the limit, even the right signature waits (and the nonce is still unspent).
    let res = authenticate(&http, &server, &m, &wallet.sign(&m), None).await;
    assert!(res.headers().get("retry-after").is_some());
    assert_eq!(refusal(res).await, (429, "too_many_requests".to_owned()));
    assert_eq!(signed_in_as(&http, &server).await, None);
}

/// `0x1234…abcd`, as the server names a wallet account where an email address would be.
fn short(address: &str) -> String {
    format!("{}…{}", &address[..6], &address[address.len() - 4..])
}

/// The email form of a signed-in browser: its answer's status and page.
async fn add_email(http: &reqwest::Client, server: &Server, email: &str, csrf_token: &str) -> (u16, String) {
    let res = http
        .post(server.url("/account/email"))
        .form(&[("csrf_token", csrf_token), ("new_email", email)])
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// The account's email and whether it is verified (the operator's view: the placeholder included).
async fn stored_email(server: &Server, account: &str) -> (String, bool) {
    let v: Value = client()
        .get(server.url(&format!("/api/v1/admin/accounts/{account}")))
        .bearer_auth(operator_token(server))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (v["email"].as_str().unwrap().to_owned(), v["emailVerified"].as_bool().unwrap())
}

#[tokio::test]
async fn siwe_wallet_account_adds_an_email_verified_by_its_link() {
    use crate::account_email::{link_in, outbox, wait_for_mail};
    let server = Server::start();
    let wallet = Wallet::new(21);
    let http = client();
    let (status, v) = wallet_sign_in(&http, &server, &wallet).await;
    assert_eq!(status, 201, "{v}");
    let account = v["accountId"].as_str().unwrap().to_owned();
    // The security page offers it; the form asks for no password (the account has none).
    let security = page(&http, &server, "/account/security").await.unwrap();
    assert!(security.contains("Add an email address"), "{security}");
    let form = page(&http, &server, "/account/email").await.unwrap();
    assert!(form.contains("has no email address yet") && !form.contains("current_password"), "{form}");
    assert!(!form.contains("@invalid"), "the placeholder is never shown");
    let token = input(&form, "csrf_token");

    // Bad input changes nothing and sends nothing.
    assert_eq!(add_email(&http, &server, "not an address", &token).await.0, 400);
    let (status, _) = add_email(&http, &server, "wallet-owner@example.com", "forged").await;
    assert!(status == 400 || status == 403, "a forged CSRF token is refused: {status}");
    assert!(outbox(&server).is_empty(), "nothing was sent: {:?}", outbox(&server));

    let (status, body) = add_email(&http, &server, "Wallet-Owner@Example.com", &token).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("We sent a link to wallet-owner@example.com"), "{body}");
    let message = wait_for_mail(&server, "wallet-owner@example.com", "Confirm your new email address").await;
    assert!(!message.contains("@invalid") && message.contains(&short(&wallet.address())), "{message}");
    // Until the link is followed the account keeps its placeholder (and shows no address).
    let (email, _) = stored_email(&server, &account).await;
    assert!(email.ends_with("@invalid"), "{email}");
    let me: Value = http.get(server.url("/api/v1/account")).send().await.unwrap().json().await.unwrap();
    assert!(me.get("email").is_none(), "{me}");

    let link = link_in(&message, "/confirm-email-change");
    let res = client().get(server.url(&link)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("now uses wallet-owner@example.com"));
    assert_eq!(stored_email(&server, &account).await, ("wallet-owner@example.com".to_owned(), true));
    let me: Value = http.get(server.url("/api/v1/account")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["email"], "wallet-owner@example.com", "{me}");
    // Nothing was ever addressed to the placeholder.
    assert!(outbox(&server).iter().all(|m| !m.contains("@invalid")), "{:?}", outbox(&server));
    // The wallet still signs in to the same account.
    let (_, v) = wallet_sign_in(&client(), &server, &wallet).await;
    assert_eq!(v["accountId"], account.as_str());
    // Now that it has an address (and still no password), changing it goes the ordinary way: the
    // form asks for the current password, which this account cannot give.
    let form = page(&http, &server, "/account/email").await.unwrap();
    assert!(form.contains("current_password"), "{form}");
    let (status, _) = add_email(&http, &server, "another@example.com", &input(&form, "csrf_token")).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn security_siwe_wallet_account_cannot_take_another_accounts_email() {
    use crate::account_email::{link_in, wait_for_mail};
    let server = Server::start();
    Flow::signup(&server, "taken@example.com").await;
    let wallet = Wallet::new(22);
    let http = client();
    let (_, v) = wallet_sign_in(&http, &server, &wallet).await;
    let account = v["accountId"].as_str().unwrap().to_owned();
    let form = page(&http, &server, "/account/email").await.unwrap();
    // The answer does not tell that the address is taken (no oracle); its link then changes nothing.
    let (status, body) = add_email(&http, &server, "taken@example.com", &input(&form, "csrf_token")).await;
    assert_eq!(status, 200, "{body}");
    let link = link_in(
        &wait_for_mail(&server, "taken@example.com", "Confirm your new email address").await,
        "/confirm-email-change",
    );
    let res = client().get(server.url(&link)).send().await.unwrap();
    assert_eq!(res.status(), 409);
    let (email, verified) = stored_email(&server, &account).await;
    assert!(email.ends_with("@invalid") && !verified, "the placeholder stays: {email}");
    // The signed-out browser cannot use the form at all.
    let res = client().post(server.url("/account/email")).form(&[("new_email", "x@example.com")]).send().await.unwrap();
    assert_ne!(res.status(), 200);
}

#[tokio::test]
async fn siwe_wallet_account_passkey_and_authenticator_show_the_address_not_the_placeholder() {
    // Passkeys need a host name as the issuer (WebAuthn refuses an IP address).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let issuer = format!("http://localhost:{port}");
    let listen = format!("127.0.0.1:{port}");
    let server =
        Server::start_with(&[("BRIDGEKEEPER_LISTEN", listen.as_str()), ("BRIDGEKEEPER_ISSUER", issuer.as_str())]);
    let wallet = Wallet::new(23);
    let http = client();
    let (status, v) = wallet_sign_in(&http, &server, &wallet).await;
    assert_eq!(status, 201, "{v}");
    let label = short(&wallet.address());
    let res = http
        .post(server.url("/account/security/passkeys/options"))
        .header("x-csrf-token", csrf(&http, &server).await)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let reg: Value = res.json().await.unwrap();
    let user = &reg["options"]["publicKey"]["user"];
    assert_eq!((user["name"].as_str(), user["displayName"].as_str()), (Some(label.as_str()), Some(label.as_str())));
    // The authenticator app's label on the enrolment page.
    let enrol = page(&http, &server, "/account/security/totp").await.unwrap();
    assert!(enrol.contains(&format!("adding {label} to an authenticator app")), "{enrol}");
    assert!(!enrol.contains("@invalid"), "{enrol}");
}

#[tokio::test]
async fn siwe_userinfo_and_id_token_omit_the_placeholder_email() {
    let server = Server::start();
    let wallet = Wallet::new(24);
    let http = client();
    let (_, v) = wallet_sign_in(&http, &server, &wallet).await;
    let account = v["accountId"].as_str().unwrap().to_owned();
    // The browser is signed in by its wallet: the authorization flow goes straight to consent.
    let flow = Flow { http, base: server.base.clone(), email: String::new(), password: String::new() };
    let (_, tokens) = flow.login_client("openid email profile").await;
    let (_, claims) = crate::harness::jwt_parts(tokens.id_token.as_deref().expect("an ID token"));
    assert_eq!(claims["sub"], account.as_str());
    assert!(claims.get("email").is_none() && claims.get("email_verified").is_none(), "{claims}");
    let res = client().get(server.url("/api/v1/auth/userinfo")).bearer_auth(&tokens.access).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let info: Value = res.json().await.unwrap();
    assert_eq!(info["sub"], account.as_str());
    assert!(info.get("email").is_none() && info.get("email_verified").is_none(), "{info}");
    assert!(!info.to_string().contains("@invalid") && !claims.to_string().contains("@invalid"));
}
