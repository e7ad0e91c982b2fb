//! Starts the real binary and gives tests an HTTP client for it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An OpenID Connect provider run by the tests.
pub mod idp;

pub struct Server {
    child: Child,
    /// Where requests go (`http://127.0.0.1:PORT`).
    pub base: String,
    /// The issuer the server was configured with (equal to `base` unless set).
    pub issuer: String,
    pub dir: tempfile::TempDir,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Database URL and master key when the suite runs on PostgreSQL (empty on SQLite); admin
    /// commands need them too.
    pub db_env: Vec<(String, String)>,
    /// The first server of a database drops its schema on exit; peers sharing it do not.
    owns_schema: bool,
}

/// Is the suite running on PostgreSQL? (`BRIDGEKEEPER_TEST_BACKEND=postgres`, with
/// `BRIDGEKEEPER_TEST_POSTGRES_URL`; an unreachable database fails the tests.)
pub fn on_postgres() -> bool {
    std::env::var("BRIDGEKEEPER_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// A fresh schema per server on PostgreSQL, with a shared master key.
fn backend_env() -> Vec<(String, String)> {
    if !on_postgres() {
        return Vec::new();
    }
    let base = std::env::var("BRIDGEKEEPER_TEST_POSTGRES_URL")
        .expect("BRIDGEKEEPER_TEST_POSTGRES_URL for the postgres backend");
    let schema = format!("bk_it_{}", uuid_like());
    let admin_url = base.clone();
    let s = schema.clone();
    static SWEPT: std::sync::Once = std::sync::Once::new();
    let sweep = !SWEPT.is_completed();
    SWEPT.call_once(|| {});
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let pool = sqlx::postgres::PgPool::connect(&admin_url).await.expect("PostgreSQL is unreachable");
            if sweep {
                // Schemas left by earlier runs (tests that inspect a stopped server's database keep theirs).
                let mine = format!("bk_it_{}_%", std::process::id());
                let old: Vec<String> = sqlx::query_scalar(
                    "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'bk\\_it\\_%' AND nspname NOT LIKE $1",
                )
                .bind(mine)
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
                // Another test run on this machine may be using its schemas right now: only those of a
                // process that is gone are left over.
                let alive = |name: &str| {
                    name.strip_prefix("bk_it_")
                        .and_then(|rest| rest.split('_').next())
                        .is_some_and(|pid| std::path::Path::new("/proc").join(pid).exists())
                };
                for o in old.into_iter().filter(|o| !alive(o)) {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {o} CASCADE")))
                        .execute(&pool)
                        .await;
                }
            }
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {s}"))).execute(&pool).await.unwrap();
        });
    })
    .join()
    .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    vec![
        ("BRIDGEKEEPER_DATABASE_URL".into(), format!("{base}{sep}options=-c%20search_path%3D{schema}")),
        ("BRIDGEKEEPER_MASTER_KEY".into(), "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into()),
    ]
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{}_{}_{}", std::process::id(), t % 1_000_000_000_000, n)
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_bridgekeeper")
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Starts `bridgekeeper serve` with extra environment variables.
    pub fn start_with(env: &[(&str, &str)]) -> Server {
        Self::spawn(env, None)
    }

    /// A second instance on the same database and keys (a peer behind the same load balancer).
    pub fn start_peer(&self, env: &[(&str, &str)]) -> Server {
        Self::spawn(env, Some(self))
    }

    fn spawn(env: &[(&str, &str)], peer_of: Option<&Server>) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db_env, data_dir) = match peer_of {
            Some(p) => (p.db_env.clone(), p.dir.path().to_owned()),
            None => (backend_env(), dir.path().to_owned()),
        };
        let mut cmd = Command::new(bin());
        // A test may name the address (an issuer on localhost needs its port known first).
        let listen = env.iter().find(|(k, _)| *k == "BRIDGEKEEPER_LISTEN").map_or("127.0.0.1:0", |(_, v)| *v);
        cmd.args(["serve", "--listen", listen, "--data-dir"])
            .arg(&data_dir)
            .env("BRIDGEKEEPER_LOG_FORMAT", "json")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in &db_env {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn bridgekeeper");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("\"listening\"") {
                    let _ = tx.send(line.clone());
                }
                log2.lock().unwrap().push(line);
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("server did not report listening within 60 s");
        let v: serde_json::Value = serde_json::from_str(&line).expect("json log line");
        let issuer = v["fields"]["issuer"].as_str().expect("issuer field").to_owned();
        // Requests go to the address the server listens on; the issuer may be a public URL in front of it.
        let base = format!("http://{}", v["fields"]["addr"].as_str().expect("addr field"));
        Server { child, base, issuer, dir, log, db_env, owns_schema: peer_of.is_none() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Everything the server wrote to standard output so far.
    pub fn logs(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// A `bridgekeeper` command on this server's database (admin commands).
    pub fn command(&self) -> Command {
        let mut c = Command::new(bin());
        for (k, v) in &self.db_env {
            c.env(k, v);
        }
        c
    }

    /// The database URL this server uses.
    pub fn db_url(&self) -> String {
        self.db_env
            .iter()
            .find(|(k, _)| k == "BRIDGEKEEPER_DATABASE_URL")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| format!("sqlite://{}/bridgekeeper.db", self.dir.path().display()))
    }

    /// Stops the server cleanly and hands over its data directory (for inspection after shutdown).
    pub fn stop(mut self) -> (std::process::ExitStatus, tempfile::TempDir) {
        let status = self.sigterm_and_wait();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        // The caller inspects the database after shutdown: keep the schema (swept on the next run).
        self.db_env.clear();
        (status, dir)
    }

    /// SIGKILL: the process dies mid-request (crash tests).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.sigterm_and_wait()
    }

    fn sigterm_and_wait(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not stop within 20 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Drop this server's PostgreSQL schema (the URL names it in search_path).
        if !self.owns_schema {
            return;
        }
        if let Some(url) = self.db_env.iter().find(|(k, _)| k == "BRIDGEKEEPER_DATABASE_URL").map(|(_, v)| v.clone())
            && let (Some(schema), Ok(base)) =
                (url.split("search_path%3D").nth(1).map(str::to_owned), std::env::var("BRIDGEKEEPER_TEST_POSTGRES_URL"))
        {
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                rt.block_on(async {
                    let pool = sqlx::postgres::PgPool::connect(&base).await.ok()?;
                    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")))
                        .execute(&pool)
                        .await
                        .ok()
                })
            })
            .join();
        }
    }
}

