//! The `mcp` kind: a remote MCP server that protects itself with OAuth (MCP authorization,
//! 2025-11-25). Bridgekeeper is the OAuth client here, acting for one tenant:
//!
//! 1. an unauthenticated request to the server answers 401 with `WWW-Authenticate`, naming its
//!    protected-resource metadata (RFC 9728) and maybe the scope it wants; without that header the
//!    well-known locations are tried, path first;
//! 2. the metadata names the authorization server, whose own metadata (RFC 8414, then OpenID
//!    discovery, path-aware) must name itself exactly and must offer PKCE S256;
//! 3. Bridgekeeper is known there by its client ID metadata document (`/.well-known/oauth-client`)
//!    when the server accepts those, else by a client the operator registered by hand, else by a
//!    dynamic registration (RFC 7591) that is kept per issuer and reused;
//! 4. the authorization request carries PKCE, `state` and `resource` (RFC 8707); the answer's
//!    `iss` (RFC 9207) is checked; the tokens are sealed together with what a later refresh needs.
//!
//! Every request goes through the request-forgery-safe outbound client: an MCP server's metadata
//! can name any URL, and none of them may point this server at its own network.

use bk_outbound::{Answer, FetchError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;
use zeroize::Zeroize;

use crate::catalog::{ClientCredentials, McpServer, OAuth2, ProviderSecret, TokenAuth, TokenBody};
use crate::oauth2::Upstream;

/// The MCP protocol version the connect probe speaks.
const PROBE_PROTOCOL_VERSION: &str = "2025-11-25";

/// Why a remote MCP server cannot be connected; each says what the operator or tenant can act on.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("the MCP server could not be reached: {0}")]
    Unreachable(String),
    #[error("the MCP server does not ask for authorization (it answered HTTP {0} without a token)")]
    NotProtected(u16),
    #[error("the MCP server's protected-resource metadata could not be found or read: {0}")]
    NoResourceMetadata(String),
    #[error("the protected-resource metadata is for {found:?}, not for this server ({expected})")]
    ResourceMismatch { found: String, expected: String },
    #[error("the authorization server's metadata could not be found or read at {0}")]
    NoServerMetadata(String),
    #[error("the authorization server's metadata names the issuer {found:?}, not {expected:?}")]
    IssuerMismatch { found: String, expected: String },
    #[error("the authorization server does not offer PKCE with S256, which MCP requires")]
    NoPkce,
    #[error(
        "Bridgekeeper cannot identify itself to this authorization server: it accepts neither client metadata \
         documents nor dynamic registration, and no client is configured for the provider"
    )]
    NoClientIdentity,
    #[error("dynamic client registration failed: {0}")]
    Registration(String),
}

/// How Bridgekeeper is known to the upstream authorization server.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    /// Its client ID metadata document URL is the client id.
    Document,
    /// The operator's client from the catalog (`[mcp] client_id`, `client_secret`).
    Preregistered,
    /// A dynamic registration, kept per issuer and redirect URI.
    Dynamic,
}

/// What discovery found and the flow needs to finish: no secret in it (it is stored with the flow).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct McpAuth {
    pub issuer: String,
    pub authorize_url: String,
    pub token_url: String,
    pub revoke_url: Option<String>,
    /// The RFC 8707 resource: the protected-resource metadata's `resource`.
    pub resource: String,
    pub scopes: Vec<String>,
    pub client_id: String,
    pub token_auth: TokenAuth,
    pub registration: Registration,
    /// The server says it sends `iss` in authorization responses (RFC 9207): then it must.
    pub iss_supported: bool,
}

/// What a connection keeps (sealed, with its tokens) to refresh and revoke later, even if the
/// registration it was made under is replaced meanwhile.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct McpClient {
    pub auth: McpAuth,
    pub client_secret: Option<String>,
}

impl Zeroize for McpClient {
    fn zeroize(&mut self) {
        self.client_secret.zeroize();
    }
}

