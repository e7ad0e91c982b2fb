//! Dynamic client registration: `POST /api/v1/auth/register` (RFC 7591) and the client configuration
//! endpoint `GET|PUT|DELETE /api/v1/auth/register/{client_id}` (RFC 7592).
//!
//! Registration always yields a THIRD_PARTY client; HTTPS redirect URIs except loopback; unknown
//! scopes dropped. A confidential client authenticates with a secret (made here, shown once) or with
//! `private_key_jwt` and the public keys it registers (`jwks` or `jwks_uri`, exactly one). Only the
//! authorization-code flow (with refresh tokens) is open to registered clients: `client_credentials`
//! and token exchange mint tokens no person approved, and anyone may register, so only an operator
//! makes such clients (`/api/v1/auth-clients`). A public registration identical to one from the same source in the reuse window
//! answers with that client (a fresh registration access token, nothing created) and does not count
//! against the limit of new registrations per source; every request counts against a wider ceiling
//! of attempts. The registration access token is stored only as its digest and rotated on update.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bk_crypto::secret::{ct_eq, new_token, token_hash};
use bk_domain::audit::Outcome;
use bk_domain::client::{
    Client, ClientCapabilities, ClientKeys, ClientOrigin, ClientRole, ClientType, GrantType, MAX_INLINE_JWKS_BYTES,
};
use bk_domain::ids::ClientId;
use bk_domain::rate_limit::source_key;
use bk_domain::redirect;
use bk_domain::registration::{REGISTRATION_TOKEN_PREFIX, Registration, RegistrationMetadata};
use bk_domain::scope::ScopeSet;
use serde::Deserialize;
use serde_json::json;

use crate::AuthServer;
use crate::error::OAuthError;

/// Client metadata as a client sends it (RFC 7591 §2). Fields the server does not use are ignored;
/// those RFC 7592 §2.2 says a client must not send on update (the token, the URI, issue and expiry
/// times) are ignored too.
#[derive(Deserialize)]
struct MetadataRequest {
    redirect_uris: Option<Vec<String>>,
    client_name: Option<String>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    scope: Option<String>,
    application_type: Option<String>,
    software_id: Option<String>,
    software_version: Option<String>,
    /// RFC 7592 update only: must name the client being updated.
    client_id: Option<String>,
    /// RFC 7592 update only: if present, must be the client's current secret.
    client_secret: Option<String>,
    /// `private_key_jwt` only: the client's public keys, inline …
    jwks: Option<serde_json::Value>,
    /// … or where to fetch them.
    jwks_uri: Option<String>,
}

/// Registration metadata the server accepts, with its defaults filled in.
struct Accepted {
    metadata: RegistrationMetadata,
    client_type: ClientType,
    allowed_scopes: ScopeSet,
    /// The keys of a `private_key_jwt` client.
    keys: Option<ClientKeys>,
}

