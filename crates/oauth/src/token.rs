//! `POST /api/v1/auth/token`: authenticate the client, then dispatch on `grant_type`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;

use bk_access::dpop::{Proof, Refusal};

use crate::error::OAuthError;
use crate::form::Params;
use bk_domain::client::{GrantType, grant_refusal};

use crate::client_auth::Endpoint;
use crate::grant_types::{authorization_code, client_credentials, refresh_token, token_exchange};
use crate::{AuthServer, client_auth};

pub async fn token(
    State(server): State<Arc<AuthServer>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let params = Params::parse(&headers, &body)?;
    let answer = grant(&server, peer, &headers, &params).await;
    let grant_type = params.get("grant_type").filter(|g| KNOWN_GRANTS.contains(g)).unwrap_or("other");
    let outcome = match &answer {
        Ok(_) => "issued",
        Err(e) => e.code,
    };
    metrics::counter!("bridgekeeper_token_grants_total", "grant_type" => grant_type.to_owned(), "outcome" => outcome)
        .increment(1);
    answer
}

/// Grant types named as themselves in `/metrics` (any other is counted as `other`).
const KNOWN_GRANTS: &[&str] = &[
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "password",
    "implicit",
    "token",
    "urn:ietf:params:oauth:grant-type:token-exchange",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "urn:ietf:params:oauth:grant-type:device_code",
];

async fn grant(
    server: &AuthServer,
    peer: SocketAddr,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Response, OAuthError> {
    let grant_type = params.require("grant_type")?;
    let grant = match GrantType::parse(grant_type) {
        Some(g) => g,
        None if grant_type == "password" => {
            return Err(OAuthError::unsupported_grant_type("the password grant is not supported (OAuth 2.1)"));
        }
        None if matches!(grant_type, "implicit" | "token") => {
            return Err(OAuthError::unsupported_grant_type("the implicit grant is not supported (OAuth 2.1)"));
        }
        None => {
            return Err(OAuthError::unsupported_grant_type(format!(
                "grant_type {} is not supported; use authorization_code, refresh_token, client_credentials or {}",
                grant_type.chars().take(60).collect::<String>(),
                GrantType::TokenExchange.as_str()
            )));
        }
    };
    let (client, _method) = client_auth::authenticate(server, headers, params, peer.ip(), Endpoint::Token).await?;
    let proof = dpop_proof(server, headers).await?;
    // The capabilities as read with the client (through the same one-second cache).
    let caps = server.capable_client(&client.id).await?.map(|(_, caps)| caps).unwrap_or_default();
    match grant {
        GrantType::AuthorizationCode | GrantType::RefreshToken => {
            if let Some(why) = grant_refusal(&client, &caps, grant) {
                return Err(OAuthError::unauthorized_client(why));
            }
            if grant == GrantType::AuthorizationCode {
                authorization_code::exchange(server, &client, params, proof.as_ref()).await
            } else {
                refresh_token::exchange(server, &client, params, proof.as_ref()).await
            }
        }
        GrantType::ClientCredentials => client_credentials::issue(server, &client, &caps, params, proof.as_ref()).await,
        GrantType::TokenExchange => token_exchange::exchange(server, &client, &caps, params, proof.as_ref()).await,
    }
}

/// The request's DPoP proof (RFC 9449 §4.3) for this endpoint, if it sent one.
async fn dpop_proof(server: &AuthServer, headers: &HeaderMap) -> Result<Option<Proof>, OAuthError> {
    let now = server.clock.now();
    let refuse = |r: Refusal| OAuthError::dpop(r, server.verifier.dpop.nonce(now));
    let mut values = headers.get_all("dpop").iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(refuse(Refusal::Header));
    }
    let proof = first.to_str().map_err(|_| refuse(Refusal::Header))?;
    let endpoint = format!("{}/api/v1/auth/token", server.issuer);
    server.verifier.dpop.check(proof, "POST", &endpoint, None, now).await.map(Some).map_err(refuse)
}
