//! `/api/v1/auth-clients`: create, list, read, update, delete OAuth clients and rotate their secrets.
//! Operators (operator tokens) manage every client and alone may grant WHITELABEL_CUSTOMER; a person
//! (token with scope `account`, or a signed-in browser) manages the THIRD_PARTY clients they own.
//! Another owner's client answers 404, exactly like one that does not exist.
//!
//! What a person can store is bounded: branding (a logo of at most 2 MB) only on white-label clients,
//! which only operators create; every other field has a size limit; and an account owns at most
//! `limits.max_clients_per_account` clients.
//!
//! Machine clients: a client's grant types (`client_credentials` and token exchange only on a
//! confidential client an operator creates), how it authenticates (a secret, or `private_key_jwt`
//! with the public keys it registers) and, set by an operator alone, the account its
//! `client_credentials` tokens act for (`boundAccountId`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bk_domain::audit::Outcome;
use bk_domain::client::{
    AuthMethod, Branding, Client, ClientCapabilities, ClientKeys, ClientOrigin, ClientRole, ClientType, GrantType,
    MAX_INLINE_JWKS_BYTES, check_grant_types, check_jwks, check_jwks_uri, check_whitelabel_redirects,
};
use bk_domain::ids::{AccountId, ClientId};
use bk_domain::redirect;
use bk_domain::scope::{Scope, ScopeSet};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Api;
use crate::caller::{Caller, caller};
use crate::openapi::{ClientOriginName, ClientRoleName, ClientTypeName, ScopeName, text_enum};
use crate::problem::{Body, PathParam, Problem, json_body};

/// Logos may be up to 2 MB (as base64 in JSON: ~2.7 MB), so these routes accept 4 MiB bodies. Only a
/// white-label client (operators alone create those) carries a logo; the other fields are bounded below,
/// so a person's third-party client stores a few dozen kilobytes at most.
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;
const MAX_LOGO_BYTES: usize = 2 * 1024 * 1024;
/// The longest redirect URI we store (browsers and servers commonly stop near 2 KB).
const MAX_REDIRECT_URI_BYTES: usize = 2048;

/// A client as created or replaced. On a replacement, `type` and `roles` may be repeated but not
/// changed.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"name": "Example app", "type": "public", "redirectUris": ["https://app.example.com/callback"],
    "allowedScopes": ["universal-mcp-read", "connections"]}))]
pub struct ClientBody {
    /// 1 to 100 printable characters.
    name: String,
    /// Default `confidential` (a secret is made and shown once).
    #[serde(rename = "type")]
    #[schema(value_type = Option<ClientTypeName>)]
    client_type: Option<String>,
    /// One role; default `third-party`. Only an operator creates a `whitelabel-customer` client.
    #[schema(value_type = Option<Vec<ClientRoleName>>)]
    roles: Option<Vec<String>>,
    /// Domain names the client's https pages live on (at most 20).
    #[serde(default)]
    domains: Vec<String>,
    /// 1 to 20 redirect URIs, each at most 2048 bytes (none for a client without the
    /// `authorization_code` grant).
    #[serde(default)]
    redirect_uris: Vec<String>,
    /// Scopes the client may ask for (unknown ones are dropped; default: all its role allows).
    allowed_scopes: Option<Vec<String>>,
    /// Provider ids the client may use (`null`: every provider; at most 100).
    allowed_providers: Option<Vec<String>>,
    /// Only for `whitelabel-customer` clients.
    branding: Option<BrandingBody>,
    /// Only for `whitelabel-customer` clients: the id of a configured upstream identity provider
    /// (`idp.providers`) its customers sign in with; its login page offers that one first and alone.
    identity_provider: Option<String>,
    /// The grant types the client may use; default `["authorization_code", "refresh_token"]`.
    /// `client_credentials` and `urn:ietf:params:oauth:grant-type:token-exchange` only for a
    /// confidential client an operator creates.
    #[schema(value_type = Option<Vec<GrantTypeName>>)]
    grant_types: Option<Vec<String>>,
    /// How the client authenticates; default `client_secret_basic` for a confidential client (a
    /// secret is made; `client_secret_post` works too) and `none` for a public one. With
    /// `private_key_jwt` it gets no secret and signs client assertions with a key in `jwks` or at
    /// `jwksUri`. May be repeated on a replacement but not changed.
    #[schema(value_type = Option<AuthMethodName>)]
    token_endpoint_auth_method: Option<String>,
    /// `private_key_jwt` only: the client's public signing keys, a JWK Set (at most 10 keys, 16 KB) …
    #[schema(value_type = Option<Object>)]
    jwks: Option<serde_json::Value>,
    /// … or the https URL serving it (exactly one of the two).
    jwks_uri: Option<String>,
    /// Operators only, and only with `client_credentials`: the account (`acc_…`) the client's
    /// `client_credentials` tokens act for. `null`: none — its tokens then reach no tenant.
    bound_account_id: Option<String>,
    /// Operators only, and only for a `whitelabel-customer` client: the active account (`acc_…`)
    /// that pays for the runs of the `billingAccountType: owner` agents created or last changed
    /// through this client (the SaaS absorbs its customers' credit costs). It grants that account
    /// nothing else. `null`: none (`owner` billing then charges the agent's own account).
    billing_account_id: Option<String>,
}

