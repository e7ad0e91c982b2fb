//! Discovery documents: RFC 8414 authorization-server metadata (also as OpenID configuration),
//! RFC 9728 protected-resource metadata for `/mcp`, and the JWKS.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bk_domain::client::{ASSERTION_ALGORITHMS, GrantType};
use bk_domain::scope::Scope;
use serde_json::{Value, json};

use crate::AuthServer;

fn scopes() -> Vec<&'static str> {
    Scope::ALL.iter().map(|s| s.as_str()).collect()
}

fn metadata(s: &AuthServer) -> Value {
    let i = &s.issuer;
    json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/api/v1/auth/authorize"),
        "token_endpoint": format!("{i}/api/v1/auth/token"),
        "registration_endpoint": format!("{i}/api/v1/auth/register"),
        "revocation_endpoint": format!("{i}/api/v1/auth/revoke"),
        "introspection_endpoint": format!("{i}/api/v1/auth/introspect"),
        "jwks_uri": format!("{i}/.well-known/jwks.json"),
        "scopes_supported": scopes(),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": GrantType::ALL.map(GrantType::as_str),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "revocation_endpoint_auth_methods_supported":
            ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"],
        "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": s.documents.is_some(),
        "dpop_signing_alg_values_supported": bk_access::dpop::ALGORITHMS,
        "service_documentation": format!("{i}/"),
    })
}

fn cached_json(v: Value) -> Response {
    let mut res = Json(v).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    res.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    res
}

pub async fn authorization_server(State(s): State<Arc<AuthServer>>) -> Response {
    cached_json(metadata(&s))
}

pub async fn openid_configuration(State(s): State<Arc<AuthServer>>) -> Response {
    let mut m = metadata(&s);
    if let Some(o) = m.as_object_mut() {
        o.insert("subject_types_supported".into(), json!(["public"]));
        o.insert("id_token_signing_alg_values_supported".into(), json!(["RS256"]));
        o.insert(
            "claims_supported".into(),
            json!([
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "at_hash",
                "email",
                "email_verified",
                "name",
                "preferred_username"
            ]),
        );
        o.insert("userinfo_endpoint".into(), json!(format!("{}/api/v1/auth/userinfo", s.issuer)));
    }
    cached_json(m)
}

pub async fn protected_resource(State(s): State<Arc<AuthServer>>) -> Response {
    cached_json(json!({
        "resource": s.mcp_resource(),
        "authorization_servers": [s.issuer],
        "scopes_supported": scopes(),
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": bk_access::dpop::ALGORITHMS,
        "dpop_bound_access_tokens_required": false,
        "resource_name": "Bridgekeeper MCP gateway",
        "resource_documentation": format!("{}/", s.issuer),
    }))
}

pub async fn jwks(State(s): State<Arc<AuthServer>>) -> Response {
    let mut res = (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        s.keys.current().jwks_json().to_owned(),
    )
        .into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    res.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    res
}