impl Drop for McpClient {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl McpAuth {
    /// The OAuth client for this server, as the `oauth2` code drives it.
    pub fn oauth2(&self, client_secret: Option<&str>) -> Result<OAuth2, McpError> {
        let parse = |u: &str| Url::parse(u).map_err(|_| McpError::NoServerMetadata(u.chars().take(200).collect()));
        Ok(OAuth2 {
            // `iss` is checked by `check_iss` (whether it must be present depends on the server).
            issuer: None,
            authorize_url: parse(&self.authorize_url)?,
            token_url: parse(&self.token_url)?,
            revoke_url: self.revoke_url.as_deref().map(parse).transpose()?,
            userinfo_url: None,
            scopes: self.scopes.clone(),
            scope_separator: " ".into(),
            scope_param: "scope".into(),
            // OpenID Connect Core §11: `offline_access` is honoured only with `prompt=consent`
            // (providers drop it otherwise, and no refresh token comes).
            authorize_params: if self.scopes.iter().any(|s| s == "offline_access") {
                [("prompt".to_owned(), "consent".to_owned())].into()
            } else {
                Default::default()
            },
            pkce: true,
            token_auth: self.token_auth,
            token_body: TokenBody::Form,
            token_path: None,
            client: ClientCredentials {
                client_id: Some(self.client_id.clone()),
                client_secret: client_secret.map(|s| ProviderSecret::new(s.to_owned())),
                missing: None,
            },
            resource: Some(self.resource.clone()),
        })
    }
}

impl McpAuth {
    /// RFC 9207 as MCP applies it: an `iss` that is present must be exactly the issuer (no
    /// normalisation), and a server that advertises it must send it.
    pub fn check_iss(&self, iss: Option<&str>) -> Result<(), &'static str> {
        match iss {
            Some(i) if i == self.issuer => Ok(()),
            Some(_) => Err("the answer came from another authorization server than the one asked (iss)"),
            None if self.iss_supported => Err("the authorization server did not name itself in its answer (iss)"),
            None => Ok(()),
        }
    }
}

/// What the server and its authorization server said, before Bridgekeeper has a client id there.
pub struct Discovery {
    pub issuer: String,
    pub authorize_url: String,
    pub token_url: String,
    pub revoke_url: Option<String>,
    pub registration_endpoint: Option<Url>,
    pub resource: String,
    pub scopes: Vec<String>,
    pub accepts_documents: bool,
    /// `token_endpoint_auth_methods_supported`, when the server listed them.
    pub token_auth_methods: Option<Vec<String>>,
    pub iss_supported: bool,
}

impl Discovery {
    /// The client authentication to use with a client secret the operator configured.
    pub fn secret_auth(&self) -> TokenAuth {
        match &self.token_auth_methods {
            // RFC 8414: absent means client_secret_basic.
            None => TokenAuth::Basic,
            Some(m) if m.iter().any(|x| x == "client_secret_basic") => TokenAuth::Basic,
            Some(m) if m.iter().any(|x| x == "client_secret_post") => TokenAuth::Body,
            Some(m) if m.iter().any(|x| x == "none") => TokenAuth::None,
            Some(_) => TokenAuth::Basic,
        }
    }

    pub fn with_client(self, client_id: String, token_auth: TokenAuth, registration: Registration) -> McpAuth {
        McpAuth {
            issuer: self.issuer,
            authorize_url: self.authorize_url,
            token_url: self.token_url,
            revoke_url: self.revoke_url,
            resource: self.resource,
            scopes: self.scopes,
            client_id,
            token_auth,
            registration,
            iss_supported: self.iss_supported,
        }
    }
}

/// What a dynamic registration gave.
pub struct Registered {
    pub client_id: String,
    pub client_secret: Option<zeroize::Zeroizing<String>>,
    pub token_auth: TokenAuth,
    /// `client_secret_expires_at` (0 or absent: never).
    pub secret_expires_at: Option<i64>,
}

/// Parameters of a `WWW-Authenticate: Bearer …` challenge (RFC 6750 §3, RFC 9728 §5.1).
#[derive(Debug, Default, PartialEq)]
pub struct Challenge {
    pub resource_metadata: Option<String>,
    pub scope: Option<String>,
    pub error: Option<String>,
}