fn accept(server: &AuthServer, meta: &MetadataRequest) -> Result<Accepted, OAuthError> {
    let uris = meta.redirect_uris.clone().unwrap_or_default();
    if uris.is_empty() {
        return Err(OAuthError::invalid_redirect_uri("redirect_uris is required and must not be empty"));
    }
    if uris.len() > 20 {
        return Err(OAuthError::invalid_redirect_uri("at most 20 redirect_uris"));
    }
    for u in &uris {
        redirect::validate_registration(u).map_err(|e| OAuthError::invalid_redirect_uri(e.to_string()))?;
    }
    let method = meta.token_endpoint_auth_method.as_deref().unwrap_or("client_secret_basic");
    let client_type = match method {
        "none" => ClientType::Public,
        "client_secret_basic" | "client_secret_post" | "private_key_jwt" => ClientType::Confidential,
        other => {
            return Err(OAuthError::invalid_client_metadata(format!(
                "token_endpoint_auth_method {} is not supported; use none, client_secret_basic, client_secret_post \
                 or private_key_jwt",
                clip(other, 40)
            )));
        }
    };
    let keys = accept_keys(server, method, meta)?;
    let grant_types = meta.grant_types.clone().unwrap_or_else(|| vec!["authorization_code".into()]);
    for g in &grant_types {
        match GrantType::parse(g) {
            Some(GrantType::AuthorizationCode | GrantType::RefreshToken) => {}
            Some(g) => {
                return Err(OAuthError::invalid_client_metadata(format!(
                    "grant type {} is not available to dynamically registered clients: anyone may register, and \
                     such a client would mint tokens no person approved; ask the operator for a client made with \
                     /api/v1/auth-clients",
                    g.as_str()
                )));
            }
            None => {
                return Err(OAuthError::invalid_client_metadata(format!(
                    "grant type {} is not supported; use authorization_code and refresh_token",
                    clip(g, 40)
                )));
            }
        }
    }
    let response_types = meta.response_types.clone().unwrap_or_else(|| vec!["code".into()]);
    if response_types.iter().any(|r| r != "code") {
        return Err(OAuthError::invalid_client_metadata("only the response type code is supported"));
    }
    let name = meta.client_name.clone().unwrap_or_else(|| "Unnamed application".into());
    // Names are shown to people and stored: secrets pasted into them are redacted first.
    let name: String = server.audit.redact_text(&name).chars().filter(|c| !c.is_control()).take(100).collect();
    if name.trim().is_empty() {
        return Err(OAuthError::invalid_client_metadata("client_name must not be blank"));
    }
    let application_type = match meta.application_type.as_deref() {
        None => None,
        Some(t @ ("web" | "native")) => Some(t.to_owned()),
        Some(other) => {
            return Err(OAuthError::invalid_client_metadata(format!(
                "application_type {} is not supported; use web or native",
                clip(other, 40)
            )));
        }
    };
    if let Some(t) = &application_type {
        bk_domain::client_metadata::check_application_type(t, &uris).map_err(OAuthError::invalid_redirect_uri)?;
    }
    let software = |field: &str, v: &Option<String>| -> Result<Option<String>, OAuthError> {
        match v {
            Some(s) if s.chars().count() > 200 || s.chars().any(char::is_control) => {
                Err(OAuthError::invalid_client_metadata(format!("{field} must be at most 200 printable characters")))
            }
            Some(s) => Ok(Some(server.audit.redact_text(s))),
            None => Ok(None),
        }
    };
    let role = ClientRole::ThirdParty;
    let allowed_scopes = match meta.scope.as_deref() {
        Some(s) if !s.trim().is_empty() => ScopeSet::parse_lenient(s).intersect(&role.scope_ceiling()),
        _ => role.scope_ceiling(),
    };
    if allowed_scopes.is_empty() {
        return Err(OAuthError::invalid_client_metadata("none of the requested scopes is available to this client"));
    }
    Ok(Accepted {
        metadata: RegistrationMetadata {
            client_name: name,
            redirect_uris: uris,
            grant_types,
            response_types: vec!["code".into()],
            token_endpoint_auth_method: method.to_owned(),
            scope: allowed_scopes.to_string(),
            application_type,
            software_id: software("software_id", &meta.software_id)?,
            software_version: software("software_version", &meta.software_version)?,
        },
        client_type,
        allowed_scopes,
        keys,
    })
}