/// An HTTP client that never follows redirects (tests look at every hop) and keeps cookies.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().expect("client")
}

/// Values of `<input … name="N" … value="V">` in a page (values HTML-unescaped).
pub fn form_inputs(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for tag in html.split("<input").skip(1) {
        let tag = tag.split('>').next().unwrap_or("");
        let attr = |name: &str| {
            let key = format!("{name}=\"");
            tag.find(&key).map(|i| {
                let rest = &tag[i + key.len()..];
                unescape(&rest[..rest.find('"').unwrap_or(rest.len())])
            })
        };
        if let Some(n) = attr("name") {
            out.push((n, attr("value").unwrap_or_default()));
        }
    }
    out
}

pub fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#x2f;", "/")
        .replace("&amp;", "&")
}

pub fn input(html: &str, name: &str) -> String {
    form_inputs(html)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no input {name} in page:\n{html}"))
}

pub fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location header (status {})", res.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

pub fn query_param(url: &str, name: &str) -> Option<String> {
    let u = url::Url::parse(url).unwrap();
    u.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

pub const VERIFIER: &str = "test-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";

pub fn challenge(verifier: &str) -> String {
    use base64::Engine;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref())
}

/// Decodes a JWT's header and payload without verifying (tests verify signatures separately).
pub fn jwt_parts(token: &str) -> (serde_json::Value, serde_json::Value) {
    use base64::Engine;
    let mut it = token.split('.');
    let dec =
        |s: &str| serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
    (dec(it.next().unwrap()), dec(it.next().unwrap()))
}

/// A person with a browser (cookie jar) and an OAuth client, driving the server as a real client would.
pub struct Flow {
    pub http: reqwest::Client,
    pub base: String,
    pub email: String,
    pub password: String,
}

pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub scope: String,
    /// With the scope `openid`.
    pub id_token: Option<String>,
}