/// Reads the Bearer challenge among the header's values (auth-params: token or quoted string).
pub fn bearer_challenge(values: &[&str]) -> Option<Challenge> {
    for v in values {
        let v = v.trim();
        let Some(rest) = v.strip_prefix("Bearer").or_else(|| v.strip_prefix("bearer")) else { continue };
        if !(rest.is_empty() || rest.starts_with(' ')) {
            continue;
        }
        let mut c = Challenge::default();
        let mut s = rest.trim_start();
        while !s.is_empty() {
            let Some(eq) = s.find('=') else { break };
            let name = s[..eq].trim().trim_start_matches(',').trim().to_ascii_lowercase();
            s = s[eq + 1..].trim_start();
            let value;
            if let Some(q) = s.strip_prefix('"') {
                let mut out = String::new();
                let mut chars = q.char_indices();
                let mut end = q.len();
                while let Some((i, ch)) = chars.next() {
                    match ch {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                out.push(n);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        _ => out.push(ch),
                    }
                }
                value = out;
                s = q.get(end..).unwrap_or("");
            } else {
                let end = s.find(',').unwrap_or(s.len());
                value = s[..end].trim().to_owned();
                s = &s[end..];
            }
            s = s.trim_start().trim_start_matches(',').trim_start();
            match name.as_str() {
                "resource_metadata" => c.resource_metadata = Some(value),
                "scope" => c.scope = Some(value),
                "error" => c.error = Some(value),
                _ => {}
            }
        }
        return Some(c);
    }
    None
}

/// Whether protected-resource metadata for `resource` may describe the server at `server`: same
/// origin, and its path a prefix of the server's (by whole segments).
pub fn resource_covers(resource: &str, server: &Url) -> bool {
    let Ok(r) = Url::parse(resource) else { return false };
    if r.origin() != server.origin() || r.query().is_some() || r.fragment().is_some() {
        return false;
    }
    let rp = r.path().trim_end_matches('/');
    let sp = server.path().trim_end_matches('/');
    sp == rp || sp.starts_with(&format!("{rp}/"))
}

/// `/.well-known/<name>` inserted between the origin and the path of `url` (RFC 8414 §3.1, RFC 9728 §3.1).
fn well_known(url: &Url, name: &str, with_path: bool) -> Option<Url> {
    let path = url.path().trim_end_matches('/');
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    if with_path {
        if path.is_empty() {
            return None;
        }
        u.set_path(&format!("/.well-known/{name}{path}"));
    } else {
        u.set_path(&format!("/.well-known/{name}"));
    }
    Some(u)
}

