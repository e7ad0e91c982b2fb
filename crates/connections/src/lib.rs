//! Connected services: the provider catalog (`catalog`: what a tenant can connect and how), the
//! vault (`vault`: upstream credentials sealed at rest, bound to their tenant and row) and the
//! upstream OAuth client (`oauth2`: authorization URL, code exchange, refresh, user info,
//! revocation) and the credential broker (`broker`: a usable credential for every upstream call,
//! refreshed exactly once across callers and instances) and the MCP-authorization client (`mcp`:
//! discovery of a remote MCP server's authorization server, registration, the connect probe).
#![forbid(unsafe_code)]

pub mod bridge;
pub mod broker;
pub mod catalog;
pub mod exchange;
pub mod mcp;
pub mod oauth2;
pub mod vault;

pub use broker::{Broker, BrokerError, BrokerSettings, RefreshOutcome, UsableCredential};
pub use catalog::{AuthKind, Catalog, CatalogError, CatalogSources, ConfigLayer, Provider, ToolSource};
pub use oauth2::{Upstream, UpstreamError};
pub use vault::{Credential, Vault, VaultError};
