//! The `mcp` connect kind's own steps: discovery turned into a flow (`start_mcp`), Bridgekeeper's
//! registration at an upstream authorization server (kept per issuer, its secret sealed), and the
//! client ID metadata document it is known by (`GET /.well-known/oauth-client`). The flow's
//! callback is the shared one (`connections::callback`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bk_connections::catalog::{McpServer, TokenAuth};
use bk_connections::mcp::{McpAuth, McpError, Registration};
use bk_connections::oauth2::authorization_url;
use bk_domain::connection::{UpstreamRegistration, upstream_registration_binding};
use bk_domain::ids::AccountId;
use bk_domain::ports::{ConnectionQuery, MAX_CONNECTIONS_PAGE};
use serde::Serialize;
use serde_json::Value;
use url::Url;
use utoipa::ToSchema;

use crate::Api;
use crate::caller::Caller;
use crate::connections::{callback_url, pkce_verifier, record_flow};
use crate::problem::Problem;

/// What a tenant is told when a remote MCP server cannot be connected (the server's answers are
/// the operator's concern, but the tenant learns which step failed).
fn mcp_problem(provider_id: &str, e: &McpError) -> Problem {
    tracing::warn!(provider = provider_id, error = %e, "connecting an MCP server failed");
    Problem::new(StatusCode::BAD_GATEWAY, "Upstream MCP server", format!("cannot connect {provider_id:?}: {e}"))
}

/// Discovers the server's authorization server, settles how Bridgekeeper is known there, records
/// the flow and builds the authorization URL.
pub async fn start_mcp(
    server: &Api,
    who: &Caller,
    account_id: &AccountId,
    m: &McpServer,
    provider_id: &str,
    redirect_url: &Url,
) -> Result<Url, Problem> {
    let mut found = server.upstream.discover_mcp(m).await.map_err(|e| mcp_problem(provider_id, &e))?;
    // Reconnecting (SEP-2350): ask for what the account's connections to this server hold, and
    // what the server asked them for since (step-up), besides what it asks for now.
    if !found.scopes.is_empty() {
        let query = ConnectionQuery {
            provider_id: Some(provider_id.to_owned()),
            limit: MAX_CONNECTIONS_PAGE,
            ..ConnectionQuery::default()
        };
        for c in server.store.list_connections(account_id, &query).await?.items {
            let required = c.metadata.get("requiredScopes").and_then(Value::as_array).cloned().unwrap_or_default();
            let held = c.scopes.iter().cloned().chain(required.iter().filter_map(|v| v.as_str().map(str::to_owned)));
            for s in held {
                if found.scopes.len() < 100 && !found.scopes.contains(&s) {
                    found.scopes.push(s);
                }
            }
        }
    }
    let redirect_uri = callback_url(server);
    let auth: McpAuth = if let (true, Some(url)) = (found.accepts_documents, &server.connect_client.document_url) {
        found.with_client(url.clone(), TokenAuth::None, Registration::Document)
    } else if let Some(id) = &m.client.client_id {
        // The operator's secret goes only to the authorization server it was registered at.
        if let Some(expected) = &m.issuer
            && *expected != found.issuer
        {
            return Err(mcp_problem(
                provider_id,
                &McpError::IssuerMismatch { found: found.issuer.clone(), expected: expected.clone() },
            ));
        }
        let token_auth = if m.client.client_secret.is_some() { found.secret_auth() } else { TokenAuth::None };
        found.with_client(id.clone(), token_auth, Registration::Preregistered)
    } else if let Some(endpoint) = found.registration_endpoint.clone() {
        let (client_id, token_auth) = registered_client(server, &found, &endpoint, &redirect_uri)
            .await
            .map_err(|e| mcp_problem(provider_id, &e))?;
        found.with_client(client_id, token_auth, Registration::Dynamic)
    } else {
        return Err(mcp_problem(provider_id, &McpError::NoClientIdentity));
    };
    let o = auth.oauth2(None).map_err(|e| mcp_problem(provider_id, &e))?;
    let upstream = serde_json::to_string(&auth).map_err(|_| Problem::server_error())?;
    let state = record_flow(server, who, account_id, provider_id, redirect_url, Some(upstream)).await?;
    let challenge = bk_domain::pkce::s256(&pkce_verifier(server, state.expose()));
    Ok(authorization_url(&o, &auth.client_id, &redirect_uri, state.expose(), Some(&challenge)))
}

fn token_auth_name(a: TokenAuth) -> &'static str {
    match a {
        TokenAuth::None => "none",
        TokenAuth::Body => "client_secret_post",
        TokenAuth::Basic => "client_secret_basic",
    }
}

fn token_auth_of(name: &str) -> TokenAuth {
    match name {
        "client_secret_post" => TokenAuth::Body,
        "client_secret_basic" => TokenAuth::Basic,
        _ => TokenAuth::None,
    }
}

