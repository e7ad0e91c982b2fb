//! The REST face's OpenAPI 3.1 document, generated from the handlers' own `#[utoipa::path]`
//! attributes and the types they read and answer (`GET /openapi.json`), and the same operations as
//! a plain page (`GET /docs`, rendered here: no script, nothing fetched from elsewhere). The router
//! is built from the very same attributes (`lib.rs`, `routes!`), so a route cannot be served without
//! its operation being in the document.

use std::sync::Arc;

use axum::Extension;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bk_domain::scope::Scope;
use utoipa::Modify;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr, Server};

use crate::problem::{
    BadGateway, BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, ProblemDetails, TooManyRequests,
    Unauthorized, Unavailable, UnsupportedMediaType,
};

/// The security scheme of a person's credential: an OAuth access token (JWT) issued by this server
/// or a personal access token (`bkp_…`). Operations name the scopes they need in their requirement.
pub const BEARER: &str = "bearer";
/// The security scheme of an operator token (`bko_…`, `bridgekeeper admin token create`).
pub const OPERATOR: &str = "operator";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Bridgekeeper REST API",
        description = "The management API of a Bridgekeeper server: personal access tokens, the account and the apps \
            it authorized, OAuth clients, the audit log, the provider catalog and the account's connected services, \
            and the operators' account administration.\n\n\
            A person's requests carry `Authorization: Bearer` with an access token issued by this server (to the \
            issuer or its `/mcp` resource) or a personal access token (`bkp_…`); each operation names the scope it \
            needs in its security requirement. A person signed in to this server's pages in a browser may call the \
            same operations with the session cookie instead, acting with every scope (writes must come from this \
            origin). Operator operations take an operator token (`bko_…`, `bridgekeeper admin token create`).\n\n\
            Every error is RFC 9457 problem JSON (`application/problem+json`); a 400 names the field or parameter \
            at fault in `field`. Another account's object answers 404, exactly like one that does not exist.\n\n\
            The OAuth endpoints (`/api/v1/auth/authorize`, `/token`, `/register`, …) are described by this \
            server's authorization-server metadata (`/.well-known/oauth-authorization-server`) and answer RFC 6749 \
            errors; `/mcp` speaks JSON-RPC. Neither is part of this document."
    ),
    components(
        schemas(ProblemDetails),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            PayloadTooLarge,
            UnsupportedMediaType,
            TooManyRequests,
            BadGateway,
            Unavailable
        )
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "tokens", description = "Personal access tokens"),
        (name = "account", description = "The caller's account and the apps it authorized"),
        (name = "clients", description = "OAuth clients (auth clients)"),
        (name = "handoff", description = "The white-label handoff to this server's pages"),
        (name = "audit", description = "The audit log and its live stream"),
        (name = "providers", description = "The catalog of services an account can connect"),
        (name = "connections", description = "The account's connected services"),
        (name = "llm", description = "OpenAI-compatible LLM access, billed in credits"),
        (name = "credits", description = "The account's credit ledger"),
        (name = "knowledge", description = "The account's knowledge bases and their documents"),
        (name = "admin", description = "Operators: account administration and the whole audit log"),
        (name = "documentation", description = "This document"),
        (name = "agents", description = "The account's agents and chat with them")
    )
)]
pub(crate) struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A person's credential: an OAuth access token issued by this server (a JWT), or a personal \
                         access token (`bkp_…`). The scopes an operation lists are those the credential must carry.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            OPERATOR,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An operator token (`bko_…`), made with `bridgekeeper admin token create` on the server.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Declares a string enumeration for the document only: the values a text field of the API takes
/// (the handlers read and write those as text, each checked by its own rule).
macro_rules! text_enum {
    ($(#[doc = $doc:literal])+ $name:ident, $values:expr) => {
        $(#[doc = $doc])+
        pub enum $name {}

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                let doc = [$($doc.trim()),+].join(" ");
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some($values))
                    .description(Some(doc))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}
pub(crate) use text_enum;

text_enum!(
    /// A scope a credential or client may carry.
    ScopeName,
    Scope::ALL.iter().map(|s| s.as_str())
);
text_enum!(
    /// `confidential` (with a secret) or `public` (PKCE only).
    ClientTypeName,
    ["public", "confidential"]
);
text_enum!(
    /// `third-party` (an app people authorize) or `whitelabel-customer` (an operator's first-party,
    /// branded client).
    ClientRoleName,
    ["third-party", "whitelabel-customer"]
);
text_enum!(
    /// How the client came to be: `dcr` (dynamic registration), `manual` (this API or the command
    /// line), `cimd` (a client ID metadata document).
    ClientOriginName,
    ["dcr", "manual", "cimd"]
);
text_enum!(
    /// `connections` (the connections page) or `account` (the account dashboard).
    HandoffIntentName,
    ["connections", "account"]
);
text_enum!(
    /// `active`, `disabled` (everything it held revoked; signing in refused) or `deleted`.
    AccountStatusName,
    ["active", "disabled", "deleted"]
);
text_enum!(
    /// How a provider is connected: `oauth2`, `mcp` (a remote MCP server protected by OAuth),
    /// `api_key` or `token_exchange`.
    AuthKindName,
    ["oauth2", "mcp", "api_key", "token_exchange"]
);

/// The document as served, built once at start.
pub(crate) struct Document {
    json: axum::body::Bytes,
    html: String,
}

/// Completes the generated document for this server (its issuer as the one server) and renders it.
pub(crate) fn document(mut doc: OpenApi, issuer: &str) -> Document {
    doc.servers = Some(vec![Server::new(issuer)]);
    // A return URL on this server is one every caller may use: the example names this server's.
    if let Some(RefOr::T(Schema::Object(initiate))) =
        doc.components.as_mut().and_then(|c| c.schemas.get_mut("Initiate"))
        && let Some(example) = initiate.example.as_mut()
    {
        example["redirectUrl"] = serde_json::Value::String(format!("{issuer}/connections"));
    }
    let json = serde_json::to_vec(&doc).unwrap_or_default().into();
    Document { html: page(&doc), json }
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "getOpenApi",
    tag = "documentation",
    description = "This OpenAPI 3.1 document. No credential needed.",
    responses((status = 200, description = "The document", content_type = "application/json", body = Object))
)]
pub(crate) async fn openapi_json(Extension(doc): Extension<Arc<Document>>) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300")),
        ],
        doc.json.clone(),
    )
        .into_response()
}

