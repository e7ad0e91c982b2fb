//! `application/x-www-form-urlencoded` request bodies, parsed strictly: a repeated parameter is an
//! error (RFC 6749 §3.2), and an empty value counts as absent.

use std::collections::HashMap;

use axum::http::{HeaderMap, header};

use crate::error::OAuthError;

pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Params, OAuthError> {
        let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !ct.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
            return Err(OAuthError::invalid_request("the body must be application/x-www-form-urlencoded"));
        }
        let mut map = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(body) {
            if v.is_empty() {
                continue;
            }
            if map.insert(k.to_string(), v.to_string()).is_some() {
                return Err(OAuthError::invalid_request(format!("parameter {k} is repeated")));
            }
        }
        Ok(Params(map))
    }

    /// Parameters given by the server itself (empty values count as absent, as when parsed).
    pub(crate) fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Params {
        Params(pairs.into_iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    pub fn require(&self, k: &str) -> Result<&str, OAuthError> {
        self.get(k).ok_or_else(|| OAuthError::invalid_request(format!("{k} is required")))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderValue, StatusCode};

    use super::*;

    fn form(content_type: &str, body: &str) -> Result<Params, OAuthError> {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        Params::parse(&h, body.as_bytes())
    }

    const FORM: &str = "application/x-www-form-urlencoded";

    #[test]
    fn body_must_be_form_encoded() {
        for ct in ["application/json", "text/plain", "multipart/form-data"] {
            let e = form(ct, "grant_type=x").err().expect(ct);
            assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "invalid_request"));
            assert_eq!(e.description, "the body must be application/x-www-form-urlencoded");
        }
        let e = Params::parse(&HeaderMap::new(), b"grant_type=x").err().expect("no content type");
        assert_eq!(e.code, "invalid_request");
        assert!(form("Application/X-WWW-Form-URLEncoded; charset=UTF-8", "a=1").is_ok());
    }

    #[test]
    fn repeated_parameter_rejected() {
        let e = form(FORM, "grant_type=refresh_token&scope=a&scope=b").err().expect("repeated");
        assert_eq!((e.code, e.description.as_str()), ("invalid_request", "parameter scope is repeated"));
    }

    #[test]
    fn empty_value_counts_as_absent() {
        let p = form(FORM, "scope=&resource=&resource=https%3A%2F%2Fbk.example%2Fmcp&state=").unwrap();
        assert_eq!(p.get("scope"), None);
        assert_eq!(p.get("state"), None);
        assert_eq!(p.get("resource"), Some("https://bk.example/mcp"), "an empty duplicate is not a repeat");
        let e = p.require("scope").expect_err("empty is missing");
        assert_eq!((e.code, e.description.as_str()), ("invalid_request", "scope is required"));
    }

    #[test]
    fn values_are_percent_and_plus_decoded() {
        let p = form(FORM, "scope=account+openid&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb").unwrap();
        assert_eq!(p.require("scope").unwrap(), "account openid");
        assert_eq!(p.get("redirect_uri"), Some("http://127.0.0.1:9/cb"));
        assert_eq!(p.get("code"), None);
    }
}
