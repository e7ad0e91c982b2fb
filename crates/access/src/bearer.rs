//! The `Authorization: Bearer` header (RFC 6750 §2.1) and the `WWW-Authenticate: Bearer` challenge
//! (RFC 6750 §3, RFC 9728 §5.1): one parser and one builder for every face.

use http::{HeaderMap, HeaderValue, header};

/// The bearer credential of a request: `Authorization: Bearer <token>` (the scheme is
/// case-insensitive), trimmed; `None` when absent, empty or another scheme.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The access token of `Authorization: DPoP <token>` (RFC 9449 §7.1).
pub fn dpop_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("dpop") && !token.is_empty()).then_some(token)
}

/// A `WWW-Authenticate: Bearer` challenge. Parameters appear in a fixed order and only when set.
#[derive(Clone, Copy, Debug, Default)]
pub struct Challenge<'a> {
    /// `invalid_token`, `insufficient_scope`, … (RFC 6750 §3.1).
    pub error: Option<&'a str>,
    pub description: Option<&'a str>,
    /// The scope that would allow the request (step-up).
    pub scope: Option<&'a str>,
    /// Where the RFC 9728 protected-resource metadata lives.
    pub resource_metadata: Option<&'a str>,
}

impl Challenge<'_> {
    pub fn to_header_value(&self) -> HeaderValue {
        let mut s = String::from("Bearer");
        let params = [
            ("error", self.error),
            ("error_description", self.description),
            ("scope", self.scope),
            ("resource_metadata", self.resource_metadata),
        ];
        let mut first = true;
        for (name, value) in params {
            let Some(value) = value else { continue };
            s.push_str(if first { " " } else { ", " });
            first = false;
            s.push_str(name);
            s.push_str("=\"");
            // A quoted-string: no quote or backslash unescaped, nothing outside visible ASCII and space.
            for c in value.chars() {
                match c {
                    '"' | '\\' => {
                        s.push('\\');
                        s.push(c);
                    }
                    ' '..='~' => s.push(c),
                    _ => s.push('?'),
                }
            }
            s.push('"');
        }
        HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn parses_the_bearer_scheme_only() {
        assert_eq!(bearer_token(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&headers("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(&headers("BEARER abc")), Some("abc"));
        assert_eq!(bearer_token(&headers("Bearer ")), None);
        assert_eq!(bearer_token(&headers("Basic abc")), None);
        assert_eq!(bearer_token(&headers("Bearerabc")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn challenge_has_parameters_in_order_and_escapes_quotes() {
        assert_eq!(Challenge::default().to_header_value(), "Bearer");
        let c = Challenge {
            error: Some("invalid_token"),
            description: Some("bad \"token\"\n"),
            scope: Some("s1 s2"),
            resource_metadata: Some("https://x/.well-known/oauth-protected-resource/mcp"),
        };
        assert_eq!(
            c.to_header_value(),
            "Bearer error=\"invalid_token\", error_description=\"bad \\\"token\\\"?\", scope=\"s1 s2\", \
             resource_metadata=\"https://x/.well-known/oauth-protected-resource/mcp\""
        );
        let only_metadata = Challenge { resource_metadata: Some("m"), ..Default::default() };
        assert_eq!(only_metadata.to_header_value(), "Bearer resource_metadata=\"m\"");
    }
}