text_enum!(
    /// A grant type a client may use at the token endpoint.
    GrantTypeName,
    GrantType::ALL.map(GrantType::as_str)
);
text_enum!(
    /// How a client authenticates at the token, revocation and introspection endpoints:
    /// `none` (public), `client_secret_basic` (or `client_secret_post`: a secret), `private_key_jwt`.
    AuthMethodName,
    ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]
);

/// How a white-label client presents itself on the sign-in and consent pages.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BrandingBody {
    /// A `data:image/(png|jpeg|svg+xml|webp);base64,…` URI of at most 2 MB.
    logo: Option<String>,
    /// At most 500 characters.
    description: Option<String>,
    /// `#RRGGBB`.
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
    Ok(Some(Branding { logo: b.logo, description: b.description, brand_color: b.brand_color, identity_provider: None }))
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
    if body.redirect_uris.len() > 20 {
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
    if let Some(idp) = &body.identity_provider {
        if role != ClientRole::WhitelabelCustomer {
            return Err(Problem::invalid(
                "identityProvider",
                "identityProvider is only for white-label (whitelabel-customer) clients",
            ));
        }
        if !server.identity_providers.iter().any(|p| p == idp) {
            let known = if server.identity_providers.is_empty() {
                "none is configured (idp.providers)".to_owned()
            } else {
                format!("configured: {}", server.identity_providers.join(", "))
            };
            return Err(Problem::invalid(
                "identityProvider",
                format!("identityProvider must name a configured identity provider; {known}"),
            ));
        }
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
        branding: match (branding_of(body.branding)?, body.identity_provider) {
            (b, None) => b,
            (b, Some(idp)) => Some(Branding { identity_provider: Some(idp), ..b.unwrap_or_default() }),
        }
        .map(|mut b| {
            b.description = b.description.map(|d| server.audit.redact_text(&d));
            b
        }),
    })
}

/// The machine-client fields of a body, taken out before the rest is validated.
struct MachineFields {
    grant_types: Option<Vec<String>>,
    jwks: Option<serde_json::Value>,
    jwks_uri: Option<String>,
    bound_account_id: Option<String>,
}

impl MachineFields {
    fn take(body: &mut ClientBody) -> Self {
        Self {
            grant_types: body.grant_types.take(),
            jwks: body.jwks.take(),
            jwks_uri: body.jwks_uri.take(),
            bound_account_id: body.bound_account_id.take(),
        }
    }
}