/// The operations of this document as a page.
#[utoipa::path(
    get,
    path = "/docs",
    operation_id = "getDocs",
    tag = "documentation",
    description = "The operations of this document as a plain HTML page. No credential needed.",
    responses((status = 200, description = "The page", content_type = "text/html", body = String))
)]
pub(crate) async fn docs_page(Extension(doc): Extension<Arc<Document>>) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                ),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        ],
        doc.html.clone(),
    )
        .into_response()
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `code` spans for Markdown backticks, after escaping; paragraphs for blank lines.
fn prose(s: &str) -> String {
    s.split("\n\n")
        .map(|para| {
            let mut out = String::from("<p>");
            for (i, part) in escape(para).split('`').enumerate() {
                if i % 2 == 1 {
                    out.push_str("<code>");
                    out.push_str(part);
                    out.push_str("</code>");
                } else {
                    out.push_str(part);
                }
            }
            out.push_str("</p>");
            out
        })
        .collect()
}

/// Who may call an operation, in words.
fn who_may(op: &utoipa::openapi::path::Operation) -> String {
    let Some(reqs) = op.security.as_ref().filter(|r| !r.is_empty()) else {
        return "no credential".to_owned();
    };
    let value = serde_json::to_value(reqs).unwrap_or_default();
    let mut ways = Vec::new();
    for req in value.as_array().into_iter().flatten() {
        for (scheme, scopes) in req.as_object().into_iter().flatten() {
            let scopes: Vec<&str> = scopes.as_array().into_iter().flatten().filter_map(|s| s.as_str()).collect();
            ways.push(match (scheme.as_str(), scopes.is_empty()) {
                (OPERATOR, _) => "an operator token".to_owned(),
                (_, true) => format!("{scheme} credential"),
                (_, false) => format!("{scheme} credential with scope {}", scopes.join(", ")),
            });
        }
    }
    ways.join(", or ")
}

fn page(doc: &OpenApi) -> String {
    let mut rows: Vec<(String, String, &utoipa::openapi::path::Operation)> = Vec::new();
    for (path, item) in &doc.paths.paths {
        let ops = [
            ("GET", &item.get),
            ("PUT", &item.put),
            ("POST", &item.post),
            ("DELETE", &item.delete),
            ("PATCH", &item.patch),
        ];
        for (method, op) in ops {
            if let Some(op) = op {
                rows.push((method.to_owned(), path.clone(), op));
            }
        }
    }
    let mut html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"/static/bridgekeeper.css\"></head>\
         <body><main class=\"wide\"><h1>{title} {version}</h1>{description}\
         <p>The machine-readable document: <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI 3.1).</p>",
        title = escape(&doc.info.title),
        version = escape(&doc.info.version),
        description = prose(doc.info.description.as_deref().unwrap_or("")),
    );
    for tag in doc.tags.iter().flatten() {
        let in_tag: Vec<_> =
            rows.iter().filter(|(_, _, op)| op.tags.iter().flatten().any(|t| *t == tag.name)).collect();
        if in_tag.is_empty() {
            continue;
        }
        html.push_str(&format!(
            "<h2 id=\"{name}\">{name}</h2><p class=\"muted\">{desc}</p>",
            name = escape(&tag.name),
            desc = escape(tag.description.as_deref().unwrap_or("")),
        ));
        for (method, path, op) in in_tag {
            let statuses: Vec<&str> = op.responses.responses.keys().map(String::as_str).collect();
            html.push_str(&format!(
                "<h3 id=\"{id}\"><code>{method} {path}</code></h3>{desc}\
                 <p class=\"muted\">Who: {who}. Answers: {statuses}. Operation <code>{id}</code>.</p>",
                id = escape(op.operation_id.as_deref().unwrap_or("")),
                path = escape(path),
                desc = prose(op.description.as_deref().or(op.summary.as_deref()).unwrap_or("")),
                who = escape(&who_may(op)),
                statuses = escape(&statuses.join(", ")),
            ));
        }
    }
    html.push_str("</main></body></html>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_what_it_shows() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert_eq!(prose("a `b<c>` d\n\ne"), "<p>a <code>b&lt;c&gt;</code> d</p><p>e</p>");
    }
}