/// Where the authorization server's metadata may be, in the order MCP 2025-11-25 tries them.
fn server_metadata_urls(issuer: &Url) -> Vec<Url> {
    let mut out = Vec::new();
    let path = issuer.path().trim_end_matches('/');
    if path.is_empty() {
        out.extend(well_known(issuer, "oauth-authorization-server", false));
        out.extend(well_known(issuer, "openid-configuration", false));
    } else {
        out.extend(well_known(issuer, "oauth-authorization-server", true));
        out.extend(well_known(issuer, "openid-configuration", true));
        let mut u = issuer.clone();
        u.set_path(&format!("{path}/.well-known/openid-configuration"));
        out.push(u);
    }
    out
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    Some(v?.as_array()?.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
}

fn bounded(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

impl Upstream {
    /// Asks the server, without a token, for what protects it: `initialize`, and when a server
    /// lets that through unauthenticated, `tools/list` in the session it opened.
    async fn challenge(&self, server: &Url) -> Result<Option<Challenge>, McpError> {
        let post = |body: Value, session: Option<&str>| {
            let mut req = self
                .http()
                .client()
                .post(server.clone())
                .header(reqwest::header::ACCEPT, "application/json, text/event-stream")
                .json(&body);
            if let Some(s) = session {
                req = req.header("mcp-session-id", s).header("mcp-protocol-version", PROBE_PROTOCOL_VERSION);
            }
            req
        };
        let unreachable = |e: FetchError| McpError::Unreachable(e.to_string());
        let mut answer = self.http().send(post(initialize_request(), None)).await.map_err(unreachable)?;
        // A server that lets `initialize` through (or does not speak it: a 2026-07-28 server
        // answers 400) still protects everything else: ask for its tools.
        if answer.status != 401 && answer.status < 500 {
            let session = answer.headers.get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}});
            let mut req = post(list, session.as_deref());
            if session.is_none() {
                req = req.header("mcp-protocol-version", PROBE_PROTOCOL_VERSION);
            }
            answer = self.http().send(req).await.map_err(unreachable)?;
        }
        if answer.status != 401 {
            return Err(McpError::NotProtected(answer.status));
        }
        let values: Vec<&str> =
            answer.headers.get_all(reqwest::header::WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok()).collect();
        Ok(bearer_challenge(&values))
    }

    async fn json_doc(&self, url: &Url) -> Result<Value, FetchError> {
        let doc = self.http().get(url, "application/json").await?;
        serde_json::from_slice::<Value>(&doc.body)
            .ok()
            .filter(Value::is_object)
            .ok_or(FetchError::Network("the document is not a JSON object".into()))
    }

    /// Discovery for `server` up to (not including) Bridgekeeper's identity at its authorization server.
    pub async fn discover_mcp(&self, server: &McpServer) -> Result<Discovery, McpError> {
        let challenge = self.challenge(&server.url).await?.unwrap_or_default();
        // RFC 9728 §3: the metadata named by the challenge, else the well-known locations.
        let candidates: Vec<Url> = match challenge.resource_metadata.as_deref() {
            Some(u) => vec![Url::parse(u).map_err(|_| McpError::NoResourceMetadata(bounded(u)))?],
            None => [
                well_known(&server.url, "oauth-protected-resource", true),
                well_known(&server.url, "oauth-protected-resource", false),
            ]
            .into_iter()
            .flatten()
            .collect(),
        };
        let mut last = String::from("no location to try");
        let mut prm = None;
        for u in &candidates {
            match self.json_doc(u).await {
                Ok(doc) => {
                    prm = Some(doc);
                    break;
                }
                Err(e) => last = format!("{u}: {e}"),
            }
        }
        let prm = prm.ok_or(McpError::NoResourceMetadata(last))?;
        let resource = prm
            .get("resource")
            .and_then(Value::as_str)
            .ok_or_else(|| McpError::NoResourceMetadata("it names no resource".into()))?
            .to_owned();
        if !resource_covers(&resource, &server.url) {
            return Err(McpError::ResourceMismatch { found: bounded(&resource), expected: server.url.to_string() });
        }
        let issuer = strings(prm.get("authorization_servers"))
            .and_then(|a| a.into_iter().next())
            .ok_or_else(|| McpError::NoResourceMetadata("it names no authorization server".into()))?;
        let issuer_url = Url::parse(&issuer).map_err(|_| McpError::NoServerMetadata(bounded(&issuer)))?;
        let mut meta = None;
        for u in server_metadata_urls(&issuer_url) {
            if let Ok(doc) = self.json_doc(&u).await {
                meta = Some(doc);
                break;
            }
        }
        let meta = meta.ok_or_else(|| McpError::NoServerMetadata(issuer.clone()))?;
        // RFC 8414 §3.3: the metadata must be the issuer's own.
        let found = meta.get("issuer").and_then(Value::as_str).unwrap_or_default();
        if found != issuer {
            return Err(McpError::IssuerMismatch { found: bounded(found), expected: issuer });
        }
        let endpoint = |name: &str| -> Result<Option<String>, McpError> {
            match meta.get(name).and_then(Value::as_str) {
                None => Ok(None),
                // https (plain http only where loopback http is allowed): the person's browser goes
                // to the authorization endpoint with the request's state and PKCE challenge.
                Some(u) => match Url::parse(u) {
                    Ok(parsed) if self.http().allows(&parsed) => Ok(Some(u.to_owned())),
                    Ok(_) => Err(McpError::NoServerMetadata(format!("{issuer} ({name} is not an https URL)"))),
                    _ => Err(McpError::NoServerMetadata(format!("{issuer} ({name} is not a URL)"))),
                },
            }
        };
        let authorize_url = endpoint("authorization_endpoint")?
            .ok_or_else(|| McpError::NoServerMetadata(format!("{issuer} (no authorization_endpoint)")))?;
        let token_url = endpoint("token_endpoint")?
            .ok_or_else(|| McpError::NoServerMetadata(format!("{issuer} (no token_endpoint)")))?;
        if !strings(meta.get("code_challenge_methods_supported")).is_some_and(|m| m.iter().any(|x| x == "S256")) {
            return Err(McpError::NoPkce);
        }
        // The scope: what the challenge asked for, else what the resource offers, else the catalog's.
        let scopes: Vec<String> = match (&challenge.scope, strings(prm.get("scopes_supported"))) {
            (Some(s), _) => s.split(' ').filter(|x| !x.is_empty()).map(str::to_owned).collect(),
            (None, Some(s)) if !s.is_empty() => s,
            _ => server.scopes.clone(),
        };
        // A refresh token is what keeps a connection alive: ask for one where the server has a
        // scope for it (and only then: an unknown scope can fail the whole request).
        let mut scopes = scopes;
        if !scopes.is_empty()
            && !scopes.iter().any(|s| s == "offline_access")
            && strings(meta.get("scopes_supported")).is_some_and(|s| s.iter().any(|x| x == "offline_access"))
        {
            scopes.push("offline_access".into());
        }
        Ok(Discovery {
            revoke_url: endpoint("revocation_endpoint")?,
            registration_endpoint: endpoint("registration_endpoint")?.and_then(|u| Url::parse(&u).ok()),
            accepts_documents: meta.get("client_id_metadata_document_supported") == Some(&Value::Bool(true)),
            token_auth_methods: strings(meta.get("token_endpoint_auth_methods_supported")),
            iss_supported: meta.get("authorization_response_iss_parameter_supported") == Some(&Value::Bool(true)),
            issuer,
            authorize_url,
            token_url,
            resource,
            scopes,
        })
    }

    /// Registers Bridgekeeper as a public client at `endpoint` (RFC 7591).
    pub async fn register(
        &self,
        endpoint: &Url,
        redirect_uri: &str,
        client_name: &str,
        client_uri: &str,
        secret_auth: TokenAuth,
    ) -> Result<Registered, McpError> {
        let body = json!({
            "client_name": client_name,
            "client_uri": client_uri,
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "application_type": "web",
        });
        let req =
            self.http().client().post(endpoint.clone()).header(reqwest::header::ACCEPT, "application/json").json(&body);
        let answer = self.http().send(req).await.map_err(|e| McpError::Registration(e.to_string()))?;
        registration_answer(answer, secret_auth)
    }

    /// One authenticated `initialize` with a new connection's token: the server accepts it, and
    /// what it says of itself is kept with the connection. The session it opened is closed again.
    pub async fn probe_mcp(&self, server: &Url, access_token: &str) -> Result<Value, String> {
        let req = self.authenticated_post(server, access_token, &initialize_request());
        let answer = self.http().send(req).await.map_err(|e| e.to_string())?;
        if matches!(answer.status, 400 | 404 | 405) {
            // A server of the stateless 2026-07-28 revision has no `initialize`: discover instead.
            return self.discover_server(server, access_token).await;
        }
        if !(200..300).contains(&answer.status) {
            return Err(format!("the server answered HTTP {} to initialize", answer.status));
        }
        let result = initialize_result(&answer).ok_or("the server's answer to initialize was not understood")?;
        let session = answer.headers.get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let version = result.get("protocolVersion").and_then(Value::as_str).unwrap_or(PROBE_PROTOCOL_VERSION);
        let with_session = |mut req: reqwest::RequestBuilder| {
            req = req.bearer_auth(access_token).header("mcp-protocol-version", version);
            if let Some(s) = &session {
                req = req.header("mcp-session-id", s);
            }
            req
        };
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let req = with_session(self.http().client().post(server.clone()))
            .header(reqwest::header::ACCEPT, "application/json, text/event-stream")
            .json(&note);
        if let Err(e) = self.http().send(req).await {
            tracing::info!(error = %e, "the initialized notification was not delivered");
        }
        if session.is_some() {
            let _ = self.http().send(with_session(self.http().client().delete(server.clone()))).await;
        }
        let info = result.get("serverInfo").cloned().unwrap_or(Value::Null);
        Ok(json!({
            "serverInfo": {
                "name": info.get("name").cloned().unwrap_or(Value::Null),
                "version": info.get("version").cloned().unwrap_or(Value::Null),
            },
            "protocolVersion": version,
        }))
    }
}

