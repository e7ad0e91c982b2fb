//! Reading and layering the catalog. Each layer (shipped file, operator file, server configuration)
//! is a TOML table of providers by id; every provider table of every layer is first checked on its
//! own (unknown fields and wrong types name the layer that has them), then the layers are merged
//! field by field (tables merge, everything else is replaced) and each merged provider is checked
//! as a whole (required fields, URLs, the fields its auth kind needs).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use url::Url;

use super::{
    ApiKeyForm, AuthKind, ClientCredentials, Display, HttpTool, McpServer, OAuth2, Provider, ProviderSecret, Render,
    SHIPPED, SHIPPED_NAME, TokenAuth, TokenBody, TokenExchange, ToolSource,
};

/// The operator's layers over the shipped catalog, in the order they apply.
#[derive(Default)]
pub struct CatalogSources<'a> {
    /// An operator catalog file in the shipped file's format: (its path, its text).
    pub operator_file: Option<(&'a str, &'a str)>,
    /// Providers from the server configuration (`[connections.providers.<id>]` and the environment).
    pub config: Option<ConfigLayer<'a>>,
    /// An MCP server's URL may be plain http on a loopback host (`connections.allow_http_loopback`,
    /// development and tests only).
    pub allow_http_loopback: bool,
}

pub struct ConfigLayer<'a> {
    /// How errors name it: the configuration file and/or the environment.
    pub name: &'a str,
    pub providers: &'a toml::Table,
}

