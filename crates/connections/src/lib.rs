//! Connected services: the provider catalog (`catalog`: what a tenant can connect and how) and the
//! vault (`vault`: upstream credentials sealed at rest, bound to their tenant and row). The upstream
//! OAuth and MCP-authorization client and single-flight refresh join them here.
#![forbid(unsafe_code)]

pub mod catalog;
pub mod vault;

pub use catalog::{AuthKind, Catalog, CatalogError, CatalogSources, ConfigLayer, Provider, ToolSource};
pub use vault::{Credential, Vault, VaultError};
