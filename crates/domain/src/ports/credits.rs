//! The credits ledger: an append-only list of transactions per account and its balance, which
//! never goes negative. A completion's cost is known only afterwards, so it is paid in two steps:
//! [`CreditStore::reserve_credits`] holds an upper bound before the upstream is called (or refuses),
//! [`CreditStore::settle_credits`] charges what was used and gives the rest back, both atomic
//! against every other request on every instance.

use async_trait::async_trait;

use super::Result;
use crate::credits::{CompletionUsage, CreditTransaction};
use crate::ids::TenantId;

/// The most ledger rows one page returns.
pub const MAX_CREDIT_PAGE: u32 = 100;

/// The answer to a reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// The amount is held (taken from the balance until settled).
    Held { hold_id: String, balance_after: i64 },
    /// The balance (shown) is below the amount: nothing was held.
    Insufficient { balance: i64 },
}

/// The answer to a settlement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settlement {
    /// Credits taken (the cost, unless the balance could not cover an overrun).
    pub charged: i64,
    /// The balance after the settlement (other requests' holds excluded).
    pub balance: i64,
}

/// When an account has no ledger yet, it is opened with the signup grant (one `signup_grant` row),
/// in the same transaction as whatever asked — so accounts created before credits existed get it
/// the first time they use credits, and no account gets it twice.
#[async_trait]
pub trait CreditStore: Send + Sync {
    /// The balance (opening the ledger first).
    async fn credit_balance(&self, tenant: &TenantId, signup_grant: i64, now_ms: i64) -> Result<i64>;

    /// Holds `amount` (≥ 0) if the balance covers it, after giving back this account's holds older
    /// than `stale_before_ms` (a request that died without settling).
    async fn reserve_credits(
        &self,
        tenant: &TenantId,
        amount: i64,
        signup_grant: i64,
        now_ms: i64,
        stale_before_ms: i64,
    ) -> Result<Reservation>;

    /// Ends a hold: charges `usage.cost` (at most the hold plus the balance, so never negative),
    /// returns the rest of the hold, and appends one `completion` row — one transaction. A hold
    /// already given back (stale) is charged from the balance instead.
    async fn settle_credits(
        &self,
        tenant: &TenantId,
        hold_id: &str,
        usage: &CompletionUsage,
        now_ms: i64,
    ) -> Result<Settlement>;

    /// Gives a hold back whole (the upstream failed: nothing is charged, no row is written).
    /// Returns the balance after (0 for an account whose ledger is not open: none is opened here,
    /// nor by a settlement, which fails without one).
    async fn release_credits(&self, tenant: &TenantId, hold_id: &str, now_ms: i64) -> Result<i64>;

    /// An operator's grant: adds `amount` (> 0) with a `grant` row. `None` when no such account.
    async fn grant_credits(
        &self,
        tenant: &TenantId,
        amount: i64,
        note: Option<&str>,
        signup_grant: i64,
        now_ms: i64,
    ) -> Result<Option<CreditTransaction>>;

    /// The account's own rows, newest first, those older than `before` (a row id) when given.
    async fn credit_transactions(
        &self,
        tenant: &TenantId,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CreditTransaction>>;
}
