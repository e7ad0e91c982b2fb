//! `/api/v1/auth-clients`: create, list, read, update, delete OAuth clients and rotate their secrets.
//! Operators (operator tokens) manage every client and alone may grant WHITELABEL_CUSTOMER; a person
//! (token with scope `account`, or a signed-in browser) manages the THIRD_PARTY clients they own.
//! Another owner's client answers 404, exactly like one that does not exist.
//!
//! What a person can store is bounded: branding (a logo of at most 2 MB) only on white-label clients,
//! which only operators create; every other field has a size limit; and an account owns at most
//! `limits.max_clients_per_account` clients.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bk_domain::audit::Outcome;
use bk_domain::client::{Branding, Client, ClientOrigin, ClientRole, ClientType, check_whitelabel_redirects};
use bk_domain::ids::ClientId;
use bk_domain::redirect;
use bk_domain::scope::{Scope, ScopeSet};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Api;
use crate::caller::{Caller, caller};
use crate::problem::{Problem, json_body};

/// Logos may be up to 2 MB (as base64 in JSON: ~2.7 MB), so these routes accept 4 MiB bodies. Only a
/// white-label client (operators alone create those) carries a logo; the other fields are bounded below,
/// so a person's third-party client stores a few dozen kilobytes at most.
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;
const MAX_LOGO_BYTES: usize = 2 * 1024 * 1024;
/// The longest redirect URI we store (browsers and servers commonly stop near 2 KB).
const MAX_REDIRECT_URI_BYTES: usize = 2048;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientBody {
    name: String,
    #[serde(rename = "type")]
    client_type: Option<String>,
    roles: Option<Vec<String>>,
    #[serde(default)]
    domains: Vec<String>,
    redirect_uris: Vec<String>,
    allowed_scopes: Option<Vec<String>>,
    allowed_providers: Option<Vec<String>>,
    branding: Option<BrandingBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BrandingBody {
    logo: Option<String>,
    description: Option<String>,
    brand_color: Option<String>,
}

fn role_of(roles: Option<&Vec<String>>) -> Result<ClientRole, Problem> {
    match roles.map(|r| r.iter().map(String::as_str).collect::<Vec<_>>()).as_deref() {
        None | Some([]) | Some(["third-party"]) => Ok(ClientRole::ThirdParty),
        Some(["whitelabel-customer"]) => Ok(ClientRole::WhitelabelCustomer),
        _ => Err(Problem::invalid("roles", "roles must be [\"third-party\"] or [\"whitelabel-customer\"]")),
    }
}

fn role_name(r: ClientRole) -> &'static str {
    match r {
        ClientRole::ThirdParty => "third-party",
        ClientRole::WhitelabelCustomer => "whitelabel-customer",
    }
}

fn valid_domain(d: &str) -> bool {
    d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Validates a logo data URI: an allowed image type, base64 that decodes, ≤ 2 MB, and bytes that are
/// what the type claims (so a script cannot pose as a PNG).
fn validate_logo(logo: &str) -> Result<(), Problem> {
    let invalid = |m: &str| Problem::invalid("branding.logo", m.to_owned());
    let rest =
        logo.strip_prefix("data:").ok_or_else(|| invalid("logo must be a data: URI (data:image/png;base64,…)"))?;
    let (meta, data) = rest.split_once(',').ok_or_else(|| invalid("logo is not a data: URI"))?;
    let mime = meta.strip_suffix(";base64").ok_or_else(|| invalid("logo must be base64-encoded (;base64)"))?;
    if !matches!(mime, "image/png" | "image/jpeg" | "image/svg+xml" | "image/webp") {
        return Err(invalid("logo must be PNG, JPEG, SVG or WebP"));
    }
    if data.len() > MAX_LOGO_BYTES / 3 * 4 + 4 {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Logo too large",
            "branding.logo must be at most 2 MB",
        ));
    }
    let bytes = STANDARD.decode(data.trim()).map_err(|_| invalid("logo is not valid base64"))?;
    if bytes.len() > MAX_LOGO_BYTES {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Logo too large",
            "branding.logo must be at most 2 MB",
        ));
    }
    let ok = match mime {
        "image/png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
        "image/webp" => bytes.len() > 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP",
        _ => std::str::from_utf8(&bytes).is_ok_and(|s| s.contains("<svg")),
    };
    if !ok {
        return Err(invalid("logo content does not match its image type"));
    }
    Ok(())
}

fn branding_of(b: Option<BrandingBody>) -> Result<Option<Branding>, Problem> {
    let Some(b) = b else { return Ok(None) };
    if let Some(logo) = &b.logo {
        validate_logo(logo)?;
    }
    if let Some(d) = &b.description
        && d.chars().count() > 500
    {
        return Err(Problem::invalid("branding.description", "description must be at most 500 characters"));
    }
    if let Some(c) = &b.brand_color
        && !bk_domain::client::is_valid_brand_color(c)
    {
        return Err(Problem::invalid("branding.brandColor", "brandColor must be #RRGGBB"));
    }
    Ok(Some(Branding { logo: b.logo, description: b.description, brand_color: b.brand_color }))
}

