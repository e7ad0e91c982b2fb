//! Connections and their sealed credentials. Every method takes the tenant first: another tenant's
//! connection id behaves exactly like one that does not exist.

use async_trait::async_trait;

use super::Result;
use crate::UnixTime;
use crate::connection::{Connection, ConnectionFlow, ConnectionStatus, UpstreamRegistration};
use crate::ids::{ConnectionId, TenantId};
use crate::restrictions::ProviderReach;

/// The most connections one page lists.
pub const MAX_CONNECTIONS_PAGE: u32 = 100;

/// Which connections to list, in which order, which page.
#[derive(Clone, Debug)]
pub struct ConnectionQuery {
    pub status: Option<ConnectionStatus>,
    pub provider_id: Option<String>,
    pub created_after: Option<UnixTime>,
    pub created_before: Option<UnixTime>,
    pub sort_by: ConnectionSort,
    pub descending: bool,
    /// 1-based.
    pub page: u32,
    /// 1 to `MAX_CONNECTIONS_PAGE`.
    pub limit: u32,
    /// The providers the caller may reach; connections of others are neither listed nor counted.
    pub providers: ProviderReach,
}

impl Default for ConnectionQuery {
    fn default() -> Self {
        Self {
            status: None,
            provider_id: None,
            created_after: None,
            created_before: None,
            sort_by: ConnectionSort::CreatedAt,
            descending: true,
            page: 1,
            limit: 20,
            providers: ProviderReach::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionSort {
    CreatedAt,
    UpdatedAt,
    ExpiresAt,
    ProviderId,
    Status,
}

/// One page of connections and how many match in all.
#[derive(Clone, Debug)]
pub struct ConnectionPage {
    pub items: Vec<Connection>,
    pub total: u64,
}

/// A connection as its refresh lease holder reads it.
pub struct RefreshLease {
    pub connection: Connection,
    pub sealed: Vec<u8>,
    /// Bumped by every refresh outcome.
    pub generation: i64,
    /// The last transient refresh failure.
    pub failed_at: Option<UnixTime>,
    /// The previous holder's lease ran out before it finished or released it: it stopped (crashed,
    /// was killed) in the middle of a refresh, perhaps after the provider had rotated the refresh
    /// token it was using.
    pub interrupted: bool,
}

/// What became of an attempt to take a connection's refresh lease.
pub enum LeaseAttempt {
    Acquired(Box<RefreshLease>),
    /// Another caller (on any instance) holds it; the generation as it stands.
    Held {
        generation: i64,
    },
    Missing,
}

/// A connection with its sealed credential, as the broker reads it on every use.
pub struct SealedConnection {
    pub connection: Connection,
    pub sealed: Vec<u8>,
    pub generation: i64,
}

/// One stored ciphertext sealed under the master key, for `keys rotate-master`.
pub struct SealedRow {
    pub account_id: crate::ids::AccountId,
    pub id: ConnectionId,
    pub sealed: Vec<u8>,
}

#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Stores a connection of `tenant` and its sealed credential unless the tenant already holds
    /// `max_per_account` connections; false, storing nothing, at the quota. The count and the
    /// insert are one transaction, so parallel connects cannot exceed it.
    async fn insert_connection(
        &self,
        tenant: &TenantId,
        connection: &Connection,
        sealed: &[u8],
        max_per_account: u32,
    ) -> Result<bool>;
    async fn connection(&self, tenant: &TenantId, id: &ConnectionId) -> Result<Option<Connection>>;
    async fn list_connections(&self, tenant: &TenantId, query: &ConnectionQuery) -> Result<ConnectionPage>;
    /// The sealed credential of a connection (for the vault to open).
    async fn sealed_credential(&self, tenant: &TenantId, id: &ConnectionId) -> Result<Option<Vec<u8>>>;
    /// The connection, its sealed credential and its refresh generation, in one read.
    async fn sealed_connection(&self, tenant: &TenantId, id: &ConnectionId) -> Result<Option<SealedConnection>>;
    /// Saves a connection's state (status, expiry, scopes, metadata, last error) and, when given, its
    /// new sealed credential in the same write; false if absent.
    async fn update_connection(
        &self,
        tenant: &TenantId,
        connection: &Connection,
        sealed: Option<&[u8]>,
    ) -> Result<bool>;
    /// Deletes the connection and its ciphertext; false if absent.
    async fn delete_connection(&self, tenant: &TenantId, id: &ConnectionId) -> Result<bool>;
    /// Takes the connection's refresh lease until `until` for the holder `lease_token` unless another
    /// caller holds one that has not run out (a compare-and-set: one holder at a time across
    /// instances).
    async fn acquire_refresh_lease(
        &self,
        tenant: &TenantId,
        id: &ConnectionId,
        now: UnixTime,
        until: UnixTime,
        lease_token: &str,
    ) -> Result<LeaseAttempt>;
    /// Stores a refresh's outcome (or another change made under the lease) — the connection's state
    /// (status, expiry, scopes, metadata, last error) and, when given, its new sealed credential
    /// (a rotated refresh token lands with its access token, in one write) and the time of a
    /// transient failure — bumps the generation and releases the lease, if `lease_token` still holds
    /// it. False, changing nothing, when it does not (the lease ran out and another caller took it,
    /// or the connection is gone): a late holder never overwrites a newer outcome.
    async fn finish_refresh(
        &self,
        tenant: &TenantId,
        connection: &Connection,
        sealed: Option<&[u8]>,
        failed_at: Option<UnixTime>,
        lease_token: &str,
    ) -> Result<bool>;
    /// Releases the lease without changing anything (the refresh was not needed), if `lease_token`
    /// still holds it.
    async fn release_refresh_lease(&self, tenant: &TenantId, id: &ConnectionId, lease_token: &str) -> Result<()>;
    /// Operator only (`keys rotate-master`), across tenants: up to `limit` stored credentials with
    /// ids after `after`, in id order.
    async fn sealed_credentials_page(&self, after: Option<&ConnectionId>, limit: u32) -> Result<Vec<SealedRow>>;
    /// Replaces a connection's sealed credential with `new` if it is still exactly `old` (a
    /// compare-and-set: a refresh that stored a new credential meanwhile wins); false otherwise.
    async fn reseal_credential(&self, tenant: &TenantId, id: &ConnectionId, old: &[u8], new: &[u8]) -> Result<bool>;
}

#[async_trait]
pub trait ConnectionFlowStore: Send + Sync {
    async fn insert_connection_flow(&self, tenant: &TenantId, flow: &ConnectionFlow) -> Result<()>;
    /// Marks the flow with this state digest used and returns it — once: a second take of the same
    /// state finds nothing, on every instance (a compare-and-set). The state is the capability: the
    /// browser returning from the provider carries nothing else. Expiry is the caller's to check.
    async fn take_connection_flow(&self, state_hash: &[u8], now: UnixTime) -> Result<Option<ConnectionFlow>>;
    /// Bridgekeeper's registration at an upstream authorization server, if it made one.
    async fn upstream_registration(&self, issuer: &str, redirect_uri: &str) -> Result<Option<UpstreamRegistration>>;
    /// Keeps a registration unless one for the same issuer and redirect URI is already kept (two
    /// flows registering at once settle on the first: read it back).
    async fn save_upstream_registration(&self, r: &UpstreamRegistration) -> Result<()>;
    /// Forgets a registration the server no longer knows (`invalid_client`), if it is still `client_id`.
    async fn forget_upstream_registration(&self, issuer: &str, redirect_uri: &str, client_id: &str) -> Result<()>;
}
