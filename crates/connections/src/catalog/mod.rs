//! The provider catalog: which services a tenant can connect, how each one is connected (its auth
//! kind) and where its tools come from. Built once at start from the catalog shipped in this crate
//! (`providers.toml`), an operator's catalog file and the server configuration, each layer adding
//! providers or overriding fields of earlier ones (`parse.rs`). A catalog that does not hold
//! together is a start-up error naming the file, the provider and the field.
//!
//! Client secrets and admin tokens are held as [`ProviderSecret`], which never prints or
//! serialises its value; they come only from the operator's configuration or environment, never
//! from the shipped file.

mod parse;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use url::Url;
use zeroize::Zeroizing;

pub use parse::{CatalogError, CatalogSources, ConfigLayer};

/// The catalog shipped with Bridgekeeper.
pub const SHIPPED: &str = include_str!("../../providers.toml");
/// How error messages name the shipped catalog.
pub const SHIPPED_NAME: &str = "providers.toml (shipped)";

/// Every provider a tenant may connect, by id.
#[derive(Debug, Default)]
pub struct Catalog {
    providers: BTreeMap<String, Arc<Provider>>,
}

impl Catalog {
    /// The shipped catalog with the operator's layers over it; `env` reads the environment
    /// variables a provider names for its secrets (`std::env::var` in the binary).
    pub fn load(sources: &CatalogSources<'_>, env: &dyn Fn(&str) -> Option<String>) -> Result<Catalog, CatalogError> {
        let providers = parse::build(sources, env)?;
        Ok(Catalog { providers: providers.into_iter().map(|p| (p.id.clone(), Arc::new(p))).collect() })
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Provider>> {
        self.providers.get(id)
    }

    /// Providers in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.providers.values()
    }

    pub fn len(&self) -> usize {
        self.providers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
}

/// One connectable service.
#[derive(Debug)]
pub struct Provider {
    /// `[a-z0-9][a-z0-9_-]*`, at most 63 characters: the key in the catalog and in tool names.
    pub id: String,
    pub display: Display,
    pub auth: AuthKind,
    pub tools: ToolSource,
    /// Tools that only read. A tool named in neither list is treated as writing (DESIGN: "a tool is
    /// `read` only if it says so").
    pub read_tools: Vec<String>,
    pub write_tools: Vec<String>,
}

impl Provider {
    /// The exchange of a `token_exchange` provider in bridge mode.
    pub fn bridged(&self) -> Option<&TokenExchange> {
        match &self.auth {
            AuthKind::TokenExchange(t) if t.bridge => Some(t),
            _ => None,
        }
    }

    /// The setting an operator still has to provide before a tenant can connect this provider
    /// (`initiate` answers 400 naming it), if any.
    pub fn missing_setting(&self) -> Option<&str> {
        match &self.auth {
            AuthKind::OAuth2(o) => o.client.missing.as_deref(),
            AuthKind::TokenExchange(t) => t.missing.as_deref(),
            AuthKind::Mcp(_) | AuthKind::ApiKey(_) => None,
        }
    }
}

/// What the connect page and the API show.
#[derive(Debug, Clone)]
pub struct Display {
    pub name: String,
    pub logo_url: Option<Url>,
    pub description: String,
}

/// How a tenant connects the provider.
#[derive(Debug)]
pub enum AuthKind {
    /// The authorization code flow against the provider's own authorization server.
    OAuth2(Box<OAuth2>),
    /// A remote MCP server that protects itself with OAuth; its authorization server is discovered
    /// from the server (the discovery itself lands with the MCP client).
    Mcp(McpServer),
    /// The tenant pastes a key or token.
    ApiKey(ApiKeyForm),
    /// The tenant's own backend issues a scoped token for the signed-in user (reference 002).
    TokenExchange(TokenExchange),
}

impl AuthKind {
    pub fn name(&self) -> &'static str {
        match self {
            AuthKind::OAuth2(_) => "oauth2",
            AuthKind::Mcp(_) => "mcp",
            AuthKind::ApiKey(_) => "api_key",
            AuthKind::TokenExchange(_) => "token_exchange",
        }
    }
}

#[derive(Debug)]
pub struct OAuth2 {
    /// The provider's issuer identifier, for a provider that names itself in its authorization
    /// responses (RFC 9207 `iss`): the callback then requires `iss` to be exactly this, so an
    /// answer from another authorization server (a mix-up) is refused.
    pub issuer: Option<String>,
    pub authorize_url: Url,
    pub token_url: Url,
    /// RFC 7009 revocation, where the provider has one.
    pub revoke_url: Option<Url>,
    /// Where the connection's upstream identity is read after connecting.
    pub userinfo_url: Option<Url>,
    /// Asked for by default.
    pub scopes: Vec<String>,
    /// Between scopes in the authorize request (Slack: `,`).
    pub scope_separator: String,
    /// The authorize parameter that carries the scopes (`scope`; Slack's user scopes: `user_scope`).
    pub scope_param: String,
    /// Added to every authorize request (Google: `access_type=offline`).
    pub authorize_params: BTreeMap<String, String>,
    /// PKCE S256 towards the provider (on unless it cannot: Slack).
    pub pkce: bool,
    pub token_auth: TokenAuth,
    pub token_body: TokenBody,
    /// The member of the token response holding the user's tokens when they are not at its top
    /// (Slack: `authed_user`).
    pub token_path: Option<String>,
    pub client: ClientCredentials,
    /// RFC 8707: the resource the tokens are for, sent with the authorize, token and refresh
    /// requests (an MCP server's canonical URL, for `mcp` providers).
    pub resource: Option<String>,
}