impl Flow {
    /// Signs up a new account through the sign-up page, then signs in (sign-up does not sign in: its
    /// answer must not tell whether the email was registered already).
    pub async fn signup(server: &Server, email: &str) -> Flow {
        let http = client();
        let page = http.get(server.url("/signup")).send().await.unwrap().text().await.unwrap();
        let password = "correct horse battery staple".to_owned();
        let res = http
            .post(server.url("/signup"))
            .form(&[
                ("csrf_token", input(&page, "csrf_token")),
                ("next", "/".into()),
                ("email", email.into()),
                ("password", password.clone()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "sign-up should answer 303");
        let login = http.get(server.url(&location(&res))).send().await.unwrap().text().await.unwrap();
        let res = http
            .post(server.url("/login"))
            .form(&[
                ("csrf_token", input(&login, "csrf_token")),
                ("next", "/".into()),
                ("email", email.into()),
                ("password", password.clone()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "sign-in after sign-up should answer 303");
        Flow { http, base: server.base.clone(), email: email.to_owned(), password }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Registers a new public client by DCR; returns its client_id. Each call names its client
    /// differently, so that it is a new client (identical registrations reuse one).
    pub async fn register(&self, redirect_uri: &str, scope: &str) -> String {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let res = reqwest::Client::new()
            .post(self.url("/api/v1/auth/register"))
            .json(&serde_json::json!({
                "client_name": format!("Test client {n}"),
                "redirect_uris": [redirect_uri],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
                "scope": scope,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let v: serde_json::Value = res.json().await.unwrap();
        v["client_id"].as_str().unwrap().to_owned()
    }

    pub fn authorize_url(&self, client_id: &str, redirect_uri: &str, scope: &str, state: &str) -> String {
        let mut u = url::Url::parse(&self.url("/api/v1/auth/authorize")).unwrap();
        u.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", scope)
            .append_pair("state", state)
            .append_pair("code_challenge", &challenge(VERIFIER))
            .append_pair("code_challenge_method", "S256");
        u.to_string()
    }

    /// Follows an authorization request through login and consent (approving); returns the final
    /// redirect to the client (with `code`, `state` and `iss`).
    pub async fn approve(&self, authorize_url: &str) -> String {
        self.decide(authorize_url, "approve").await
    }

    pub async fn decide(&self, authorize_url: &str, decision: &str) -> String {
        let mut url = authorize_url.to_owned();
        for _ in 0..8 {
            let res = self.http.get(&url).send().await.unwrap();
            if res.status() == 200 {
                let page = res.text().await.unwrap();
                if page.contains("action=\"/login\"") {
                    let r = self
                        .http
                        .post(self.url("/login"))
                        .form(&[
                            ("csrf_token", input(&page, "csrf_token")),
                            ("next", input(&page, "next")),
                            ("email", self.email.clone()),
                            ("password", self.password.clone()),
                        ])
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 303, "login should answer 303");
                    url = self.url(&location(&r));
                    continue;
                }
                assert!(page.contains("action=\"/consent\""), "expected the consent page:\n{page}");
                let mut fields = form_inputs(&page);
                fields.push(("decision".into(), decision.into()));
                let r = self.http.post(self.url("/consent")).form(&fields).send().await.unwrap();
                assert_eq!(r.status(), 303, "consent should answer 303");
                return location(&r);
            }
            assert_eq!(res.status(), 303, "unexpected status {} at {url}", res.status());
            let loc = location(&res);
            if loc.starts_with('/') {
                url = self.url(&loc);
            } else if loc.starts_with(&self.base) {
                url = loc;
            } else {
                return loc;
            }
        }
        panic!("too many redirects");
    }

    pub async fn token(&self, form: &[(&str, &str)]) -> reqwest::Response {
        reqwest::Client::new().post(self.url("/api/v1/auth/token")).form(form).send().await.unwrap()
    }

    pub async fn exchange_code(&self, client_id: &str, redirect_uri: &str, code: &str) -> Tokens {
        let res = self
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("client_id", client_id),
                ("code_verifier", VERIFIER),
            ])
            .await;
        assert_eq!(res.status(), 200, "code exchange failed: {}", res.text().await.unwrap());
        tokens(res).await
    }

    /// The whole flow: register, authorize, approve, exchange.
    pub async fn login_client(&self, scope: &str) -> (String, Tokens) {
        let redirect = "http://127.0.0.1:9/callback";
        let client_id = self.register(redirect, scope).await;
        let back = self.approve(&self.authorize_url(&client_id, redirect, scope, "st")).await;
        let code = query_param(&back, "code").expect("code in redirect");
        (client_id.clone(), self.exchange_code(&client_id, redirect, &code).await)
    }

    pub async fn refresh(&self, client_id: &str, refresh: &str) -> reqwest::Response {
        self.token(&[("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", client_id)]).await
    }

    /// A one-shot JSON-RPC request to /mcp with a bearer token (`X-Response-Format: json`: no session needed).
    pub async fn mcp(&self, token: &str, method: &str, params: serde_json::Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.url("/mcp"))
            .bearer_auth(token)
            .header("Accept", "application/json, text/event-stream")
            .header("X-Response-Format", "json")
            .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            .send()
            .await
            .unwrap()
    }

    /// `initialize` as an MCP client does it; returns the `Mcp-Session-Id`.
    pub async fn mcp_initialize(&self, token: &str, version: &str) -> String {
        let res = reqwest::Client::new()
            .post(self.url("/mcp"))
            .bearer_auth(token)
            .header("Accept", "application/json, text/event-stream")
            .json(&serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let sid = res.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["result"]["protocolVersion"], version);
        sid
    }

    /// A request inside an MCP session, as the SDKs send it.
    pub async fn mcp_in(
        &self,
        token: &str,
        session: &str,
        version: &str,
        method: &str,
        params: serde_json::Value,
    ) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.url("/mcp"))
            .bearer_auth(token)
            .header("Accept", "application/json, text/event-stream")
            .header("Mcp-Session-Id", session)
            .header("MCP-Protocol-Version", version)
            .json(&serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}))
            .send()
            .await
            .unwrap()
    }
}

