//! `POST /api/v1/auth/token`: authenticate the client, then dispatch on `grant_type`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;

use crate::error::OAuthError;
use crate::form::Params;
use crate::grant_types::{authorization_code, refresh_token};
use crate::{AuthServer, client_auth};

pub async fn token(
    State(server): State<Arc<AuthServer>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let params = Params::parse(&headers, &body)?;
    let grant_type = params.require("grant_type")?;
    match grant_type {
        "authorization_code" | "refresh_token" => {}
        "password" => {
            return Err(OAuthError::unsupported_grant_type("the password grant is not supported (OAuth 2.1)"));
        }
        "implicit" | "token" => {
            return Err(OAuthError::unsupported_grant_type("the implicit grant is not supported (OAuth 2.1)"));
        }
        other => {
            return Err(OAuthError::unsupported_grant_type(format!(
                "grant_type {} is not supported; use authorization_code or refresh_token",
                other.chars().take(60).collect::<String>()
            )));
        }
    }
    let (client, _method) = client_auth::authenticate(&server, &headers, &params, peer.ip()).await?;
    match grant_type {
        "authorization_code" => authorization_code::exchange(&server, &client, &params).await,
        _ => refresh_token::exchange(&server, &client, &params).await,
    }
}
