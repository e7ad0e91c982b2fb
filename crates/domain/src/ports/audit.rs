//! The audit log: a hash chain of events.

use async_trait::async_trait;

use super::Result;
use crate::audit::{AuditEvent, StoredAuditEvent};
use crate::ids::TenantId;

/// A filter on the audit log. `tenant` None = every account (operators only).
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub kind: Option<String>,
    /// Rows after this sequence number (the cursor of the previous page).
    pub after_seq: Option<i64>,
    pub limit: i64,
}

/// Where an appended event landed in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainPosition {
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
}

/// Where the chain stands: its last row, and the anchor left by pruning (verification starts there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainState {
    pub head_seq: i64,
    pub head_hash: String,
    pub anchor_seq: i64,
    pub anchor_hash: String,
}

/// Computes a row's hash from the previous hash, its sequence number and the event.
pub type ChainLink = dyn Fn(&str, i64, &AuditEvent) -> String + Send + Sync;

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends events at the head of the chain, atomically (one writer at a time, on every instance).
    /// Returns each event's place in the chain, in order.
    async fn append_audit(&self, events: &[AuditEvent], link: &ChainLink) -> Result<Vec<ChainPosition>>;
    /// Rows of one tenant (`Some`) or of everyone (`None`, operators), oldest first.
    async fn query_audit(&self, tenant: Option<&TenantId>, q: &AuditQuery) -> Result<Vec<StoredAuditEvent>>;
    async fn audit_chain_state(&self) -> Result<ChainState>;
    /// Every row after `after_seq`, in chain order (for verification).
    async fn audit_range(&self, after_seq: i64, limit: i64) -> Result<Vec<StoredAuditEvent>>;
    /// Deletes rows older than `before_ms` and beyond the newest `max_rows`, keeping the chain
    /// verifiable (the last deleted row becomes the anchor). Returns rows deleted.
    async fn prune_audit(&self, before_ms: Option<i64>, max_rows: Option<i64>) -> Result<u64>;
}