/// Validates a body into the mutable parts of a client (shared by create and update).
struct Validated {
    name: String,
    domains: Vec<String>,
    redirect_uris: Vec<String>,
    allowed_scopes: ScopeSet,
    allowed_providers: Option<Vec<String>>,
    branding: Option<Branding>,
}

fn validate(server: &Api, body: ClientBody, role: ClientRole) -> Result<Validated, Problem> {
    // Free text is stored and shown to people: secrets pasted into it are redacted first.
    let name: String = server.audit.redact_text(body.name.trim());
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(Problem::invalid("name", "name must be 1 to 100 printable characters"));
    }
    if body.domains.len() > 20 {
        return Err(Problem::invalid("domains", "at most 20 domains"));
    }
    let domains: Vec<String> = body.domains.iter().map(|d| d.trim().to_ascii_lowercase()).collect();
    if let Some(bad) = domains.iter().find(|d| !valid_domain(d)) {
        return Err(Problem::invalid("domains", format!("{bad} is not a domain name")));
    }
    if body.redirect_uris.is_empty() || body.redirect_uris.len() > 20 {
        return Err(Problem::invalid("redirectUris", "give 1 to 20 redirect URIs"));
    }
    if body.redirect_uris.iter().any(|u| u.len() > MAX_REDIRECT_URI_BYTES) {
        return Err(Problem::invalid(
            "redirectUris",
            format!("a redirect URI must be at most {MAX_REDIRECT_URI_BYTES} bytes"),
        ));
    }
    for u in &body.redirect_uris {
        redirect::validate_registration(u).map_err(|e| Problem::invalid("redirectUris", e.to_string()))?;
    }
    // Branding shows only on a white-label client's pages; anywhere else it would be dead weight a
    // person could pile up (refused rather than dropped, so the caller learns it was not kept).
    if role != ClientRole::WhitelabelCustomer && body.branding.is_some() {
        return Err(Problem::invalid("branding", "branding is only for white-label (whitelabel-customer) clients"));
    }
    if role == ClientRole::WhitelabelCustomer {
        check_whitelabel_redirects(&domains, &body.redirect_uris).map_err(|m| {
            let field = m.split(':').next().unwrap_or("redirectUris").to_owned();
            Problem::invalid(&field, m)
        })?;
    }
    let requested = match &body.allowed_scopes {
        Some(list) => ScopeSet::from_scopes(list.iter().filter_map(|s| Scope::parse(s))),
        None => role.scope_ceiling(),
    };
    let allowed_scopes = requested.intersect(&role.scope_ceiling());
    if allowed_scopes.is_empty() {
        return Err(Problem::invalid("allowedScopes", "none of the allowed scopes is available to this role"));
    }
    if let Some(p) = &body.allowed_providers
        && (p.len() > 100 || p.iter().any(|x| x.is_empty() || x.len() > 64))
    {
        return Err(Problem::invalid("allowedProviders", "allowedProviders must be null or up to 100 provider ids"));
    }
    Ok(Validated {
        name,
        domains,
        redirect_uris: body.redirect_uris,
        allowed_scopes,
        allowed_providers: body.allowed_providers,
        branding: branding_of(body.branding)?.map(|mut b| {
            b.description = b.description.map(|d| server.audit.redact_text(&d));
            b
        }),
    })
}

fn view(c: &Client) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "type": c.client_type.as_str(),
        "roles": [role_name(c.role)],
        "origin": c.origin.as_str(),
        "domains": c.domains,
        "redirectUris": c.redirect_uris,
        "allowedScopes": c.allowed_scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "allowedProviders": c.allowed_providers,
        "branding": c.branding,
        "createdAt": c.created_at,
        "updatedAt": c.updated_at,
    })
}

/// Hashes and seals a new secret off the async threads.
async fn protect(server: &Api, client_id: &ClientId) -> Result<(String, bk_domain::client::StoredSecret), Problem> {
    let secret = bk_crypto::client_secret::generate().into_string();
    let (master, id, s) = (server.master.clone(), client_id.to_string(), secret.clone());
    let stored = tokio::task::spawn_blocking(move || bk_crypto::client_secret::protect(&master, &id, &s))
        .await
        .map_err(|_| Problem::server_error())?
        .map_err(|_| Problem::server_error())?;
    Ok((secret, stored))
}

/// The client if the caller may manage it; 404 otherwise (no existence oracle).
async fn manageable(server: &Api, who: &Caller, id: &str) -> Result<Client, Problem> {
    let client = server.store.client(&ClientId::from_string(id)).await?.ok_or_else(|| Problem::not_found("client"))?;
    match who {
        Caller::Operator { .. } => Ok(client),
        _ if client.owner.as_ref() == who.account() && client.owner.is_some() => Ok(client),
        _ => Err(Problem::not_found("client")),
    }
}

