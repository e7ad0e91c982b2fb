//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document, as the MCP
//! specification 2026-07-28 uses it): a `client_id` that is an HTTPS URL names a JSON document, at
//! that URL, describing the client. These are the rules for the URL and the document; fetching it
//! is the authorization server's.

use serde::Deserialize;
use url::Url;

use crate::UnixTime;
use crate::client::{Client, ClientOrigin, ClientRole, ClientType};
use crate::ids::ClientId;
use crate::redirect;
use crate::scope::ScopeSet;

/// Longest document URL accepted as a client id.
pub const MAX_URL_LEN: usize = 512;

/// Does this `client_id` name a metadata document (rather than a registered client)?
pub fn is_document_client_id(client_id: &str) -> bool {
    client_id.starts_with("https://")
}

/// Checks a document `client_id`: `https`, a path other than `/`, no `.`/`..` segments, no fragment,
/// no user info, no query (the draft says SHOULD NOT; refusing keeps one document per client), at
/// most `MAX_URL_LEN` characters. The URL as given is the client id: no normalisation.
pub fn check_document_url(client_id: &str) -> Result<Url, String> {
    if client_id.len() > MAX_URL_LEN {
        return Err(format!("the client_id URL is longer than {MAX_URL_LEN} characters"));
    }
    let url = Url::parse(client_id).map_err(|_| "the client_id is not a valid URL".to_owned())?;
    if url.scheme() != "https" {
        return Err("a client_id URL must use https".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the client_id URL has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the client_id URL must not contain user information".into());
    }
    if url.fragment().is_some() || client_id.contains('#') {
        return Err("the client_id URL must not contain a fragment".into());
    }
    if url.query().is_some() {
        return Err("the client_id URL must not contain a query".into());
    }
    if url.path() == "/" || url.path().is_empty() {
        return Err("the client_id URL must have a path".into());
    }
    // The parser removes dot segments; the id must not have had any (and must be as parsed).
    let raw_path = client_id.splitn(4, '/').nth(3).unwrap_or("");
    if raw_path
        .split('/')
        .any(|seg| seg == "." || seg == ".." || seg.eq_ignore_ascii_case("%2e") || seg.eq_ignore_ascii_case("%2e%2e"))
    {
        return Err("the client_id URL must not contain . or .. path segments".into());
    }
    Ok(url)
}

/// Why a document cannot describe its client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DocumentError(pub String);

#[derive(Deserialize)]
struct Document {
    client_id: Option<String>,
    client_name: Option<String>,
    redirect_uris: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    scope: Option<String>,
    application_type: Option<String>,
    client_secret: Option<serde_json::Value>,
    client_secret_expires_at: Option<serde_json::Value>,
}

/// Validates a fetched document for `client_id` and returns the client it describes: a public,
/// third-party client whose redirect URIs are exactly the document's.
pub fn client_from_document(client_id: &str, body: &[u8], now: UnixTime) -> Result<Client, DocumentError> {
    let bad = |m: String| DocumentError(m);
    let doc: Document = serde_json::from_slice(body)
        .map_err(|e| bad(format!("the document is not a JSON client metadata object: {e}")))?;
    match doc.client_id.as_deref() {
        Some(id) if id == client_id => {}
        Some(_) => return Err(bad("the document's client_id is not the URL it was fetched from".into())),
        None => return Err(bad("the document has no client_id".into())),
    }
    if doc.client_secret.is_some() || doc.client_secret_expires_at.is_some() {
        return Err(bad("a client metadata document must not carry a client secret".into()));
    }
    match doc.token_endpoint_auth_method.as_deref() {
        None | Some("none") => {}
        Some(m) => {
            return Err(bad(format!(
                "token_endpoint_auth_method {} is not supported for a client metadata document; use none",
                m.chars().take(40).collect::<String>()
            )));
        }
    }
    let name: String = doc.client_name.unwrap_or_default().chars().filter(|c| !c.is_control()).take(100).collect();
    if name.trim().is_empty() {
        return Err(bad("the document has no client_name".into()));
    }
    let uris = doc.redirect_uris.unwrap_or_default();
    if uris.is_empty() || uris.len() > 20 {
        return Err(bad("the document must list 1 to 20 redirect_uris".into()));
    }
    for u in &uris {
        redirect::validate_registration(u).map_err(|e| bad(e.to_string()))?;
    }
    if let Some(t) = doc.application_type.as_deref() {
        check_application_type(t, &uris).map_err(bad)?;
    }
    if let Some(g) =
        doc.grant_types.iter().flatten().find(|g| !matches!(g.as_str(), "authorization_code" | "refresh_token"))
    {
        return Err(bad(format!("grant type {} is not supported", g.chars().take(40).collect::<String>())));
    }
    if doc.response_types.iter().flatten().any(|r| r != "code") {
        return Err(bad("only the response type code is supported".into()));
    }
    let role = ClientRole::ThirdParty;
    let allowed_scopes = match doc.scope.as_deref() {
        Some(s) if !s.trim().is_empty() => ScopeSet::parse_lenient(s).intersect(&role.scope_ceiling()),
        _ => role.scope_ceiling(),
    };
    if allowed_scopes.is_empty() {
        return Err(bad("none of the document's scopes is available to this client".into()));
    }
    Ok(Client {
        id: ClientId::from_string(client_id.to_owned()),
        name,
        client_type: ClientType::Public,
        role,
        origin: ClientOrigin::Document,
        redirect_uris: uris,
        allowed_scopes,
        allowed_providers: None,
        domains: Vec::new(),
        branding: None,
        secret: None,
        owner: None,
        created_at: now,
        updated_at: now,
    })
}

/// OpenID Connect Dynamic Registration §2 `application_type`: a `native` client registers only
/// loopback `http` URIs or private-use schemes; a `web` client only `https` URIs on hosts other
/// than loopback.
pub fn check_application_type(application_type: &str, redirect_uris: &[String]) -> Result<(), String> {
    for uri in redirect_uris {
        let Ok(url) = Url::parse(uri) else { continue };
        let ok = match application_type {
            "native" => match url.scheme() {
                "http" => redirect::is_loopback(&url),
                "https" => false,
                _ => true,
            },
            "web" => url.scheme() == "https" && !redirect::is_loopback(&url),
            other => {
                return Err(format!(
                    "application_type {} is not supported; use web or native",
                    other.chars().take(40).collect::<String>()
                ));
            }
        };
        if !ok {
            return Err(format!(
                "redirect URI {} does not suit a {application_type} application (native: loopback http or a private-use scheme; web: https on a public host)",
                uri.chars().take(200).collect::<String>()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "https://app.example/oauth/client.json";

    fn doc(extra: serde_json::Value) -> Vec<u8> {
        let mut d = serde_json::json!({
            "client_id": ID,
            "client_name": "Example",
            "redirect_uris": ["http://127.0.0.1:3000/callback"],
        });
        for (k, v) in extra.as_object().unwrap() {
            d[k] = v.clone();
        }
        serde_json::to_vec(&d).unwrap()
    }

    #[test]
    fn document_urls() {
        assert!(check_document_url(ID).is_ok());
        assert!(check_document_url("https://app.example:8443/c").is_ok());
        for bad in [
            "http://app.example/c.json",
            "https://app.example/",
            "https://app.example",
            "https://user:pw@app.example/c.json",
            "https://app.example/c.json#x",
            "https://app.example/c.json?v=1",
            "https://app.example/a/../c.json",
            "https://app.example/./c.json",
        ] {
            assert!(check_document_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_valid_document_is_a_public_third_party_client() {
        let c = client_from_document(ID, &doc(serde_json::json!({"scope": "universal-mcp-read openid"})), 7).unwrap();
        assert_eq!(c.id.as_str(), ID);
        assert_eq!(
            (c.client_type, c.role, c.origin),
            (ClientType::Public, ClientRole::ThirdParty, ClientOrigin::Document)
        );
        assert_eq!(c.redirect_uris, vec!["http://127.0.0.1:3000/callback".to_owned()]);
        assert_eq!(c.allowed_scopes.to_string(), ScopeSet::parse_lenient("universal-mcp-read openid").to_string());
    }

    #[test]
    fn documents_that_cannot_describe_their_client_are_refused() {
        let cases = [
            (doc(serde_json::json!({"client_id": "https://other.example/c.json"})), "not the URL"),
            (doc(serde_json::json!({"client_secret": "s3cret"})), "secret"),
            (doc(serde_json::json!({"token_endpoint_auth_method": "client_secret_basic"})), "not supported"),
            (doc(serde_json::json!({"redirect_uris": []})), "redirect_uris"),
            (doc(serde_json::json!({"redirect_uris": ["http://evil.example/cb"]})), "https"),
            (doc(serde_json::json!({"client_name": " "})), "client_name"),
            (doc(serde_json::json!({"grant_types": ["client_credentials"]})), "grant type"),
            (doc(serde_json::json!({"application_type": "web"})), "web application"),
            (b"[1,2]".to_vec(), "JSON"),
        ];
        for (body, why) in cases {
            let e = client_from_document(ID, &body, 0).unwrap_err();
            assert!(e.0.contains(why), "{why}: {e}");
        }
    }

    #[test]
    fn application_types_follow_their_redirect_rules() {
        let v = |uris: &[&str]| uris.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(check_application_type("native", &v(&["http://127.0.0.1:1/cb", "com.example.app:/cb"])).is_ok());
        assert!(check_application_type("native", &v(&["https://app.example/cb"])).is_err());
        assert!(check_application_type("web", &v(&["https://app.example/cb"])).is_ok());
        assert!(check_application_type("web", &v(&["http://localhost:1/cb"])).is_err());
        assert!(check_application_type("web", &v(&["cursor://cb"])).is_err());
        assert!(check_application_type("desktop", &v(&["https://app.example/cb"])).is_err());
    }
}