/// The keys of a `private_key_jwt` registration: exactly one of `jwks` (public signing keys, at
/// most 16 KB) and `jwks_uri` (an https URL the server may fetch); neither for another method.
fn accept_keys(server: &AuthServer, method: &str, meta: &MetadataRequest) -> Result<Option<ClientKeys>, OAuthError> {
    if method != "private_key_jwt" {
        if meta.jwks.is_some() || meta.jwks_uri.is_some() {
            return Err(OAuthError::invalid_client_metadata(
                "jwks and jwks_uri are only for token_endpoint_auth_method private_key_jwt",
            ));
        }
        return Ok(None);
    }
    match (&meta.jwks, &meta.jwks_uri) {
        (Some(jwks), None) => check_inline_jwks(jwks).map(|()| Some(ClientKeys::Jwks(jwks.clone()))),
        (None, Some(uri)) => check_jwks_uri(server, uri).map(|()| Some(ClientKeys::JwksUri(uri.clone()))),
        _ => Err(OAuthError::invalid_client_metadata(
            "private_key_jwt needs the client's public keys: give exactly one of jwks and jwks_uri",
        )),
    }
}

/// An inline JWK Set a client registers: public signing keys that parse, at most 16 KB.
pub(crate) fn check_inline_jwks(jwks: &serde_json::Value) -> Result<(), OAuthError> {
    if jwks.to_string().len() > MAX_INLINE_JWKS_BYTES {
        return Err(OAuthError::invalid_client_metadata(format!(
            "jwks must be at most {} KB; publish larger key sets at a jwks_uri",
            MAX_INLINE_JWKS_BYTES / 1024
        )));
    }
    crate::client_keys::validate_jwks(jwks).map_err(OAuthError::invalid_client_metadata)
}

/// A `jwks_uri` a client registers: an https URL without credentials or fragment that the
/// server's fetcher may reach (no literal private address).
pub(crate) fn check_jwks_uri(server: &AuthServer, uri: &str) -> Result<(), OAuthError> {
    let url = bk_domain::client::check_jwks_uri(uri).map_err(OAuthError::invalid_client_metadata)?;
    if !server.client_keys.allows_uri(&url) {
        return Err(OAuthError::invalid_client_metadata(
            "jwks_uri must be an https URL on a public address (this server fetches nothing else)",
        ));
    }
    Ok(())
}

fn parse_metadata(headers: &HeaderMap, body: &[u8]) -> Result<MetadataRequest, OAuthError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/json") {
        return Err(OAuthError::invalid_client_metadata("the registration request must be application/json"));
    }
    serde_json::from_slice(body).map_err(|e| {
        OAuthError::invalid_client_metadata(format!("the registration request is not valid client metadata: {e}"))
    })
}

/// A refusal by one of the registration limits: what the limit is, its window and when to retry, and
/// how a client avoids spending it.
fn limited(server: &AuthServer, peer: SocketAddr, limit: &str, max: u32, wait: u64) -> OAuthError {
    server.registration_counters.refused.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(ip = %peer.ip(), limit, "dynamic client registration rate limit reached");
    server.emit(server.event("ratelimit.refused", Outcome::Denied).ip(peer.ip()).detail("limit", limit.to_owned()));
    let what = if limit == "client_registration" {
        format!("at most {max} new client registrations per minute from one address")
    } else {
        format!("at most {max} registration requests per minute from one address")
    };
    OAuthError::too_many_requests(
        format!(
            "{what}; try again in {wait} s. A client that stores its registration (client_id) and reuses it, \
             or registers the same metadata again, does not spend this limit"
        ),
        wait as i64,
    )
    .with_extra(json!({ "limit": limit, "limit_max": max, "window_secs": 60, "retry_after_secs": wait }))
}

