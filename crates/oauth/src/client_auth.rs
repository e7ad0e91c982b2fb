//! Client authentication at the token, revocation and introspection endpoints:
//! `none` (public clients, PKCE-bound), `client_secret_basic` and `client_secret_post`.

use std::net::IpAddr;

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bk_domain::client::{Client, ClientType};
use bk_domain::ids::ClientId;

use crate::AuthServer;
use crate::error::OAuthError;
use crate::form::Params;
use crate::secrets::SecretCheck;

/// How the client proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    None,
    Basic,
    Post,
}

/// Identifies and authenticates the client of a request coming from `source`.
pub async fn authenticate(
    server: &AuthServer,
    headers: &HeaderMap,
    params: &Params,
    source: IpAddr,
) -> Result<(Client, Method), OAuthError> {
    let basic = basic_credentials(headers)?;
    let (client_id, secret, method) = match (&basic, params.get("client_secret")) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not Basic and client_secret together",
            ));
        }
        (Some((id, secret)), None) => {
            if params.get("client_id").is_some_and(|p| p != id) {
                return Err(OAuthError::invalid_request("client_id does not match the Basic credentials"));
            }
            (id.clone(), Some(secret.clone()), Method::Basic)
        }
        (None, Some(secret)) => (params.require("client_id")?.to_owned(), Some(secret.to_owned()), Method::Post),
        (None, None) => (params.require("client_id")?.to_owned(), None, Method::None),
    };
    let fail = |m: &str| {
        let e = OAuthError::invalid_client(m.to_owned());
        if method == Method::Basic { e.with_basic_challenge() } else { e }
    };
    let Some(client) = server.client(&ClientId::from_string(client_id)).await? else {
        return Err(fail("unknown client"));
    };
    match (client.client_type, secret) {
        (ClientType::Public, None) => Ok((client, method)),
        (ClientType::Public, Some(_)) => Err(fail("this is a public client: it has no secret to send")),
        (ClientType::Confidential, None) => Err(fail("client authentication is required for a confidential client")),
        (ClientType::Confidential, Some(secret)) => {
            let Some(stored) = client.secret.clone() else {
                return Err(fail("client authentication failed"));
            };
            match server
                .secrets
                .check(server.limiter.as_ref(), &client.id, &secret, &stored, source, server.clock.now_ms())
                .await
            {
                SecretCheck::Valid => Ok((client, method)),
                SecretCheck::Invalid => {
                    tracing::info!(client = %client.id, ip = %source, "client authentication failed");
                    server.emit(
                        server
                            .event("client.auth_failed", bk_domain::audit::Outcome::Failure)
                            .client(&client.id)
                            .ip(source),
                    );
                    Err(fail("client authentication failed"))
                }
                SecretCheck::Throttled(wait) => Err({
                    server.emit(
                        server
                            .event("ratelimit.refused", bk_domain::audit::Outcome::Denied)
                            .client(&client.id)
                            .ip(source)
                            .detail("limit", "client_authentication_failures"),
                    );
                    OAuthError::too_many_requests(
                        format!("client authentication failed, and too many have failed lately; retry in {wait} s"),
                        wait,
                    )
                }),
            }
        }
    }
}

impl AuthServer {
    /// Authenticates a client by id and secret outside the token endpoint (the white-label handoff
    /// sends them in its JSON body): the same secret check, failure limits and audit as
    /// `client_secret_post`. A public client (no secret sent) authenticates as `none`.
    pub async fn authenticate_client_secret(
        &self,
        client_id: &str,
        secret: &str,
        source: IpAddr,
    ) -> Result<Client, OAuthError> {
        let params = Params::from_pairs([("client_id", client_id), ("client_secret", secret)]);
        authenticate(self, &HeaderMap::new(), &params, source).await.map(|(client, _)| client)
    }
}

/// RFC 6749 §2.3.1: Basic credentials are form-urlencoded before base64.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| OAuthError::invalid_request("malformed Authorization header"))?;
    let Some(b64) = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")) else {
        return Ok(None);
    };
    let bad = || OAuthError::invalid_client("malformed Basic credentials").with_basic_challenge();
    let raw = STANDARD.decode(b64.trim()).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, secret) = raw.split_once(':').ok_or_else(bad)?;
    let decode = |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
    match (decode(id), decode(secret)) {
        (Some(id), Some(secret)) if !id.is_empty() => Ok(Some((id, secret))),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderValue, StatusCode};

    use super::*;

    fn with_authorization(value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
        h
    }

    fn basic(raw: &str) -> Result<Option<(String, String)>, OAuthError> {
        basic_credentials(&with_authorization(format!("Basic {}", STANDARD.encode(raw)).as_bytes()))
    }

    fn assert_malformed(r: Result<Option<(String, String)>, OAuthError>) {
        let e = r.expect_err("malformed Basic credentials are an error");
        assert_eq!((e.status, e.code), (StatusCode::UNAUTHORIZED, "invalid_client"));
        assert_eq!(e.description, "malformed Basic credentials");
        assert!(e.basic_challenge, "a failed Basic authentication answers with a Basic challenge");
    }

    #[test]
    fn no_basic_header_means_no_basic_credentials() {
        assert_eq!(basic_credentials(&HeaderMap::new()).unwrap(), None);
        assert_eq!(basic_credentials(&with_authorization(b"Bearer abc")).unwrap(), None);
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        assert_eq!(basic("cli_1:bks_secret").unwrap(), Some(("cli_1".into(), "bks_secret".into())));
        // RFC 6749 §2.3.1: id and secret are form-urlencoded before base64.
        assert_eq!(basic("my%3Aclient:p%40ss+word").unwrap(), Some(("my:client".into(), "p@ss word".into())));
        // Only the first colon separates them.
        assert_eq!(basic("cli_1:a:b").unwrap(), Some(("cli_1".into(), "a:b".into())));
        let lower = with_authorization(format!("basic {}", STANDARD.encode("c:s")).as_bytes());
        assert_eq!(basic_credentials(&lower).unwrap(), Some(("c".into(), "s".into())));
    }

    #[test]
    fn malformed_basic_credentials_rejected_with_a_challenge() {
        assert_malformed(basic_credentials(&with_authorization(b"Basic !!!not-base64!!!")));
        assert_malformed(basic("no-colon"));
        assert_malformed(basic(":secret-without-id"));
        assert_malformed(basic_credentials(&with_authorization(
            format!("Basic {}", STANDARD.encode([0xff, b':', b's'])).as_bytes(),
        )));
    }

    #[test]
    fn non_ascii_authorization_header_is_a_bad_request() {
        let e = basic_credentials(&with_authorization(b"Basic \xff")).expect_err("not visible ASCII");
        assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "invalid_request"));
        assert_eq!(e.description, "malformed Authorization header");
    }
}