fn initialize_request() -> Value {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": PROBE_PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "Bridgekeeper", "version": env!("CARGO_PKG_VERSION")},
        },
    })
}

impl Upstream {
    /// A JSON-RPC POST to the MCP server with the connection's new token.
    fn authenticated_post(&self, server: &Url, access_token: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http()
            .client()
            .post(server.clone())
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json, text/event-stream")
            .json(body)
    }

    /// `server/discover` (MCP 2026-07-28) with the new token: what the server says of itself.
    async fn discover_server(&self, server: &Url, access_token: &str) -> Result<Value, String> {
        const MODERN: &str = "2026-07-28";
        let body = json!({
            "jsonrpc": "2.0", "id": 1, "method": "server/discover",
            "params": {"_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "Bridgekeeper", "version": env!("CARGO_PKG_VERSION")},
            }},
        });
        let req = self.authenticated_post(server, access_token, &body).header("mcp-protocol-version", MODERN);
        let answer = self.http().send(req).await.map_err(|e| e.to_string())?;
        if !(200..300).contains(&answer.status) {
            return Err(format!("the server answered HTTP {} to initialize and to server/discover", answer.status));
        }
        let result = initialize_result(&answer).ok_or("the server's answer to server/discover was not understood")?;
        let info = result
            .get("serverInfo")
            .or_else(|| result.get("_meta").and_then(|m| m.get("io.modelcontextprotocol/serverInfo")))
            .cloned()
            .unwrap_or(Value::Null);
        Ok(json!({
            "serverInfo": {
                "name": info.get("name").cloned().unwrap_or(Value::Null),
                "version": info.get("version").cloned().unwrap_or(Value::Null),
            },
            "protocolVersion": MODERN,
        }))
    }
}

