//! Bearer authentication for `/mcp` (RFC 6750 + RFC 9728): a missing or bad token gets 401 naming
//! the protected-resource metadata, a token without the needed scope gets 403 `insufficient_scope`.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bk_domain::scope::Scope;
use serde_json::json;

use bk_access::{Challenge, VerifyError, bearer_token};

use crate::Gateway;
use bk_access::AccessContext;

pub async fn authenticate(gw: &Gateway, headers: &HeaderMap) -> Result<AccessContext, Response> {
    let Some(token) = bearer_token(headers) else {
        return Err(unauthorized(gw, None));
    };
    match gw.verifier.verify_bearer(token, &[gw.resource.as_str()]).await {
        Ok(ctx) => Ok(ctx),
        Err(VerifyError::Unavailable) => {
            Err(crate::jsonrpc::unavailable("the server could not check the token; retry", Some(1)))
        }
        Err(e) => Err(unauthorized(gw, Some(&e.to_string()))),
    }
}

fn unauthorized(gw: &Gateway, error: Option<&str>) -> Response {
    let challenge = Challenge {
        error: error.map(|_| "invalid_token"),
        description: error,
        scope: Some(Scope::McpReadWrite.as_str()),
        resource_metadata: Some(&gw.resource_metadata_url),
    };
    let mut res = (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": "invalid_token", "error_description": error.unwrap_or("a bearer access token is required")})),
    )
        .into_response();
    res.headers_mut().insert(header::WWW_AUTHENTICATE, challenge.to_header_value());
    res
}

/// 403 with the scope that would allow the operation, so the client can step up.
pub fn insufficient_scope(gw: &Gateway, needed: Scope) -> Response {
    let description = format!("this operation needs the scope {}", needed.as_str());
    let challenge = Challenge {
        error: Some("insufficient_scope"),
        description: Some(&description),
        scope: Some(needed.as_str()),
        resource_metadata: Some(&gw.resource_metadata_url),
    };
    let mut res =
        (StatusCode::FORBIDDEN, axum::Json(json!({"error": "insufficient_scope", "error_description": description})))
            .into_response();
    res.headers_mut().insert(header::WWW_AUTHENTICATE, challenge.to_header_value());
    res
}
