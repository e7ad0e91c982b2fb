//! Response headers every face carries.

use axum::http::{HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;

/// `X-Content-Type-Options: nosniff` on every response (JSON, problem JSON, text, pages) that does
/// not set it itself, so no browser sniffs an answer into something executable.
pub fn nosniff() -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"))
}
