//! `POST /api/v1/auth/register` (RFC 7591 dynamic client registration). Always yields a THIRD_PARTY
//! client; HTTPS redirect URIs except loopback; unknown scopes dropped; 5 registrations per minute per IP.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bk_domain::audit::Outcome;
use bk_domain::client::{Client, ClientOrigin, ClientRole, ClientType};
use bk_domain::ids::ClientId;
use bk_domain::redirect;
use bk_domain::scope::ScopeSet;
use serde::Deserialize;
use serde_json::json;

use crate::AuthServer;
use crate::error::OAuthError;

#[derive(Deserialize)]
struct Metadata {
    redirect_uris: Option<Vec<String>>,
    client_name: Option<String>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    scope: Option<String>,
}

pub async fn register(
    State(server): State<Arc<AuthServer>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let now_ms = server.clock.now_ms();
    {
        let ip = peer.ip().to_string();
        if let Err(wait) = server.limiter.acquire("registrations", &ip, server.registrations_per_minute, 60).await {
            let wait = wait as i64;
            tracing::warn!(ip = %peer.ip(), "dynamic client registration rate limit reached");
            server.emit(
                server.event("ratelimit.refused", Outcome::Denied).ip(peer.ip()).detail("limit", "client_registration"),
            );
            return Err(OAuthError::too_many_requests(
                format!("too many client registrations from this address; try again in {wait} s"),
                wait,
            ));
        }
    }
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/json") {
        return Err(OAuthError::invalid_client_metadata("the registration request must be application/json"));
    }
    let meta: Metadata = serde_json::from_slice(&body).map_err(|e| {
        OAuthError::invalid_client_metadata(format!("the registration request is not valid client metadata: {e}"))
    })?;

    let uris = meta.redirect_uris.unwrap_or_default();
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
        "client_secret_basic" | "client_secret_post" => ClientType::Confidential,
        other => {
            return Err(OAuthError::invalid_client_metadata(format!(
                "token_endpoint_auth_method {} is not supported; use none, client_secret_basic or client_secret_post",
                other.chars().take(40).collect::<String>()
            )));
        }
    };
    let grant_types = meta.grant_types.unwrap_or_else(|| vec!["authorization_code".into()]);
    if let Some(g) = grant_types.iter().find(|g| !matches!(g.as_str(), "authorization_code" | "refresh_token")) {
        return Err(OAuthError::invalid_client_metadata(format!(
            "grant type {} is not supported; use authorization_code and refresh_token",
            g.chars().take(40).collect::<String>()
        )));
    }
    let response_types = meta.response_types.unwrap_or_else(|| vec!["code".into()]);
    if response_types.iter().any(|r| r != "code") {
        return Err(OAuthError::invalid_client_metadata("only the response type code is supported"));
    }
    let name = meta.client_name.unwrap_or_else(|| "Unnamed application".into());
    // Names are shown to people and stored: secrets pasted into them are redacted first.
    let name: String = server.audit.redact_text(&name).chars().filter(|c| !c.is_control()).take(100).collect();
    if name.trim().is_empty() {
        return Err(OAuthError::invalid_client_metadata("client_name must not be blank"));
    }
    let role = ClientRole::ThirdParty;
    let allowed_scopes = match meta.scope.as_deref() {
        Some(s) if !s.trim().is_empty() => ScopeSet::parse_lenient(s).intersect(&role.scope_ceiling()),
        _ => role.scope_ceiling(),
    };
    if allowed_scopes.is_empty() {
        return Err(OAuthError::invalid_client_metadata("none of the requested scopes is available to this client"));
    }

    let now = now_ms.div_euclid(1000);
    let id = ClientId::generate();
    let (secret, stored) = match client_type {
        ClientType::Confidential => {
            let secret = bk_crypto::client_secret::generate().into_string();
            let (master, cid, s) = (server.master.clone(), id.to_string(), secret.clone());
            // bcrypt runs off the async threads.
            let stored = tokio::task::spawn_blocking(move || bk_crypto::client_secret::protect(&master, &cid, &s))
                .await
                .map_err(|_| OAuthError::server_error())?
                .map_err(|_| OAuthError::server_error())?;
            (Some(secret), Some(stored))
        }
        ClientType::Public => (None, None),
    };
    let client = Client {
        id,
        name,
        client_type,
        role,
        origin: ClientOrigin::Dynamic,
        redirect_uris: uris,
        allowed_scopes,
        allowed_providers: None,
        domains: Vec::new(),
        branding: None,
        secret: stored,
        owner: None,
        created_at: now,
        updated_at: now,
    };
    server.store.insert_client(&client).await?;
    tracing::info!(client = %client.id, ip = %peer.ip(), kind = client_type.as_str(), "client registered dynamically");
    server.emit(
        server
            .event("client.registered", Outcome::Success)
            .client(&client.id)
            .target(&client.id)
            .ip(peer.ip())
            .detail("name", client.name.clone())
            .detail("type", client_type.as_str()),
    );

    let mut body = json!({
        "client_id": client.id,
        "client_id_issued_at": now,
        "client_name": client.name,
        "redirect_uris": client.redirect_uris,
        "grant_types": grant_types,
        "response_types": ["code"],
        "token_endpoint_auth_method": method,
        "scope": client.allowed_scopes.to_string(),
    });
    if let Some(s) = secret {
        body["client_secret"] = json!(s);
        body["client_secret_expires_at"] = json!(0);
    }
    let mut res = (StatusCode::CREATED, Json(body)).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
