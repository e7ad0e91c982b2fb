//! OAuth clients, and the consent a person gave each.

use async_trait::async_trait;

use super::Result;
use crate::UnixTime;
use crate::client::Client;
use crate::ids::{AccountId, ClientId, TenantId};

#[async_trait]
pub trait ClientStore: Send + Sync {
    async fn insert_client(&self, client: &Client) -> Result<()>;
    /// Inserts a client owned by an account unless that owner already has `max_per_owner` live
    /// clients; false, storing nothing, at the quota. The count and the insert are one transaction,
    /// so parallel creates cannot exceed it.
    async fn insert_owned_client(&self, client: &Client, max_per_owner: u32) -> Result<bool>;
    /// A live (not deleted) client.
    async fn client(&self, id: &ClientId) -> Result<Option<Client>>;
    /// Clients owned by `owner`, or every client (operators) when `None`.
    async fn list_clients(&self, owner: Option<&AccountId>) -> Result<Vec<Client>>;
    /// Updates name, redirect URIs, scopes, providers, domains, branding, secret; false if absent.
    async fn update_client(&self, client: &Client) -> Result<bool>;
    /// Deletes a client and revokes every session it holds, and every PAT those sessions' tokens
    /// created (transitively); false if absent.
    async fn delete_client(&self, id: &ClientId, now: UnixTime) -> Result<bool>;
}

#[async_trait]
pub trait ConsentStore: Send + Sync {
    /// Has the person approved exactly this grant (`grant`: the canonical text of its scopes and
    /// restrictions) for this client before?
    async fn has_consent(&self, tenant: &TenantId, client: &ClientId, grant: &str) -> Result<bool>;
    async fn remember_consent(&self, tenant: &TenantId, client: &ClientId, grant: &str, now: UnixTime) -> Result<()>;
}
