//! OAuth clients, and the consent a person gave each.

use async_trait::async_trait;

use super::Result;
use crate::UnixTime;
use crate::client::{Client, ClientCapabilities};
use crate::grant::Grant;
use crate::ids::{AccountId, ClientId, TenantId};
use crate::registration::{DynamicClient, Registration};

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

    /// Stores (or refreshes) the client a metadata document describes, keyed by its URL; a client
    /// registered any other way is never overwritten.
    async fn upsert_document_client(&self, client: &Client) -> Result<()>;
    /// Inserts a dynamically registered client and its registration record, together.
    async fn insert_registered_client(&self, client: &Client, registration: &Registration) -> Result<()>;
    /// The newest live public client registered from `source` with this metadata fingerprint at or
    /// after `since`, if any.
    async fn reusable_registration(&self, source: &str, fingerprint: &str, since: UnixTime)
    -> Result<Option<ClientId>>;
    /// The registration record of a live client.
    async fn registration(&self, id: &ClientId) -> Result<Option<Registration>>;
    /// Stores a registration's new token digest and metadata and, with `client`, the client's own
    /// fields too, in one transaction; false (changing nothing) if the client is gone.
    async fn update_registration(&self, registration: &Registration, client: Option<&Client>) -> Result<bool>;
    /// Deletes, with their registration records, codes and remembered consent, the dynamically
    /// registered clients created before `registered_before` that never completed an authorization
    /// (no session was ever created for them); returns how many.
    async fn purge_unused_registrations(&self, registered_before: UnixTime) -> Result<u64>;
    /// Every dynamically registered client still stored (deleted ones included), oldest first.
    async fn dynamic_clients(&self) -> Result<Vec<DynamicClient>>;

    /// Inserts a client with its capabilities (grant types, keys, bound account) and, for a
    /// dynamic registration, its registration record, in one transaction. A client with an owner
    /// counts against that owner's quota: false, storing nothing, when it already holds
    /// `max_per_owner` live clients.
    async fn insert_capable_client(
        &self,
        client: &Client,
        capabilities: &ClientCapabilities,
        registration: Option<&Registration>,
        max_per_owner: u32,
    ) -> Result<bool>;
    /// A live client with its capabilities.
    async fn capable_client(&self, id: &ClientId) -> Result<Option<(Client, ClientCapabilities)>>;
    /// `list_clients`, each with its capabilities.
    async fn list_capable_clients(&self, owner: Option<&AccountId>) -> Result<Vec<(Client, ClientCapabilities)>>;
    /// Updates a live client's fields (as `update_client`) and capabilities together; false if
    /// absent. In the same transaction, the sessions its `client_credentials` tokens hang off end
    /// when it may no longer use that grant or is bound to another account (or none).
    async fn update_capable_client(
        &self,
        client: &Client,
        capabilities: &ClientCapabilities,
        now: UnixTime,
    ) -> Result<bool>;
    /// Replaces a live client's capabilities only (with the same session ending); false if absent.
    async fn set_client_capabilities(
        &self,
        id: &ClientId,
        capabilities: &ClientCapabilities,
        now: UnixTime,
    ) -> Result<bool>;
    /// The live session a bound machine client's `client_credentials` tokens for
    /// `grant.account_id` hang off: the one already open, else `grant`, inserted. `None` (nothing
    /// opened) when the client is gone, no longer allowed the grant, or bound to another account.
    async fn open_machine_grant(&self, grant: &Grant) -> Result<Option<Grant>>;
}

#[async_trait]
pub trait ConsentStore: Send + Sync {
    /// Has the person approved exactly this grant (`grant`: the canonical text of its scopes and
    /// restrictions) for this client before?
    async fn has_consent(&self, tenant: &TenantId, client: &ClientId, grant: &str) -> Result<bool>;
    async fn remember_consent(&self, tenant: &TenantId, client: &ClientId, grant: &str, now: UnixTime) -> Result<()>;
}
