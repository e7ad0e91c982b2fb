//! Bearer authentication for `/mcp` (RFC 6750 + RFC 9728): a missing or bad token gets 401 naming
//! the protected-resource metadata, a token without the needed scope gets 403 `insufficient_scope`.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bk_domain::scope::Scope;
use serde_json::json;

use bk_access::{Challenge, VerifyError};

use crate::Gateway;
use bk_access::AccessContext;

/// The caller of a `/mcp` request sent with `method`: a bearer token, or a DPoP-bound token with its
/// proof (RFC 9449; `htu` is the `/mcp` URL).
pub async fn authenticate(gw: &Gateway, headers: &HeaderMap, method: &str) -> Result<AccessContext, Response> {
    match gw.verifier.verify_request(headers, method, &gw.resource, &[gw.resource.as_str()]).await {
        Ok(Some(ctx)) => Ok(ctx),
        Ok(None) => Err(unauthorized(gw, None)),
        Err(VerifyError::Unavailable) => {
            Err(crate::jsonrpc::unavailable("the server could not check the token; retry", Some(1)))
        }
        Err(e) => {
            let description = e.to_string();
            match bk_access::dpop::challenge(headers, &e, Some(&gw.resource_metadata_url)) {
                Some(c) => {
                    let body = json!({"error": c.code, "error_description": description});
                    let mut res = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
                    res.headers_mut().insert(header::WWW_AUTHENTICATE, c.header);
                    add_nonce(gw, c.with_nonce, &mut res);
                    Err(res)
                }
                None => Err(unauthorized(gw, Some(&description))),
            }
        }
    }
}

/// A fresh DPoP nonce on an answer that asks for one.
pub(crate) fn add_nonce(gw: &Gateway, wanted: bool, res: &mut Response) {
    if wanted
        && let Some(n) = gw.verifier.dpop.nonce(gw.clock.now()).and_then(|n| header::HeaderValue::from_str(&n).ok())
    {
        res.headers_mut().insert("dpop-nonce", n);
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
