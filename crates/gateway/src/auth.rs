//! Bearer authentication for `/mcp` (RFC 6750 + RFC 9728): a missing or bad token gets 401 naming
//! the protected-resource metadata, a token without the needed scope gets 403 `insufficient_scope`.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bk_domain::scope::Scope;
use serde_json::json;

use crate::Gateway;
use crate::context::RequestContext;

pub async fn authenticate(gw: &Gateway, headers: &HeaderMap) -> Result<RequestContext, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(unauthorized(gw, None));
    };
    match gw.verifier.verify_bearer(token, &[gw.resource.as_str()]).await {
        Ok(ctx) => Ok(ctx.into()),
        Err(bk_oauth::VerifyError::Unavailable) => {
            Err(crate::jsonrpc::unavailable("the server could not check the token; retry", Some(1)))
        }
        Err(e) => Err(unauthorized(gw, Some(&e.to_string()))),
    }
}

fn unauthorized(gw: &Gateway, error: Option<&str>) -> Response {
    let scope = Scope::McpReadWrite.as_str();
    let challenge = match error {
        None => format!("Bearer resource_metadata=\"{}\", scope=\"{scope}\"", gw.resource_metadata_url),
        Some(desc) => format!(
            "Bearer error=\"invalid_token\", error_description=\"{desc}\", resource_metadata=\"{}\", scope=\"{scope}\"",
            gw.resource_metadata_url
        ),
    };
    let mut res = (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": "invalid_token", "error_description": error.unwrap_or("a bearer access token is required")})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    res
}

/// 403 with the scope that would allow the operation, so the client can step up.
pub fn insufficient_scope(gw: &Gateway, needed: Scope) -> Response {
    let challenge = format!(
        "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\", error_description=\"this operation needs the scope {}\"",
        needed.as_str(),
        gw.resource_metadata_url,
        needed.as_str()
    );
    let mut res = (
        StatusCode::FORBIDDEN,
        axum::Json(json!({"error": "insufficient_scope", "error_description": format!("this operation needs the scope {}", needed.as_str())})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    res
}