/// The `result` of an `initialize` answered as JSON or as a server-sent event stream.
fn initialize_result(answer: &Answer) -> Option<Value> {
    let text = std::str::from_utf8(&answer.body).ok()?;
    let is_sse = answer
        .headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    let messages: Vec<Value> = if is_sse {
        let mut out = Vec::new();
        for event in text.split("\n\n") {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if let Ok(v) = serde_json::from_str::<Value>(&data.join("\n")) {
                out.push(v);
            }
        }
        out
    } else {
        vec![serde_json::from_str(text).ok()?]
    };
    messages.into_iter().find(|m| m.get("id") == Some(&json!(1))).and_then(|m| m.get("result").cloned())
}

/// `secret_auth`: how to use a secret the server issued without saying how (from its metadata).
fn registration_answer(answer: Answer, secret_auth: TokenAuth) -> Result<Registered, McpError> {
    let body = zeroize::Zeroizing::new(answer.body);
    let doc: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !(200..300).contains(&answer.status) {
        let error = doc.get("error").and_then(Value::as_str).map(bounded);
        let description = doc.get("error_description").and_then(Value::as_str).map(bounded);
        return Err(McpError::Registration(match (error, description) {
            (Some(e), Some(d)) => format!("HTTP {}: {e}: {d}", answer.status),
            (Some(e), None) => format!("HTTP {}: {e}", answer.status),
            _ => format!("HTTP {}", answer.status),
        }));
    }
    let client_id = doc
        .get("client_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 512)
        .ok_or_else(|| McpError::Registration("the answer has no client_id".into()))?
        .to_owned();
    let client_secret = doc
        .get("client_secret")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(|s| zeroize::Zeroizing::new(s.to_owned()));
    // The method the server registered wins over the one asked for.
    let token_auth = match (doc.get("token_endpoint_auth_method").and_then(Value::as_str), &client_secret) {
        (Some("none"), _) | (_, None) => TokenAuth::None,
        (Some("client_secret_post"), Some(_)) => TokenAuth::Body,
        (Some("client_secret_basic"), Some(_)) => TokenAuth::Basic,
        (_, Some(_)) => secret_auth,
    };
    let secret_expires_at = doc.get("client_secret_expires_at").and_then(Value::as_i64).filter(|t| *t > 0);
    Ok(Registered { client_id, client_secret, token_auth, secret_expires_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_are_read() {
        let c = bearer_challenge(&[
            r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="files:read files:write""#,
        ])
        .unwrap();
        assert_eq!(
            c.resource_metadata.as_deref(),
            Some("https://mcp.example.com/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(c.scope.as_deref(), Some("files:read files:write"));
        let c = bearer_challenge(&["Basic realm=\"x\"", "Bearer error=invalid_token, scope=\"a\\\"b\""]).unwrap();
        assert_eq!((c.error.as_deref(), c.scope.as_deref()), (Some("invalid_token"), Some("a\"b")));
        assert_eq!(bearer_challenge(&["Bearer"]), Some(Challenge::default()));
        assert_eq!(bearer_challenge(&["Basic realm=\"x\"", "Bearerish a=b"]), None);
    }

    #[test]
    fn resource_metadata_must_describe_this_server() {
        let server = Url::parse("https://mcp.example.com/v1/mcp").unwrap();
        for ok in [
            "https://mcp.example.com/v1/mcp",
            "https://mcp.example.com/v1/mcp/",
            "https://mcp.example.com/v1",
            "https://mcp.example.com/",
            "https://mcp.example.com",
        ] {
            assert!(resource_covers(ok, &server), "{ok}");
        }
        for bad in [
            "https://evil.example.com/v1/mcp",
            "http://mcp.example.com/v1/mcp",
            "https://mcp.example.com/v1/mc",
            "https://mcp.example.com:8443/v1/mcp",
            "https://mcp.example.com/other",
            "not a url",
        ] {
            assert!(!resource_covers(bad, &server), "{bad}");
        }
    }

    #[test]
    fn metadata_locations_follow_the_issuer_path() {
        let with = server_metadata_urls(&Url::parse("https://auth.example.com/tenant1").unwrap());
        let with: Vec<&str> = with.iter().map(Url::as_str).collect();
        assert_eq!(
            with,
            [
                "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
                "https://auth.example.com/.well-known/openid-configuration/tenant1",
                "https://auth.example.com/tenant1/.well-known/openid-configuration",
            ]
        );
        let root = server_metadata_urls(&Url::parse("https://auth.example.com/").unwrap());
        let root: Vec<&str> = root.iter().map(Url::as_str).collect();
        assert_eq!(
            root,
            [
                "https://auth.example.com/.well-known/oauth-authorization-server",
                "https://auth.example.com/.well-known/openid-configuration"
            ]
        );
        let mcp = Url::parse("https://mcp.example.com/public/mcp").unwrap();
        assert_eq!(
            well_known(&mcp, "oauth-protected-resource", true).unwrap().as_str(),
            "https://mcp.example.com/.well-known/oauth-protected-resource/public/mcp"
        );
    }

    #[test]
    fn initialize_answers_are_read_as_json_or_events() {
        let result =
            json!({"protocolVersion": "2025-11-25", "serverInfo": {"name": "s", "version": "1"}, "capabilities": {}});
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
        let sse = format!(
            "event: message\ndata: {}\n\nevent: message\ndata: {}\n\n",
            json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {}}),
            json!({"jsonrpc": "2.0", "id": 1, "result": result})
        );
        let a = Answer { status: 200, headers, body: sse.into_bytes() };
        assert_eq!(initialize_result(&a), Some(result.clone()));
        let a = Answer {
            status: 200,
            headers: Default::default(),
            body: json!({"jsonrpc": "2.0", "id": 1, "result": result}).to_string().into_bytes(),
        };
        assert_eq!(initialize_result(&a), Some(result));
    }

    #[test]
    fn registrations_are_read_and_refusals_named() {
        let ok = |v: Value| Answer { status: 201, headers: Default::default(), body: v.to_string().into_bytes() };
        let r = registration_answer(ok(json!({"client_id": "abc"})), TokenAuth::Basic).unwrap();
        assert_eq!((r.client_id.as_str(), r.token_auth, r.client_secret.is_none()), ("abc", TokenAuth::None, true));
        let r = registration_answer(ok(json!({"client_id": "abc", "client_secret": "s", "token_endpoint_auth_method": "client_secret_post", "client_secret_expires_at": 0})), TokenAuth::Basic).unwrap();
        assert_eq!((r.token_auth, r.secret_expires_at), (TokenAuth::Body, None));
        let e = registration_answer(
            Answer {
                status: 400,
                headers: Default::default(),
                body: json!({"error": "invalid_redirect_uri", "error_description": "no\nhttp"})
                    .to_string()
                    .into_bytes(),
            },
            TokenAuth::Basic,
        )
        .err()
        .unwrap();
        assert_eq!(e.to_string(), "dynamic client registration failed: HTTP 400: invalid_redirect_uri: nohttp");
        assert!(registration_answer(ok(json!({"client_secret": "s"})), TokenAuth::Basic).is_err());
        let none = registration_answer(
            ok(json!({"client_id": "c", "client_secret": "s", "token_endpoint_auth_method": "none"})),
            TokenAuth::Basic,
        )
        .unwrap();
        assert_eq!(none.token_auth, TokenAuth::None, "the registered method wins");
        let unsaid = registration_answer(ok(json!({"client_id": "c", "client_secret": "s"})), TokenAuth::Body).unwrap();
        assert_eq!(unsaid.token_auth, TokenAuth::Body, "else what the metadata offers");
    }
}