/// The client's type and authentication method from `type` and `tokenEndpointAuthMethod`.
fn auth_method_of(client_type: Option<&str>, method: Option<&str>) -> Result<(ClientType, AuthMethod), Problem> {
    let mismatch = || {
        Problem::invalid(
            "tokenEndpointAuthMethod",
            "a public client authenticates with none, a confidential one with a secret or private_key_jwt",
        )
    };
    let client_type = match client_type {
        None => None,
        Some("confidential") => Some(ClientType::Confidential),
        Some("public") => Some(ClientType::Public),
        Some(_) => return Err(Problem::invalid("type", "type must be public or confidential")),
    };
    let method = match method {
        None => None,
        Some("none") => Some(AuthMethod::None),
        Some("client_secret_basic" | "client_secret_post") => Some(AuthMethod::ClientSecret),
        Some("private_key_jwt") => Some(AuthMethod::PrivateKeyJwt),
        Some(_) => {
            return Err(Problem::invalid(
                "tokenEndpointAuthMethod",
                "tokenEndpointAuthMethod must be none, client_secret_basic, client_secret_post or private_key_jwt",
            ));
        }
    };
    match (client_type, method) {
        (None | Some(ClientType::Confidential), None) => Ok((ClientType::Confidential, AuthMethod::ClientSecret)),
        (Some(ClientType::Public), None) | (None | Some(ClientType::Public), Some(AuthMethod::None)) => {
            Ok((ClientType::Public, AuthMethod::None))
        }
        (None | Some(ClientType::Confidential), Some(m @ (AuthMethod::ClientSecret | AuthMethod::PrivateKeyJwt))) => {
            Ok((ClientType::Confidential, m))
        }
        _ => Err(mismatch()),
    }
}

