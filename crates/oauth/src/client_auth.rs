//! Client authentication at the token, revocation and introspection endpoints:
//! `none` (public clients, PKCE-bound), `client_secret_basic`, `client_secret_post` and
//! `private_key_jwt` (RFC 7523 §2.2: a JWT signed with one of the client's registered keys, each
//! usable once).

use std::net::IpAddr;

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bk_crypto::secret::{b64url, sha256};
use bk_domain::audit::Outcome;
use bk_domain::client::{AuthMethod, Client, ClientType};
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
    PrivateKeyJwt,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::None => "none",
            Method::Basic => "client_secret_basic",
            Method::Post => "client_secret_post",
            Method::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// The endpoint a client authenticates at: a client assertion's `aud` may name it, the token
/// endpoint, or the issuer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Token,
    Revocation,
    Introspection,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Token => "/api/v1/auth/token",
            Endpoint::Revocation => "/api/v1/auth/revoke",
            Endpoint::Introspection => "/api/v1/auth/introspect",
        }
    }
}

/// RFC 7523 §2.2: the `client_assertion_type` of a JWT client assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The largest client assertion read (an RS256 JWT with a few claims is under 1 KB).
const MAX_ASSERTION_BYTES: usize = 8 * 1024;

/// Identifies and authenticates the client of a request coming from `source` to `endpoint`.
pub async fn authenticate(
    server: &AuthServer,
    headers: &HeaderMap,
    params: &Params,
    source: IpAddr,
    endpoint: Endpoint,
) -> Result<(Client, Method), OAuthError> {
    if params.get("client_assertion").is_some() || params.get("client_assertion_type").is_some() {
        return assertion(server, headers, params, source, endpoint).await;
    }
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
    let Some((client, caps)) = server.capable_client(&ClientId::from_string(client_id)).await? else {
        return Err(fail("unknown client"));
    };
    if caps.auth_method(client.client_type) == AuthMethod::PrivateKeyJwt {
        return Err(fail(
            "this client authenticates with private_key_jwt: send client_assertion_type and client_assertion",
        ));
    }
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
        authenticate(self, &HeaderMap::new(), &params, source, Endpoint::Token).await.map(|(client, _)| client)
    }
}

/// `private_key_jwt` (RFC 7521 §4.2, RFC 7523 §2.2 and §3): the assertion names the client
/// (`iss` = `sub` = its id), is signed by one of its registered keys, is meant for this server,
/// lives at most five minutes, and is used once — its `jti` is remembered (in Redis when instances
/// share it) until it could no longer be accepted. Every refusal is `invalid_client`, and says why
/// without echoing the assertion.
async fn assertion(
    server: &AuthServer,
    headers: &HeaderMap,
    params: &Params,
    source: IpAddr,
    endpoint: Endpoint,
) -> Result<(Client, Method), OAuthError> {
    if basic_credentials(headers)?.is_some() || params.get("client_secret").is_some() {
        return Err(OAuthError::invalid_request(
            "use one client authentication method: a client assertion and a secret were both sent",
        ));
    }
    match params.get("client_assertion_type") {
        Some(ASSERTION_TYPE) => {}
        Some(_) => {
            return Err(OAuthError::invalid_client(format!("client_assertion_type must be {ASSERTION_TYPE}")));
        }
        None => return Err(OAuthError::invalid_request("client_assertion_type is required with client_assertion")),
    }
    let jwt = params.require("client_assertion")?;
    if jwt.len() > MAX_ASSERTION_BYTES {
        return Err(OAuthError::invalid_client("the client assertion is too large"));
    }
    let head = crate::client_keys::peek(jwt).map_err(|e| OAuthError::invalid_client(e.to_string()))?;
    let Some(claimed) = head.client_id.clone() else {
        return Err(OAuthError::invalid_client("the client assertion's iss and sub must both be the client_id"));
    };
    if params.get("client_id").is_some_and(|id| id != claimed) {
        return Err(OAuthError::invalid_client("client_id does not match the client assertion"));
    }
    let id = ClientId::from_string(claimed);
    let Some((client, caps)) = server.capable_client(&id).await? else {
        return Err(OAuthError::invalid_client("unknown client"));
    };
    let keys = match (&caps.keys, client.client_type) {
        (Some(keys), ClientType::Confidential) => keys,
        _ => return Err(OAuthError::invalid_client("this client does not authenticate with private_key_jwt")),
    };
    let (token_endpoint, here) = (server.token_endpoint(), format!("{}{}", server.issuer, endpoint.path()));
    let audiences = [server.issuer.as_str(), token_endpoint.as_str(), here.as_str()];
    let now = server.clock.now();
    let refused = |reason: String, kind: &str| {
        tracing::info!(client = %client.id, ip = %source, reason = %reason, "client assertion refused");
        server.emit(
            server
                .event(kind, Outcome::Failure)
                .client(&client.id)
                .ip(source)
                .detail("method", Method::PrivateKeyJwt.as_str())
                .detail("reason", reason.clone()),
        );
        OAuthError::invalid_client(reason)
    };
    let verified = server
        .client_keys
        .verify(&client.id, keys, jwt, &head, &audiences, now)
        .await
        .map_err(|e| refused(e.to_string(), "client.auth_failed"))?;
    // One use per client and id, checked only once the signature proved the client made it.
    let key = b64url(&sha256(
        format!(
            "{}
{}",
            client.id, verified.jti
        )
        .as_bytes(),
    ));
    if server.limiter.acquire("client_assertion_ids", &key, 1, crate::client_keys::REMEMBER_JTI_SECS).await.is_err() {
        return Err(refused(
            "this client assertion was already used (jti): make a new one for every request".into(),
            "client.assertion_replayed",
        ));
    }
    Ok((client, Method::PrivateKeyJwt))
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