/// A catalog that cannot be used: which file, which provider, which field, and why.
#[derive(Debug, thiserror::Error)]
pub struct CatalogError {
    pub file: String,
    /// Empty when the file itself cannot be read.
    pub provider: String,
    /// Dotted path inside the provider (`oauth2.token_url`); empty when the provider as a whole is wrong.
    pub field: String,
    pub message: String,
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "provider catalog {}", self.file)?;
        if !self.provider.is_empty() {
            write!(f, ", provider `{}`", self.provider)?;
        }
        if !self.field.is_empty() {
            write!(f, ", field `{}`", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

fn err(file: &str, provider: &str, field: &str, message: impl Into<String>) -> CatalogError {
    CatalogError { file: file.into(), provider: provider.into(), field: field.into(), message: message.into() }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: Option<String>,
    description: Option<String>,
    logo_url: Option<String>,
    /// `false` hides a provider (e.g. a shipped one the operator does not offer).
    enabled: Option<bool>,
    auth: Option<KindName>,
    oauth2: Option<RawOAuth2>,
    mcp: Option<RawMcp>,
    api_key: Option<RawApiKey>,
    token_exchange: Option<RawTokenExchange>,
    tools: Option<RawTools>,
    read_tools: Option<Vec<String>>,
    write_tools: Option<Vec<String>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum KindName {
    Oauth2,
    Mcp,
    ApiKey,
    TokenExchange,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOAuth2 {
    issuer: Option<String>,
    authorize_url: Option<String>,
    token_url: Option<String>,
    revoke_url: Option<String>,
    userinfo_url: Option<String>,
    scopes: Option<Vec<String>>,
    scope_separator: Option<String>,
    scope_param: Option<String>,
    authorize_params: Option<BTreeMap<String, String>>,
    pkce: Option<bool>,
    token_auth: Option<TokenAuth>,
    token_body: Option<TokenBody>,
    token_path: Option<String>,
    client_id: Option<String>,
    client_id_env: Option<String>,
    client_secret: Option<String>,
    client_secret_env: Option<String>,
}

/// An operator's OAuth app: values, or names of environment variables holding them.
#[derive(Default)]
struct RawClient {
    client_id: Option<String>,
    client_id_env: Option<String>,
    client_secret: Option<String>,
    client_secret_env: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMcp {
    url: Option<String>,
    issuer: Option<String>,
    scopes: Option<Vec<String>>,
    client_id: Option<String>,
    client_id_env: Option<String>,
    client_secret: Option<String>,
    client_secret_env: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApiKey {
    label: Option<String>,
    help: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTokenExchange {
    verify_url: Option<String>,
    admin_token: Option<String>,
    admin_token_env: Option<String>,
    bridge: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTools {
    kind: ToolKind,
    url: Option<String>,
    definitions: Option<Vec<toml::Value>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum ToolKind {
    None,
    Mcp,
    Http,
}

/// Authorize parameters the flow sets itself; a catalog may not override them.
const RESERVED_AUTHORIZE_PARAMS: &[&str] =
    &["client_id", "redirect_uri", "response_type", "state", "code_challenge", "code_challenge_method", "resource"];

pub(super) fn build(
    sources: &CatalogSources<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Provider>, CatalogError> {
    let mut layers: Vec<(&str, bool, toml::Table)> = vec![(SHIPPED_NAME, true, parse_file(SHIPPED_NAME, SHIPPED)?)];
    if let Some((name, text)) = sources.operator_file {
        layers.push((name, false, parse_file(name, text)?));
    }
    if let Some(c) = &sources.config {
        layers.push((c.name, false, c.providers.clone()));
    }
    // Each provider's merged table and the last layer that touched it (named in its errors).
    let mut merged: BTreeMap<String, (toml::Table, &str)> = BTreeMap::new();
    for (file, shipped, table) in layers {
        for (id, value) in table {
            check_id(file, &id)?;
            let toml::Value::Table(t) = value else {
                return Err(err(file, &id, "", "a provider must be a table of fields"));
            };
            let raw = decode(file, &id, &t)?;
            if shipped {
                refuse_secrets(file, &id, &raw)?;
            }
            let entry = merged.entry(id).or_insert_with(|| (toml::Table::new(), file));
            merge(&mut entry.0, t);
            entry.1 = file;
        }
    }
    let mut providers = Vec::with_capacity(merged.len());
    for (id, (table, file)) in merged {
        let raw = decode(file, &id, &table)?;
        if raw.enabled == Some(false) {
            continue;
        }
        providers.push(provider(file, id, raw, env, sources.allow_http_loopback)?);
    }
    Ok(providers)
}

fn parse_file(name: &str, text: &str) -> Result<toml::Table, CatalogError> {
    text.parse::<toml::Table>().map_err(|e| err(name, "", "", format!("not valid TOML: {}", e.message())))
}

fn check_id(file: &str, id: &str) -> Result<(), CatalogError> {
    let mut chars = id.chars();
    let valid = id.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(err(file, id, "", "a provider id is 1 to 63 of a-z, 0-9, _ and -, starting with a letter or digit"))
    }
}

fn decode(file: &str, id: &str, table: &toml::Table) -> Result<RawProvider, CatalogError> {
    serde_path_to_error::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
        // The path names an unknown field too (`oauth2.client_secre`).
        let mut field = e.path().to_string();
        if field == "." {
            field.clear();
        }
        err(file, id, &field, e.inner().message())
    })
}

/// The shipped catalog names endpoints, never credentials.
fn refuse_secrets(file: &str, id: &str, raw: &RawProvider) -> Result<(), CatalogError> {
    let clients = [
        ("oauth2", raw.oauth2.as_ref().map(|o| (&o.client_id, &o.client_secret))),
        ("mcp", raw.mcp.as_ref().map(|m| (&m.client_id, &m.client_secret))),
    ];
    for (section, client) in clients {
        if let Some((client_id, client_secret)) = client {
            let field = match (client_id, client_secret) {
                (Some(_), _) => "client_id",
                (None, Some(_)) => "client_secret",
                (None, None) => continue,
            };
            return Err(err(
                file,
                id,
                &format!("{section}.{field}"),
                "the shipped catalog holds no client credentials",
            ));
        }
    }
    if raw.token_exchange.as_ref().is_some_and(|t| t.admin_token.is_some()) {
        return Err(err(file, id, "token_exchange.admin_token", "the shipped catalog holds no admin tokens"));
    }
    Ok(())
}

/// Merges `over` into `base`: tables field by field, any other value replaced.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn provider(
    file: &str,
    id: String,
    raw: RawProvider,
    env: &dyn Fn(&str) -> Option<String>,
    allow_http_loopback: bool,
) -> Result<Provider, CatalogError> {
    let e = |field: &str, message: &str| err(file, &id, field, message);
    let name = raw.name.filter(|n| !n.trim().is_empty()).ok_or_else(|| e("name", "a provider needs a display name"))?;
    let logo_url = raw.logo_url.as_deref().map(|u| url(file, &id, "logo_url", u)).transpose()?;
    let display = Display { name, logo_url, description: raw.description.unwrap_or_default() };
    let kind = raw.auth.ok_or_else(|| e("auth", "missing: one of oauth2, mcp, api_key, token_exchange"))?;
    let sections = [
        (KindName::Oauth2, "oauth2", raw.oauth2.is_some()),
        (KindName::Mcp, "mcp", raw.mcp.is_some()),
        (KindName::ApiKey, "api_key", raw.api_key.is_some()),
        (KindName::TokenExchange, "token_exchange", raw.token_exchange.is_some()),
    ];
    for (k, section, present) in sections {
        if present && k != kind {
            return Err(e(section, "this section belongs to another auth kind than the provider's `auth`"));
        }
    }
    let setting = |rest: &str| format!("connections.providers.{id}.{rest}");
    let auth = match kind {
        KindName::Oauth2 => {
            let o = raw.oauth2.ok_or_else(|| e("oauth2", "auth is oauth2 but the [oauth2] section is missing"))?;
            let required = |field: &str, v: &Option<String>| -> Result<Url, CatalogError> {
                let path = format!("oauth2.{field}");
                match v {
                    Some(u) => url(file, &id, &path, u),
                    None => Err(err(file, &id, &path, "missing")),
                }
            };
            let optional = |field: &str, v: &Option<String>| {
                v.as_deref().map(|u| url(file, &id, &format!("oauth2.{field}"), u)).transpose()
            };
            let scope_param = o.scope_param.unwrap_or_else(|| "scope".into());
            let authorize_params = o.authorize_params.unwrap_or_default();
            if let Some(p) =
                authorize_params.keys().find(|p| RESERVED_AUTHORIZE_PARAMS.contains(&p.as_str()) || **p == scope_param)
            {
                return Err(e(&format!("oauth2.authorize_params.{p}"), "the connect flow sets this parameter itself"));
            }
            // RFC 9207: an issuer is an https URL compared as a string, so it is kept as written.
            let issuer = match &o.issuer {
                Some(i) => {
                    url(file, &id, "oauth2.issuer", i)?;
                    Some(i.clone())
                }
                None => None,
            };
            AuthKind::OAuth2(Box::new(OAuth2 {
                issuer,
                authorize_url: required("authorize_url", &o.authorize_url)?,
                token_url: required("token_url", &o.token_url)?,
                revoke_url: optional("revoke_url", &o.revoke_url)?,
                userinfo_url: optional("userinfo_url", &o.userinfo_url)?,
                scopes: o.scopes.unwrap_or_default(),
                scope_separator: o.scope_separator.unwrap_or_else(|| " ".into()),
                scope_param,
                authorize_params,
                pkce: o.pkce.unwrap_or(true),
                token_auth: o.token_auth.unwrap_or(TokenAuth::Body),
                token_body: o.token_body.unwrap_or(TokenBody::Form),
                token_path: o.token_path,
                client: credentials(
                    file,
                    &id,
                    "oauth2",
                    RawClient {
                        client_id: o.client_id,
                        client_id_env: o.client_id_env,
                        client_secret: o.client_secret,
                        client_secret_env: o.client_secret_env,
                    },
                    env,
                    true,
                )?,
                resource: None,
            }))
        }
        KindName::Mcp => {
            let m = raw.mcp.ok_or_else(|| e("mcp", "auth is mcp but the [mcp] section is missing"))?;
            let u = m.url.as_deref().ok_or_else(|| e("mcp.url", "missing"))?;
            let issuer = m.issuer.clone();
            if let Some(i) = &issuer {
                Url::parse(i).map_err(|x| e("mcp.issuer", &format!("{i:?} is not a URL: {x}")))?;
            }
            if issuer.is_none() && (m.client_secret.is_some() || m.client_secret_env.is_some()) {
                return Err(e(
                    "mcp.issuer",
                    "required with a client secret: the authorization server the client was registered at (the secret is sent to no other)",
                ));
            }
            AuthKind::Mcp(McpServer {
                issuer,
                url: server_url(file, &id, "mcp.url", u, allow_http_loopback)?,
                scopes: m.scopes.unwrap_or_default(),
                client: credentials(
                    file,
                    &id,
                    "mcp",
                    RawClient {
                        client_id: m.client_id,
                        client_id_env: m.client_id_env,
                        client_secret: m.client_secret,
                        client_secret_env: m.client_secret_env,
                    },
                    env,
                    false,
                )?,
            })
        }
        KindName::ApiKey => {
            let a = raw.api_key.unwrap_or_default();
            AuthKind::ApiKey(ApiKeyForm { label: a.label.unwrap_or_else(|| "API key".into()), help: a.help })
        }
        KindName::TokenExchange => {
            let t = raw.token_exchange.ok_or_else(|| {
                e("token_exchange", "auth is token_exchange but the [token_exchange] section is missing")
            })?;
            let u = t.verify_url.as_deref().ok_or_else(|| e("token_exchange.verify_url", "missing"))?;
            let (admin_token, missing) = secret(
                file,
                &id,
                "token_exchange.admin_token",
                t.admin_token,
                t.admin_token_env,
                env,
                &setting("token_exchange.admin_token"),
            )?;
            let bridge = t.bridge.unwrap_or(false);
            // A bridged provider is crossed by every sign-in: without its admin token none could pass.
            if bridge && let Some(m) = &missing {
                return Err(e("token_exchange.bridge", &format!("bridge mode needs the admin token: set {m}")));
            }
            AuthKind::TokenExchange(TokenExchange {
                verify_url: server_url(file, &id, "token_exchange.verify_url", u, allow_http_loopback)?,
                admin_token,
                missing,
                bridge,
            })
        }
    };
    let tools = match raw.tools {
        None => match &auth {
            AuthKind::Mcp(m) => ToolSource::UpstreamMcp { url: m.url.clone() },
            _ => ToolSource::None,
        },
        Some(t) => match t.kind {
            ToolKind::None => ToolSource::None,
            ToolKind::Mcp => {
                if t.definitions.is_some() {
                    return Err(e("tools.definitions", "tools of kind mcp come from the server, not definitions"));
                }
                let u = t.url.as_deref().ok_or_else(|| e("tools.url", "missing (tools of kind mcp)"))?;
                ToolSource::UpstreamMcp { url: server_url(file, &id, "tools.url", u, allow_http_loopback)? }
            }
            ToolKind::Http => {
                if t.url.is_some() {
                    return Err(e("tools.url", "tools of kind http are declared in `definitions`, not a url"));
                }
                let mut tools: Vec<HttpTool> = Vec::new();
                for (i, d) in t.definitions.unwrap_or_default().into_iter().enumerate() {
                    let tool = http_tool(file, &id, i, d, allow_http_loopback)?;
                    if tools.iter().any(|x| x.name == tool.name) {
                        return Err(e(
                            &format!("tools.definitions[{i}].name"),
                            &format!("`{}` is defined twice", tool.name),
                        ));
                    }
                    tools.push(tool);
                }
                ToolSource::Http { tools }
            }
        },
    };
    let read_tools = raw.read_tools.unwrap_or_default();
    let write_tools = raw.write_tools.unwrap_or_default();
    if let Some(both) = read_tools.iter().find(|t| write_tools.contains(t)) {
        return Err(e("read_tools", &format!("`{both}` is listed as both a read and a write tool")));
    }
    Ok(Provider { id, display, auth, tools, read_tools, write_tools })
}

/// An endpoint: https (the outbound client speaks nothing else), no fragment.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpTool {
    name: String,
    title: Option<String>,
    description: Option<String>,
    method: Option<String>,
    url: String,
    input_schema: Option<toml::Value>,
    headers: Option<BTreeMap<String, String>>,
    render: Option<String>,
    table_path: Option<String>,
}

/// Request headers an HTTP tool may not set (the gateway sets them, or they carry credentials).
const RESERVED_HEADERS: &[&str] =
    &["authorization", "cookie", "host", "content-length", "content-type", "transfer-encoding", "proxy-authorization"];

fn http_tool(
    file: &str,
    id: &str,
    i: usize,
    d: toml::Value,
    allow_http_loopback: bool,
) -> Result<HttpTool, CatalogError> {
    let at = |f: &str| format!("tools.definitions[{i}]{}{f}", if f.is_empty() { "" } else { "." });
    let raw: RawHttpTool = d.try_into().map_err(|x: toml::de::Error| err(file, id, &at(""), x.message().to_owned()))?;
    if raw.name.is_empty()
        || raw.name.len() > 64
        || !raw.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(err(file, id, &at("name"), "1 to 64 characters of A-Z a-z 0-9 _ - ."));
    }
    let method = raw.method.unwrap_or_else(|| "GET".into()).to_ascii_uppercase();
    if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
        return Err(err(file, id, &at("method"), "one of GET, POST, PUT, PATCH, DELETE"));
    }
    let url = server_url(file, id, &at("url"), &raw.url, allow_http_loopback)?;
    if url.query().is_some() {
        return Err(err(
            file,
            id,
            &at("url"),
            "no query in the URL: arguments not in the path go to the query (GET, DELETE) or the JSON body",
        ));
    }
    let input_schema = match raw.input_schema {
        None => serde_json::json!({"type": "object", "properties": {}}),
        Some(v) => serde_json::to_value(v).map_err(|x| err(file, id, &at("input_schema"), x.to_string()))?,
    };
    if input_schema.get("type").and_then(serde_json::Value::as_str) != Some("object") {
        return Err(err(file, id, &at("input_schema"), "an object schema (`type = \"object\"`)"));
    }
    let headers: Vec<(String, String)> = raw.headers.unwrap_or_default().into_iter().collect();
    if let Some((h, _)) = headers.iter().find(|(h, _)| RESERVED_HEADERS.contains(&h.to_ascii_lowercase().as_str())) {
        return Err(err(
            file,
            id,
            &at(&format!("headers.{h}")),
            "set by the gateway (the credential goes in Authorization)",
        ));
    }
    let render = match raw.render.as_deref().unwrap_or("json") {
        "text" => Render::Text,
        "json" => Render::Json,
        "table" => Render::Table,
        _ => return Err(err(file, id, &at("render"), "one of text, json, table")),
    };
    let tool = HttpTool {
        name: raw.name,
        title: raw.title,
        description: raw.description.unwrap_or_default(),
        method,
        url,
        input_schema,
        headers,
        render,
        table_path: raw.table_path,
    };
    let props = tool.input_schema.get("properties");
    for p in tool.path_params() {
        if props.and_then(|x| x.get(&p)).is_none() {
            return Err(err(
                file,
                id,
                &at("url"),
                format!("the placeholder {{{p}}} is not a property of input_schema"),
            ));
        }
    }
    Ok(tool)
}

/// A provider server's URL (an MCP server, an HTTP tool, a verify endpoint): https, or plain http
/// on a loopback host when the operator allows it (`connections.allow_http_loopback`, development
/// and tests only).
fn server_url(file: &str, id: &str, field: &str, s: &str, allow_http_loopback: bool) -> Result<Url, CatalogError> {
    let loopback_http = Url::parse(s).ok().filter(|x| {
        allow_http_loopback
            && x.scheme() == "http"
            && x.fragment().is_none()
            && match x.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            }
    });
    match loopback_http {
        Some(u) => Ok(u),
        None => url(file, id, field, s),
    }
}

fn url(file: &str, id: &str, field: &str, s: &str) -> Result<Url, CatalogError> {
    let u = Url::parse(s).map_err(|x| err(file, id, field, format!("{s:?} is not a URL: {x}")))?;
    if u.scheme() != "https" || u.fragment().is_some() || u.host().is_none() {
        return Err(err(file, id, field, format!("{s:?} must be an https URL without a fragment")));
    }
    Ok(u)
}

/// A value given directly or through an environment variable named `…_env`: the value (if any) and,
/// when it is absent, the setting to name.
fn secret(
    file: &str,
    id: &str,
    field: &str,
    direct: Option<String>,
    env_name: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
    setting: &str,
) -> Result<(Option<ProviderSecret>, Option<String>), CatalogError> {
    match (direct, env_name) {
        (Some(_), Some(_)) => {
            Err(err(file, id, &format!("{field}_env"), format!("give {field} or {field}_env, not both")))
        }
        (Some(v), None) if !v.is_empty() => Ok((Some(ProviderSecret::new(v)), None)),
        (Some(_), None) | (None, None) => Ok((None, Some(setting.to_owned()))),
        (None, Some(var)) => match env(&var).filter(|v| !v.is_empty()) {
            Some(v) => Ok((Some(ProviderSecret::new(v)), None)),
            None => Ok((None, Some(format!("the environment variable {var} (named by {setting}_env)")))),
        },
    }
}

fn credentials(
    file: &str,
    id: &str,
    section: &str,
    raw: RawClient,
    env: &dyn Fn(&str) -> Option<String>,
    required: bool,
) -> Result<ClientCredentials, CatalogError> {
    let setting = |name: &str| format!("connections.providers.{id}.{section}.{name}");
    let (client_id, id_missing) = secret(
        file,
        id,
        &format!("{section}.client_id"),
        raw.client_id,
        raw.client_id_env,
        env,
        &setting("client_id"),
    )?;
    let (client_secret, secret_missing) = secret(
        file,
        id,
        &format!("{section}.client_secret"),
        raw.client_secret,
        raw.client_secret_env,
        env,
        &setting("client_secret"),
    )?;
    let client_id = client_id.map(|c| c.expose().to_owned());
    let missing = if required || client_id.is_some() { id_missing.or(secret_missing) } else { None };
    Ok(ClientCredentials { client_id, client_secret, missing })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_layer_refuses_credentials() {
        for (text, field) in [
            ("[x.oauth2]\nclient_id = \"a\"", "oauth2.client_id"),
            ("[x.oauth2]\nclient_secret = \"a\"", "oauth2.client_secret"),
            ("[x.mcp]\nclient_secret = \"a\"", "mcp.client_secret"),
            ("[x.token_exchange]\nadmin_token = \"a\"", "token_exchange.admin_token"),
        ] {
            let t = parse_file("shipped", text).unwrap();
            let toml::Value::Table(x) = &t["x"] else { panic!() };
            let e = refuse_secrets("shipped", "x", &decode("shipped", "x", x).unwrap()).unwrap_err();
            assert_eq!(e.field, field);
        }
    }
}