/// Checks the machine-client fields into capabilities: grant types (the operator-only ones for an
/// operator's confidential client), keys exactly when the method is `private_key_jwt`, and a bound
/// account (operators only, with `client_credentials`, an account that exists and is active).
async fn capabilities(
    server: &Api,
    m: MachineFields,
    client_type: ClientType,
    method: AuthMethod,
    operator: bool,
    redirect_uris: &[String],
) -> Result<ClientCapabilities, Problem> {
    let grant_types = match m.grant_types {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|g| {
                    GrantType::parse(g).ok_or_else(|| {
                        let shown: String = g.chars().take(60).collect();
                        Problem::invalid("grantTypes", format!("{shown} is not a grant type this server offers"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let effective = grant_types.clone().unwrap_or_else(|| GrantType::DEFAULT.to_vec());
    if !operator && effective.iter().any(|g| g.operator_only()) {
        return Err(Problem::forbidden(
            "only an operator can allow client_credentials or token exchange (they mint tokens no person approved)",
        ));
    }
    if effective.contains(&GrantType::AuthorizationCode) && redirect_uris.is_empty() {
        return Err(Problem::invalid("redirectUris", "give 1 to 20 redirect URIs"));
    }
    check_grant_types(&effective, client_type, operator, !redirect_uris.is_empty())
        .map_err(|e| Problem::invalid("grantTypes", e))?;
    let keys = match (method, m.jwks, m.jwks_uri) {
        (AuthMethod::PrivateKeyJwt, Some(jwks), None) => {
            if jwks.to_string().len() > MAX_INLINE_JWKS_BYTES {
                return Err(Problem::invalid(
                    "jwks",
                    format!(
                        "jwks must be at most {} KB; publish larger sets at a jwksUri",
                        MAX_INLINE_JWKS_BYTES / 1024
                    ),
                ));
            }
            check_jwks(&jwks).map_err(|e| Problem::invalid("jwks", e))?;
            Some(ClientKeys::Jwks(jwks))
        }
        (AuthMethod::PrivateKeyJwt, None, Some(uri)) => {
            check_jwks_uri(&uri).map_err(|e| Problem::invalid("jwksUri", e))?;
            Some(ClientKeys::JwksUri(uri))
        }
        (AuthMethod::PrivateKeyJwt, _, _) => {
            return Err(Problem::invalid("jwks", "private_key_jwt needs exactly one of jwks and jwksUri"));
        }
        (_, None, None) => None,
        (_, _, _) => return Err(Problem::invalid("jwks", "jwks and jwksUri are only for private_key_jwt")),
    };
    let bound_account = match m.bound_account_id {
        None => None,
        Some(_) if !operator => return Err(Problem::forbidden("only an operator binds a client to an account")),
        Some(_) if !effective.contains(&GrantType::ClientCredentials) => {
            return Err(Problem::invalid(
                "boundAccountId",
                "only a client allowed client_credentials acts for an account: add it to grantTypes",
            ));
        }
        Some(id) => {
            let unknown = || Problem::invalid("boundAccountId", "no active account has this id");
            if id.is_empty() || id.len() > 100 {
                return Err(unknown());
            }
            let id = AccountId::from_string(id);
            match server.store.account(&id).await? {
                Some(a) if !a.is_disabled() => Some(id),
                _ => return Err(unknown()),
            }
        }
    };
    Ok(ClientCapabilities { grant_types, keys, bound_account, billing_account: None })
}

/// An OAuth client as the API shows it (never its secret).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientView {
    pub id: ClientId,
    pub name: String,
    #[serde(rename = "type")]
    #[schema(value_type = ClientTypeName)]
    pub client_type: &'static str,
    #[schema(value_type = Vec<ClientRoleName>)]
    pub roles: [&'static str; 1],
    #[schema(value_type = ClientOriginName)]
    pub origin: &'static str,
    pub domains: Vec<String>,
    pub redirect_uris: Vec<String>,
    #[schema(value_type = Vec<ScopeName>)]
    pub allowed_scopes: Vec<&'static str>,
    /// `null`: every provider.
    pub allowed_providers: Option<Vec<String>>,
    pub branding: Option<Branding>,
    /// The upstream identity provider its customers sign in with (white-label clients).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_provider: Option<String>,
    #[schema(value_type = Vec<GrantTypeName>)]
    pub grant_types: Vec<&'static str>,
    #[schema(value_type = AuthMethodName)]
    pub token_endpoint_auth_method: &'static str,
    /// `private_key_jwt`: the registered JWK Set, if given inline.
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    /// `private_key_jwt`: where the client's JWK Set is fetched, if not inline.
    pub jwks_uri: Option<String>,
    /// The account the client's `client_credentials` tokens act for; `null`: none.
    pub bound_account_id: Option<AccountId>,
    /// The account that pays for the runs of the `owner`-billed agents set up through this
    /// white-label client; `null`: none.
    pub billing_account_id: Option<AccountId>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

fn view(c: &Client, caps: &ClientCapabilities) -> ClientView {
    ClientView {
        id: c.id.clone(),
        name: c.name.clone(),
        client_type: c.client_type.as_str(),
        roles: [role_name(c.role)],
        origin: c.origin.as_str(),
        domains: c.domains.clone(),
        redirect_uris: c.redirect_uris.clone(),
        allowed_scopes: c.allowed_scopes.iter().map(|s| s.as_str()).collect(),
        allowed_providers: c.allowed_providers.clone(),
        branding: c.branding.clone().map(|b| Branding { identity_provider: None, ..b }),
        identity_provider: c.branding.as_ref().and_then(|b| b.identity_provider.clone()),
        grant_types: caps.grant_types().into_iter().map(GrantType::as_str).collect(),
        token_endpoint_auth_method: caps.auth_method(c.client_type).as_str(),
        jwks: match &caps.keys {
            Some(ClientKeys::Jwks(j)) => Some(j.clone()),
            _ => None,
        },
        jwks_uri: match &caps.keys {
            Some(ClientKeys::JwksUri(u)) => Some(u.clone()),
            _ => None,
        },
        bound_account_id: caps.bound_account.clone(),
        billing_account_id: caps.billing_account.clone(),
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}

/// A client just created: a confidential client's secret is in `clientSecret`, shown this once.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedClient {
    pub client_id: ClientId,
    pub client: ClientView,
    /// Only for a confidential client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ClientList {
    pub clients: Vec<ClientView>,
}

/// A confidential client's new secret, shown this once (the old one stops working).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientSecret {
    pub client_id: ClientId,
    pub client_secret: String,
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

/// The client if the caller may manage it; 404 otherwise (no existence oracle). The built-in client
/// that every personal access token's session hangs off is no one's to manage: deleting it would
/// revoke every account's tokens at once, so it is not found here, as it is not listed.
async fn manageable(server: &Api, who: &Caller, id: &str) -> Result<(Client, ClientCapabilities), Problem> {
    if id == crate::pats::PAT_CLIENT {
        return Err(Problem::not_found("client"));
    }
    let (client, caps) =
        server.store.capable_client(&ClientId::from_string(id)).await?.ok_or_else(|| Problem::not_found("client"))?;
    match who {
        Caller::Operator { .. } => Ok((client, caps)),
        _ if client.owner.as_ref() == who.account() && client.owner.is_some() => Ok((client, caps)),
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

/// Creates an OAuth client.
#[utoipa::path(
    post,
    path = "/api/v1/auth-clients",
    operation_id = "createClient",
    tag = "clients",
    description = "Creates an OAuth client: an operator's (any role) or the caller's own third-party client (scope \
        `account`; at most `limits.max_clients_per_account`, else 409). A confidential client's secret is in the \
        answer, once (a `private_key_jwt` client has none: it registers `jwks` or `jwksUri`). Only an operator \
        allows `client_credentials` or token exchange (`grantTypes`, confidential clients), binds a client to an \
        account (`boundAccountId`) and sets a white-label client's billing account (`billingAccountId`), else 403.",
    request_body = ClientBody,
    security(("operator" = []), ("bearer" = ["account"])),
    responses(
        (status = 201, description = "Created", body = CreatedClient),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 409, response = crate::problem::Conflict),
        (status = 413, response = crate::problem::PayloadTooLarge),
        (status = 415, response = crate::problem::UnsupportedMediaType),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn create(State(server): State<Arc<Api>>, headers: HeaderMap, Body(body): Body) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    require_manager(&who)?;
    let mut body: ClientBody = json_body(&headers, &body)?;
    let role = role_of(body.roles.as_ref())?;
    let operator = matches!(who, Caller::Operator { .. });
    if role == ClientRole::WhitelabelCustomer && !operator {
        return Err(Problem::forbidden("only an operator can create a whitelabel-customer client"));
    }
    let (client_type, method) =
        auth_method_of(body.client_type.as_deref(), body.token_endpoint_auth_method.as_deref())?;
    let machine = MachineFields::take(&mut body);
    let billing = body.billing_account_id.take();
    let v = validate(&server, body, role)?;
    let mut caps = capabilities(&server, machine, client_type, method, operator, &v.redirect_uris).await?;
    caps.billing_account = billing_account(&server, billing, role, operator).await?;
    let now = server.clock.now();
    let id = ClientId::generate();
    // A client that signs assertions with its keys gets no secret.
    let (secret, stored) = match method {
        AuthMethod::ClientSecret => {
            let (s, stored) = protect(&server, &id).await?;
            (Some(s), Some(stored))
        }
        AuthMethod::None | AuthMethod::PrivateKeyJwt => (None, None),
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
    let max = server.limits.max_clients_per_account;
    if !server.store.insert_capable_client(&client, &caps, None, max).await? {
        return Err(Problem::quota(format!(
            "this account already owns {max} clients, the most it may (limits.max_clients_per_account); \
             delete one first"
        )));
    }
    tracing::info!(client = %client.id, role = role.as_str(), "client created");
    server.emit(machine_details(who.stamp(server.event("client.created", Outcome::Success)), &caps).target(&client.id));
    let out = CreatedClient { client_id: client.id.clone(), client: view(&client, &caps), client_secret: secret };
    Ok((StatusCode::CREATED, [(axum::http::header::CACHE_CONTROL, "no-store")], Json(out)).into_response())
}

/// The clients the caller manages.
#[utoipa::path(
    get,
    path = "/api/v1/auth-clients",
    operation_id = "listClients",
    tag = "clients",
    description = "Every client (an operator), or the clients the caller's account owns (scope `account`).",
    security(("operator" = []), ("bearer" = ["account"])),
    responses(
        (status = 200, description = "The clients", body = ClientList),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn list(State(server): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    require_manager(&who)?;
    let clients = server.store.list_capable_clients(who.account()).await?;
    Ok(Json(ClientList { clients: clients.iter().map(|(c, caps)| view(c, caps)).collect() }).into_response())
}

/// One client.
#[utoipa::path(
    get,
    path = "/api/v1/auth-clients/{id}",
    operation_id = "getClient",
    tag = "clients",
    description = "One client the caller manages; another owner's client is not found.",
    params(("id" = String, Path, description = "The client id, `cli_…`")),
    security(("operator" = []), ("bearer" = ["account"])),
    responses(
        (status = 200, description = "The client", body = ClientView),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn get(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    require_manager(&who)?;
    let (client, caps) = manageable(&server, &who, &id).await?;
    Ok(Json(view(&client, &caps)).into_response())
}

/// Replaces a client's settings.
#[utoipa::path(
    put,
    path = "/api/v1/auth-clients/{id}",
    operation_id = "updateClient",
    tag = "clients",
    description = "Replaces a client's name, domains, redirect URIs, allowed scopes and providers, branding, grant \
        types, keys, bound account and billing account (its type, role and authentication method cannot change; fields left out take \
        their defaults). The sessions of `client_credentials` tokens the new settings no longer allow (grant taken \
        away, bound to another account or none) end at once.",
    params(("id" = String, Path, description = "The client id, `cli_…`")),
    request_body = ClientBody,
    security(("operator" = []), ("bearer" = ["account"])),
    responses(
        (status = 200, description = "The client as stored", body = ClientView),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 413, response = crate::problem::PayloadTooLarge),
        (status = 415, response = crate::problem::UnsupportedMediaType),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn update(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
    Body(body): Body,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    require_manager(&who)?;
    let (mut client, current) = manageable(&server, &who, &id).await?;
    let mut body: ClientBody = json_body(&headers, &body)?;
    if body.roles.is_some() && role_of(body.roles.as_ref())? != client.role {
        return Err(Problem::invalid("roles", "a client's role cannot change; create a new client"));
    }
    if body.client_type.as_deref().is_some_and(|t| t != client.client_type.as_str()) {
        return Err(Problem::invalid("type", "a client's type cannot change; create a new client"));
    }
    let method = current.auth_method(client.client_type);
    if let Some(asked) = body.token_endpoint_auth_method.as_deref() {
        let (_, asked) = auth_method_of(Some(client.client_type.as_str()), Some(asked))?;
        if asked != method {
            return Err(Problem::invalid(
                "tokenEndpointAuthMethod",
                "a client's authentication method cannot change; create a new client",
            ));
        }
    }
    let machine = MachineFields::take(&mut body);
    let billing = body.billing_account_id.take();
    let v = validate(&server, body, client.role)?;
    let operator = matches!(who, Caller::Operator { .. });
    let mut caps = capabilities(&server, machine, client.client_type, method, operator, &v.redirect_uris).await?;
    caps.billing_account = billing_account(&server, billing, client.role, operator).await?;
    client.name = v.name;
    client.domains = v.domains;
    client.redirect_uris = v.redirect_uris;
    client.allowed_scopes = v.allowed_scopes;
    client.allowed_providers = v.allowed_providers;
    client.branding = v.branding;
    client.updated_at = server.clock.now();
    // In the same transaction: the sessions of client_credentials tokens it may no longer hold end.
    if !server.store.update_capable_client(&client, &caps, client.updated_at).await? {
        return Err(Problem::not_found("client"));
    }
    server.forget_client(&client.id);
    tracing::info!(client = %client.id, "client updated");
    server.emit(machine_details(who.stamp(server.event("client.updated", Outcome::Success)), &caps).target(&client.id));
    Ok(Json(view(&client, &caps)).into_response())
}

/// Deletes a client.
#[utoipa::path(
    delete,
    path = "/api/v1/auth-clients/{id}",
    operation_id = "deleteClient",
    tag = "clients",
    description = "Deletes a client and revokes everything it was granted.",
    params(("id" = String, Path, description = "The client id, `cli_…`")),
    security(("operator" = []), ("bearer" = ["account"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn delete(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    require_manager(&who)?;
    let (client, _) = manageable(&server, &who, &id).await?;
    server.store.delete_client(&client.id, server.clock.now()).await?;
    server.forget_client(&client.id);
    tracing::info!(client = %client.id, "client deleted");
    server.emit(who.stamp(server.event("client.deleted", Outcome::Success)).target(&client.id));
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Rotates a confidential client's secret.
#[utoipa::path(
    put,
    path = "/api/v1/auth-clients/{id}/secret",
    operation_id = "rotateClientSecret",
    tag = "clients",
    description = "Makes a new secret for a confidential client (shown once; the old one stops working). A public \
        client, or one that authenticates with `private_key_jwt`, has none (400).",
    params(("id" = String, Path, description = "The client id, `cli_…`")),
    security(("operator" = []), ("bearer" = ["account"])),
    responses(
        (status = 200, description = "The new secret", body = ClientSecret),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn rotate_secret(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    require_manager(&who)?;
    let (mut client, caps) = manageable(&server, &who, &id).await?;
    match caps.auth_method(client.client_type) {
        AuthMethod::ClientSecret => {}
        AuthMethod::None => return Err(Problem::invalid("type", "a public client has no secret")),
        AuthMethod::PrivateKeyJwt => {
            return Err(Problem::invalid(
                "tokenEndpointAuthMethod",
                "this client authenticates with private_key_jwt: it has no secret (change its keys instead)",
            ));
        }
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
        Json(ClientSecret { client_id: client.id.clone(), client_secret: secret }),
    )
        .into_response())
}

/// What an audit row of a client change says of its machine capabilities (never its keys).
fn machine_details(e: bk_domain::audit::AuditEvent, caps: &ClientCapabilities) -> bk_domain::audit::AuditEvent {
    let grants: Vec<&str> = caps.grant_types().into_iter().map(GrantType::as_str).collect();
    let mut e = e.detail("grant_types", grants.join(" "));
    if let Some(a) = &caps.bound_account {
        e = e.detail("bound_account", a.to_string());
    }
    if let Some(a) = &caps.billing_account {
        e = e.detail("billing_account", a.to_string());
    }
    e
}

/// Checks `billingAccountId`: only an operator sets it (else anyone could make another account
/// pay), only on a white-label client, and only to an account that exists and is active.
async fn billing_account(
    server: &Api,
    id: Option<String>,
    role: ClientRole,
    operator: bool,
) -> Result<Option<AccountId>, Problem> {
    let Some(id) = id else { return Ok(None) };
    if !operator {
        return Err(Problem::forbidden("only an operator sets a client's billing account (billingAccountId)"));
    }
    if role != ClientRole::WhitelabelCustomer {
        return Err(Problem::invalid(
            "billingAccountId",
            "only a whitelabel-customer client has a billing account (it pays for its customers' agent runs)",
        ));
    }
    let unknown = || Problem::invalid("billingAccountId", "no active account has this id");
    if id.is_empty() || id.len() > 100 {
        return Err(unknown());
    }
    let id = AccountId::from_string(id);
    match server.store.account(&id).await? {
        Some(a) if !a.is_disabled() => Ok(Some(id)),
        _ => Err(unknown()),
    }
}