/// Bridgekeeper's registration at this issuer: the kept one while its secret is good, else a new
/// one (kept, its secret sealed). Two flows registering at once settle on the one kept first.
async fn registered_client(
    server: &Api,
    found: &bk_connections::mcp::Discovery,
    endpoint: &Url,
    redirect_uri: &str,
) -> Result<(String, TokenAuth), McpError> {
    let store_error = |e: bk_domain::ports::StoreError| {
        tracing::error!(error = %e, "reading or keeping an upstream registration failed");
        McpError::Registration("the registration could not be kept".into())
    };
    let now = server.clock.now();
    let usable = |r: &UpstreamRegistration| r.secret_expires_at.is_none_or(|t| t > now + 60);
    if let Some(r) = server.store.upstream_registration(&found.issuer, redirect_uri).await.map_err(store_error)? {
        if usable(&r) {
            return Ok((r.client_id.clone(), token_auth_of(&r.token_auth)));
        }
        server
            .store
            .forget_upstream_registration(&found.issuer, redirect_uri, &r.client_id)
            .await
            .map_err(store_error)?;
    }
    let registered = server
        .upstream
        .register(endpoint, redirect_uri, &server.connect_client.name, &server.issuer, found.secret_auth())
        .await?;
    let mut row = UpstreamRegistration {
        issuer: found.issuer.clone(),
        redirect_uri: redirect_uri.to_owned(),
        client_id: registered.client_id.clone(),
        secret_sealed: None,
        token_auth: token_auth_name(registered.token_auth).to_owned(),
        created_at: now,
        secret_expires_at: registered.secret_expires_at,
    };
    if let Some(secret) = &registered.client_secret {
        let sealed =
            server.master.seal(&upstream_registration_binding(&row.id()), secret.as_bytes()).map_err(|_| {
                tracing::error!("sealing an upstream client secret failed");
                McpError::Registration("the registration could not be kept".into())
            })?;
        row.secret_sealed = Some(sealed);
    }
    server.store.save_upstream_registration(&row).await.map_err(store_error)?;
    tracing::info!(issuer = %found.issuer, client_id = %registered.client_id, "registered at an upstream authorization server");
    let kept = server.store.upstream_registration(&found.issuer, redirect_uri).await.map_err(store_error)?;
    let kept = kept.ok_or_else(|| McpError::Registration("the registration could not be kept".into()))?;
    Ok((kept.client_id.clone(), token_auth_of(&kept.token_auth)))
}

/// The secret of the kept registration `auth` was made under (`None`: a public client). Fails when
/// the registration was replaced since the flow started.
pub(crate) async fn registration_secret(server: &Api, auth: &McpAuth) -> Result<Option<String>, &'static str> {
    let redirect_uri = callback_url(server);
    let kept = match server.store.upstream_registration(&auth.issuer, &redirect_uri).await {
        Ok(Some(r)) if r.client_id == auth.client_id => r,
        Ok(_) => return Err("the registration at the authorization server changed meanwhile; connect again"),
        Err(e) => {
            tracing::error!(error = %e, "reading an upstream registration failed");
            return Err("the server could not complete the connection; try again");
        }
    };
    match &kept.secret_sealed {
        None => Ok(None),
        Some(sealed) => server
            .master
            .open(&upstream_registration_binding(&kept.id()), sealed)
            .ok()
            .and_then(|plain| String::from_utf8(plain).ok())
            .map(Some)
            .ok_or("the registration's secret could not be read; connect again"),
    }
}

/// Bridgekeeper as an OAuth client of upstream MCP servers' authorization servers (a client ID
/// metadata document: its `client_id` is the document's own URL).
#[derive(Serialize, ToSchema)]
pub struct ClientDocument {
    pub client_id: String,
    pub client_name: String,
    pub client_uri: String,
    pub redirect_uris: [String; 1],
    pub grant_types: [&'static str; 2],
    pub response_types: [&'static str; 1],
    /// `none`: a public client (PKCE).
    pub token_endpoint_auth_method: &'static str,
    pub application_type: &'static str,
}

/// Bridgekeeper's client ID metadata document (`GET /.well-known/oauth-client`): how it is known
/// at upstream authorization servers that accept such documents.
#[utoipa::path(
    get,
    path = "/.well-known/oauth-client",
    operation_id = "getClientDocument",
    summary = "This server's client ID metadata document",
    tag = "connections",
    description = "This server's client ID metadata document: how it is known as an OAuth client at the \
        authorization servers of remote MCP servers that accept such documents. No credential needed.",
    responses((status = 200, description = "The document", body = ClientDocument))
)]
pub async fn client_document(State(server): State<Arc<Api>>) -> Response {
    let client_id = server
        .connect_client
        .document_url
        .clone()
        .unwrap_or_else(|| format!("{}/.well-known/oauth-client", server.issuer));
    (
        [(header::CACHE_CONTROL, "public, max-age=3600")],
        Json(ClientDocument {
            client_id,
            client_name: server.connect_client.name.clone(),
            client_uri: server.issuer.clone(),
            redirect_uris: [callback_url(&server)],
            grant_types: ["authorization_code", "refresh_token"],
            response_types: ["code"],
            token_endpoint_auth_method: "none",
            application_type: "web",
        }),
    )
        .into_response()
}