fn clip(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// The client information response (RFC 7591 §3.2.1, RFC 7592 §3).
/// `redirect_uris` are the client's, or for a reused registration the ones just sent (equal to the
/// client's under the authorization endpoint's matching: at most a loopback port differs).
fn information(
    server: &AuthServer,
    client: &Client,
    reg: &Registration,
    token: &str,
    secret: Option<&str>,
    redirect_uris: &[String],
    keys: Option<&ClientKeys>,
) -> Response {
    let m = &reg.metadata;
    let mut body = json!({
        "client_id": client.id,
        "client_id_issued_at": client.created_at,
        "client_name": client.name,
        "redirect_uris": redirect_uris,
        "grant_types": m.grant_types,
        "response_types": m.response_types,
        "token_endpoint_auth_method": m.token_endpoint_auth_method,
        "scope": client.allowed_scopes.to_string(),
        "registration_access_token": token,
        "registration_client_uri": format!("{}/api/v1/auth/register/{}", server.issuer, client.id),
    });
    for (k, v) in [
        ("application_type", &m.application_type),
        ("software_id", &m.software_id),
        ("software_version", &m.software_version),
    ] {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    }
    if let Some(s) = secret {
        body["client_secret"] = json!(s);
        body["client_secret_expires_at"] = json!(0);
    }
    match keys {
        Some(ClientKeys::Jwks(jwks)) => body["jwks"] = jwks.clone(),
        Some(ClientKeys::JwksUri(uri)) => body["jwks_uri"] = json!(uri),
        None => {}
    }
    no_store((StatusCode::OK, Json(body)).into_response())
}

fn no_store(mut res: Response) -> Response {
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

fn created(res: Response) -> Response {
    let (mut parts, body) = res.into_parts();
    parts.status = StatusCode::CREATED;
    Response::from_parts(parts, body)
}

/// `POST /api/v1/auth/register`.
pub async fn register(
    State(server): State<Arc<AuthServer>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let policy = server.registration.clone();
    let source = source_key(peer.ip());
    if let Err(wait) = server.limiter.acquire("registration_attempts", &source, policy.attempts_per_minute, 60).await {
        return Err(limited(&server, peer, "client_registration_attempts", policy.attempts_per_minute, wait));
    }
    let request = parse_metadata(&headers, &body)?;
    let accepted = accept(&server, &request)?;
    let fingerprint = accepted.metadata.fingerprint();
    let now = server.clock.now();

    if accepted.client_type == ClientType::Public
        && policy.reuse_window_secs > 0
        && let Some(res) =
            reuse(&server, peer, &source, &fingerprint, now - policy.reuse_window_secs, &accepted).await?
    {
        return Ok(res);
    }

    if let Err(wait) = server.limiter.acquire("registrations", &source, policy.per_minute, 60).await {
        return Err(limited(&server, peer, "client_registration", policy.per_minute, wait));
    }

    let id = ClientId::generate();
    let (secret, stored) = match accepted.client_type {
        // A private_key_jwt client proves itself with its keys: it gets no secret.
        ClientType::Confidential if accepted.keys.is_some() => (None, None),
        ClientType::Confidential => {
            let secret = bk_crypto::client_secret::generate().into_string();
            let stored = protect_secret(&server, &id, &secret).await?;
            (Some(secret), Some(stored))
        }
        ClientType::Public => (None, None),
    };
    let client = Client {
        id: id.clone(),
        name: accepted.metadata.client_name.clone(),
        client_type: accepted.client_type,
        role: ClientRole::ThirdParty,
        origin: ClientOrigin::Dynamic,
        redirect_uris: accepted.metadata.redirect_uris.clone(),
        allowed_scopes: accepted.allowed_scopes,
        allowed_providers: None,
        domains: Vec::new(),
        branding: None,
        secret: stored,
        owner: None,
        created_at: now,
        updated_at: now,
    };
    let token = new_token(REGISTRATION_TOKEN_PREFIX);
    let reg = Registration {
        client_id: id,
        source,
        fingerprint,
        metadata: accepted.metadata,
        token_hash: token_hash(token.expose()),
        created_at: now,
        updated_at: now,
    };
    let caps = ClientCapabilities { keys: accepted.keys.clone(), ..Default::default() };
    server.store.insert_capable_client(&client, &caps, Some(&reg), 0).await?;
    server.registration_counters.created.fetch_add(1, Ordering::Relaxed);
    let kind = accepted.client_type.as_str();
    tracing::info!(client = %client.id, ip = %peer.ip(), kind, "client registered dynamically");
    server.emit(
        server
            .event("client.registered", Outcome::Success)
            .client(&client.id)
            .target(&client.id)
            .ip(peer.ip())
            .detail("name", client.name.clone())
            .detail("type", kind),
    );
    let keys = accepted.keys.as_ref();
    Ok(created(information(&server, &client, &reg, token.expose(), secret.as_deref(), &client.redirect_uris, keys)))
}

/// Answers with the live public client an identical registration from this source created since
/// `since`, under a new registration access token; `None` when there is none.
async fn reuse(
    server: &AuthServer,
    peer: SocketAddr,
    source: &str,
    fingerprint: &str,
    since: i64,
    accepted: &Accepted,
) -> Result<Option<Response>, OAuthError> {
    let Some(id) = server.store.reusable_registration(source, fingerprint, since).await? else {
        return Ok(None);
    };
    let (Some(client), Some(mut reg)) = (server.store.client(&id).await?, server.store.registration(&id).await?) else {
        return Ok(None);
    };
    let token = new_token(REGISTRATION_TOKEN_PREFIX);
    reg.token_hash = token_hash(token.expose());
    reg.updated_at = server.clock.now();
    if !server.store.update_registration(&reg, None).await? {
        return Ok(None); // deleted in the meantime: register anew
    }
    server.registration_counters.reused.fetch_add(1, Ordering::Relaxed);
    tracing::info!(client = %client.id, ip = %peer.ip(), "identical registration: the existing client answers");
    server.emit(
        server
            .event("client.registration_reused", Outcome::Success)
            .client(&client.id)
            .target(&client.id)
            .ip(peer.ip()),
    );
    let uris = &accepted.metadata.redirect_uris;
    Ok(Some(created(information(server, &client, &reg, token.expose(), None, uris, None))))
}

async fn protect_secret(
    server: &AuthServer,
    id: &ClientId,
    secret: &str,
) -> Result<bk_domain::client::StoredSecret, OAuthError> {
    let (master, cid, s) = (server.master.clone(), id.to_string(), secret.to_owned());
    // bcrypt runs off the async threads.
    tokio::task::spawn_blocking(move || bk_crypto::client_secret::protect(&master, &cid, &s))
        .await
        .map_err(|_| OAuthError::server_error())?
        .map_err(|_| OAuthError::server_error())
}

/// The client and its registration, if `headers` carry that registration's access token. Every
/// failure is the same 401 (RFC 7592 §2: a token for another client, for a deleted client, or no
/// such client at all are indistinguishable).
async fn authenticate(
    server: &AuthServer,
    headers: &HeaderMap,
    id: &str,
) -> Result<(Client, Registration, String), OAuthError> {
    let denied = || OAuthError::invalid_token("the registration access token is missing, invalid or revoked");
    let token =
        bk_access::bearer_token(headers).filter(|t| t.starts_with(REGISTRATION_TOKEN_PREFIX)).ok_or_else(denied)?;
    if id.len() > 100 {
        return Err(denied());
    }
    let id = ClientId::from_string(id.to_owned());
    let reg = server.store.registration(&id).await?.ok_or_else(denied)?;
    if !ct_eq(&token_hash(token), &reg.token_hash) {
        return Err(denied());
    }
    let client = server.store.client(&id).await?.ok_or_else(denied)?;
    Ok((client, reg, token.to_owned()))
}

/// `GET /api/v1/auth/register/{client_id}` (RFC 7592 §2.1): the registration as it stands. The
/// token presented stays valid and is returned; a confidential client's secret is not (it was
/// shown once, at registration).
pub async fn read(
    State(server): State<Arc<AuthServer>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    let (client, reg, token) = authenticate(&server, &headers, &id).await?;
    let caps = server.store.capable_client(&client.id).await?.map(|(_, caps)| caps).unwrap_or_default();
    Ok(information(&server, &client, &reg, &token, None, &client.redirect_uris, caps.keys.as_ref()))
}

/// `PUT /api/v1/auth/register/{client_id}` (RFC 7592 §2.2): replaces the registration's metadata,
/// under the same rules as registration, and rotates the registration access token. A client cannot
/// change between public and confidential.
pub async fn update(
    State(server): State<Arc<AuthServer>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let (mut client, mut reg, _) = authenticate(&server, &headers, &id).await?;
    let request = parse_metadata(&headers, &body)?;
    if request.client_id.as_deref() != Some(client.id.as_str()) {
        return Err(OAuthError::invalid_client_metadata("client_id is required and must be this client's"));
    }
    let accepted = accept(&server, &request)?;
    if accepted.client_type != client.client_type {
        return Err(OAuthError::invalid_client_metadata(format!(
            "token_endpoint_auth_method cannot change a {} client into a {} one; register a new client",
            client.client_type.as_str(),
            accepted.client_type.as_str()
        )));
    }
    let was_jwt = reg.metadata.token_endpoint_auth_method == "private_key_jwt";
    if was_jwt != accepted.keys.is_some() {
        return Err(OAuthError::invalid_client_metadata(
            "token_endpoint_auth_method cannot change between a secret and private_key_jwt; register a new client",
        ));
    }
    if let Some(presented) = &request.client_secret {
        let matches = match &client.secret {
            Some(stored) => {
                let (stored, p) = (stored.clone(), presented.clone());
                tokio::task::spawn_blocking(move || bk_crypto::client_secret::verify(&p, &stored))
                    .await
                    .map_err(|_| OAuthError::server_error())?
            }
            None => false,
        };
        if !matches {
            return Err(OAuthError::invalid_client_metadata("client_secret is not this client's current secret"));
        }
    }
    let now = server.clock.now();
    client.name = accepted.metadata.client_name.clone();
    client.redirect_uris = accepted.metadata.redirect_uris.clone();
    client.allowed_scopes = accepted.allowed_scopes;
    client.updated_at = now;
    let token = new_token(REGISTRATION_TOKEN_PREFIX);
    reg.fingerprint = accepted.metadata.fingerprint();
    reg.metadata = accepted.metadata;
    reg.token_hash = token_hash(token.expose());
    reg.updated_at = now;
    let keys = accepted.keys.clone();
    if !server.store.update_registration(&reg, Some(&client)).await? {
        return Err(OAuthError::invalid_token("the registration access token is missing, invalid or revoked"));
    }
    if keys.is_some() {
        let caps = ClientCapabilities { keys: keys.clone(), ..Default::default() };
        server.store.set_client_capabilities(&client.id, &caps, now).await?;
    }
    server.forget_client(&client.id);
    tracing::info!(client = %client.id, ip = %peer.ip(), "client registration updated");
    server.emit(
        server
            .event("client.registration_updated", Outcome::Success)
            .client(&client.id)
            .target(&client.id)
            .ip(peer.ip())
            .detail("name", client.name.clone()),
    );
    Ok(information(&server, &client, &reg, token.expose(), None, &client.redirect_uris, keys.as_ref()))
}

/// `DELETE /api/v1/auth/register/{client_id}` (RFC 7592 §2.3): deletes the client and revokes every
/// grant it holds; its registration access token dies with it.
pub async fn delete(
    State(server): State<Arc<AuthServer>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    let (client, _, _) = authenticate(&server, &headers, &id).await?;
    if !server.store.delete_client(&client.id, server.clock.now()).await? {
        return Err(OAuthError::invalid_token("the registration access token is missing, invalid or revoked"));
    }
    server.forget_client(&client.id);
    tracing::info!(client = %client.id, ip = %peer.ip(), "client deleted its registration");
    server.emit(
        server
            .event("client.registration_deleted", Outcome::Success)
            .client(&client.id)
            .target(&client.id)
            .ip(peer.ip()),
    );
    Ok(no_store(StatusCode::NO_CONTENT.into_response()))
}