pub async fn tokens(res: reqwest::Response) -> Tokens {
    let v: serde_json::Value = res.json().await.unwrap();
    Tokens {
        access: v["access_token"].as_str().unwrap().to_owned(),
        refresh: v["refresh_token"].as_str().unwrap().to_owned(),
        scope: v["scope"].as_str().unwrap().to_owned(),
        id_token: v["id_token"].as_str().map(str::to_owned),
    }
}

/// Creates an operator token with the CLI (same data directory as the server).
pub fn operator_token(server: &Server) -> String {
    let out = server
        .command()
        .args(["admin", "token", "create", "--name", "test-operator", "--format", "json", "--data-dir"])
        .arg(server.dir.path())
        .output()
        .expect("run admin token create");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on standard output");
    let token = v["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("bko_"), "{v}");
    token
}

/// A tiny real PNG (1x1), as a data URI.
pub const PNG_DATA_URI: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

impl Flow {
    /// Authorizes `client_id` with extra authorize parameters, approves, and exchanges the code
    /// (with HTTP Basic when a secret is given).
    pub async fn login_with(
        &self,
        client_id: &str,
        secret: Option<&str>,
        redirect_uri: &str,
        scope: &str,
        extra: &[(&str, &str)],
    ) -> serde_json::Value {
        let mut u = url::Url::parse(&self.authorize_url(client_id, redirect_uri, scope, "st")).unwrap();
        for (k, v) in extra {
            u.query_pairs_mut().append_pair(k, v);
        }
        let back = self.approve(u.as_str()).await;
        let code = query_param(&back, "code").unwrap_or_else(|| panic!("no code in {back}"));
        let mut req = reqwest::Client::new().post(self.url("/api/v1/auth/token"));
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code),
            ("redirect_uri", redirect_uri.to_owned()),
            ("code_verifier", VERIFIER.to_owned()),
        ];
        match secret {
            Some(s) => req = req.basic_auth(client_id, Some(s)),
            None => form.push(("client_id", client_id.to_owned())),
        }
        let res = req.form(&form).send().await.unwrap();
        assert_eq!(res.status(), 200, "token exchange failed");
        res.json().await.unwrap()
    }
}

/// `whoami` through /mcp with any bearer credential; the structured result.
pub async fn whoami(base: &str, token: &str) -> (u16, serde_json::Value) {
    let res = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .bearer_auth(token)
        .header("X-Response-Format", "json")
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let v: serde_json::Value = res.json().await.unwrap_or_default();
    (status, v["result"]["structuredContent"].clone())
}