/// Only operators, and people through a token with scope `account` or their browser, manage clients.
fn require_manager(who: &Caller) -> Result<(), Problem> {
    if let Caller::Token(_) = who {
        who.person_with(Scope::Account)?;
    }
    Ok(())
}

pub async fn create(State(server): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    require_manager(&who)?;
    let body: ClientBody = json_body(&headers, &body)?;
    let role = role_of(body.roles.as_ref())?;
    if role == ClientRole::WhitelabelCustomer && !matches!(who, Caller::Operator { .. }) {
        return Err(Problem::forbidden("only an operator can create a whitelabel-customer client"));
    }
    let client_type = match body.client_type.as_deref() {
        Some("confidential") | None => ClientType::Confidential,
        Some("public") => ClientType::Public,
        Some(_) => return Err(Problem::invalid("type", "type must be public or confidential")),
    };
    let v = validate(&server, body, role)?;
    let now = server.clock.now();
    let id = ClientId::generate();
    let (secret, stored) = match client_type {
        ClientType::Confidential => {
            let (s, stored) = protect(&server, &id).await?;
            (Some(s), Some(stored))
        }
        ClientType::Public => (None, None),
    };
    let client = Client {
        id,
        name: v.name,
        client_type,
        role,
        origin: ClientOrigin::Manual,
        redirect_uris: v.redirect_uris,
        allowed_scopes: v.allowed_scopes,
        allowed_providers: v.allowed_providers,
        domains: v.domains,
        branding: v.branding,
        secret: stored,
        owner: who.account().cloned(),
        created_at: now,
        updated_at: now,
    };
    if client.owner.is_some() {
        let max = server.limits.max_clients_per_account;
        if !server.store.insert_owned_client(&client, max).await? {
            return Err(Problem::quota(format!(
                "this account already owns {max} clients, the most it may (limits.max_clients_per_account); \
                 delete one first"
            )));
        }
    } else {
        server.store.insert_client(&client).await?;
    }
    tracing::info!(client = %client.id, role = role.as_str(), "client created");
    server.emit(who.stamp(server.event("client.created", Outcome::Success)).target(&client.id));
    let mut out = json!({"clientId": client.id, "client": view(&client)});
    if let Some(s) = secret {
        out["clientSecret"] = json!(s);
    }
    Ok((StatusCode::CREATED, [(axum::http::header::CACHE_CONTROL, "no-store")], Json(out)).into_response())
}

pub async fn list(State(server): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    require_manager(&who)?;
    let clients = server.store.list_clients(who.account()).await?;
    Ok(Json(json!({"clients": clients.iter().map(view).collect::<Vec<_>>()})).into_response())
}

pub async fn get(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    require_manager(&who)?;
    let client = manageable(&server, &who, &id).await?;
    Ok(Json(view(&client)).into_response())
}

pub async fn update(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    require_manager(&who)?;
    let mut client = manageable(&server, &who, &id).await?;
    let body: ClientBody = json_body(&headers, &body)?;
    if body.roles.is_some() && role_of(body.roles.as_ref())? != client.role {
        return Err(Problem::invalid("roles", "a client's role cannot change; create a new client"));
    }
    if body.client_type.as_deref().is_some_and(|t| t != client.client_type.as_str()) {
        return Err(Problem::invalid("type", "a client's type cannot change; create a new client"));
    }
    let v = validate(&server, body, client.role)?;
    client.name = v.name;
    client.domains = v.domains;
    client.redirect_uris = v.redirect_uris;
    client.allowed_scopes = v.allowed_scopes;
    client.allowed_providers = v.allowed_providers;
    client.branding = v.branding;
    client.updated_at = server.clock.now();
    if !server.store.update_client(&client).await? {
        return Err(Problem::not_found("client"));
    }
    server.forget_client(&client.id);
    tracing::info!(client = %client.id, "client updated");
    server.emit(who.stamp(server.event("client.updated", Outcome::Success)).target(&client.id));
    Ok(Json(view(&client)).into_response())
}

pub async fn delete(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    require_manager(&who)?;
    let client = manageable(&server, &who, &id).await?;
    server.store.delete_client(&client.id, server.clock.now()).await?;
    server.forget_client(&client.id);
    tracing::info!(client = %client.id, "client deleted");
    server.emit(who.stamp(server.event("client.deleted", Outcome::Success)).target(&client.id));
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn rotate_secret(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    require_manager(&who)?;
    let mut client = manageable(&server, &who, &id).await?;
    if client.client_type != ClientType::Confidential {
        return Err(Problem::invalid("type", "a public client has no secret"));
    }
    let (secret, stored) = protect(&server, &client.id).await?;
    client.secret = Some(stored);
    client.updated_at = server.clock.now();
    server.store.update_client(&client).await?;
    server.forget_client(&client.id);
    tracing::info!(client = %client.id, "client secret rotated");
    server.emit(who.stamp(server.event("client.secret_rotated", Outcome::Success)).target(&client.id));
    Ok((
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(json!({"clientId": client.id, "clientSecret": secret})),
    )
        .into_response())
}