/// How the client authenticates at the provider's token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuth {
    /// `client_id` and `client_secret` in the body.
    Body,
    /// HTTP Basic (Notion).
    Basic,
    /// A public client: `client_id` in the body and no secret (PKCE protects the code).
    None,
}

/// The encoding of a token request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenBody {
    Form,
    /// JSON (Notion).
    Json,
}

/// The operator's OAuth app at a provider.
#[derive(Debug, Default)]
pub struct ClientCredentials {
    pub client_id: Option<String>,
    pub client_secret: Option<ProviderSecret>,
    /// The first setting still missing (`connections.providers.<id>.oauth2.client_id`, …).
    pub missing: Option<String>,
}

#[derive(Debug)]
pub struct McpServer {
    /// The MCP endpoint (Streamable HTTP).
    pub url: Url,
    /// Scopes to ask for when the server's metadata names none.
    pub scopes: Vec<String>,
    /// A client registered by hand, for servers offering neither client metadata documents nor
    /// dynamic registration.
    pub client: ClientCredentials,
    /// The authorization server that client was registered at (required with a client secret:
    /// the secret is sent to no other, whatever the MCP server's metadata names later).
    pub issuer: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ApiKeyForm {
    /// The label of the key field on the connect page.
    pub label: String,
    /// Where to find or create the key.
    pub help: Option<String>,
}

#[derive(Debug)]
pub struct TokenExchange {
    /// The tenant backend's endpoint that verifies the user and returns a scoped token.
    pub verify_url: Url,
    /// The operator's admin token for that endpoint.
    pub admin_token: Option<ProviderSecret>,
    /// The setting still missing (the admin token), if any.
    pub missing: Option<String>,
    /// Bridge mode: every sign-in (authorization-code grant) that can reach this provider is
    /// verified by the backend at consent and carries its scoped token on the session; the
    /// provider's tools use the session's token, never a connection (`bk_connections::bridge`).
    pub bridge: bool,
}

/// Where a provider's tools come from (consumed by the gateway).
#[derive(Debug, Clone, PartialEq)]
pub enum ToolSource {
    /// None declared yet.
    None,
    /// An upstream MCP server, called with the tenant's upstream credential.
    UpstreamMcp { url: Url },
    /// Declarative HTTP tools: calls to the provider's own API.
    Http { tools: Vec<HttpTool> },
}

/// One declarative HTTP tool (`tools = { kind = "http", definitions = [...] }`).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpTool {
    /// `[A-Za-z0-9_.-]`, 1 to 64 characters (namespaced by the provider id on `/mcp`).
    pub name: String,
    pub title: Option<String>,
    pub description: String,
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// An https URL (or loopback http in development) whose path may hold `{param}` placeholders,
    /// filled from the arguments (percent-encoded as one path segment each).
    pub url: Url,
    /// The JSON schema of the arguments (an object schema).
    pub input_schema: serde_json::Value,
    /// Static request headers (`Notion-Version`); never credentials: the connection's credential
    /// is sent as `Authorization: Bearer`.
    pub headers: Vec<(String, String)>,
    pub render: Render,
    /// For `render = "table"`: a JSON pointer to the array in the answer (`/results`); the answer
    /// itself when absent.
    pub table_path: Option<String>,
}

/// How an HTTP tool's answer is shown to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Render {
    /// The body as text.
    Text,
    /// Pretty JSON, and the object as `structuredContent`.
    Json,
    /// A markdown table of an array of objects.
    Table,
}

impl HttpTool {
    /// The `{placeholders}` of the URL's path, in order.
    pub fn path_params(&self) -> Vec<String> {
        let path = percent_decoded_path(&self.url);
        let mut out = Vec::new();
        let mut rest = path.as_str();
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else { break };
            out.push(rest[open + 1..open + close].to_owned());
            rest = &rest[open + close + 1..];
        }
        out
    }
}

/// The URL's path with its `{placeholders}` readable (URL parsing percent-encodes the braces).
pub fn percent_decoded_path(url: &Url) -> String {
    url.path().replace("%7B", "{").replace("%7D", "}").replace("%7b", "{").replace("%7d", "}")
}

/// A secret an operator configured for a provider (client secret, admin token). Its `Debug` never
/// prints the value, it has no `Display` or `Serialize`, and its memory is zeroed when dropped.
pub struct ProviderSecret(Zeroizing<String>);

impl ProviderSecret {
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ProviderSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProviderSecret(…)")
    }
}
