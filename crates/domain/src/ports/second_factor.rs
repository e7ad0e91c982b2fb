//! An account's second factor: its sealed TOTP secret, the last step accepted, and the digests of
//! its recovery codes.

use async_trait::async_trait;

use super::Result;
use crate::UnixTime;
use crate::ids::AccountId;

/// An account's authenticator as stored.
#[derive(Clone, Debug)]
pub struct StoredTotp {
    pub account_id: AccountId,
    /// The secret, sealed under the master key and bound to the account.
    pub sealed_secret: Vec<u8>,
    pub created_at: UnixTime,
    /// The last TOTP step accepted (a code is accepted only for a later step).
    pub last_step: i64,
}

#[async_trait]
pub trait SecondFactorStore: Send + Sync {
    async fn totp(&self, account: &AccountId) -> Result<Option<StoredTotp>>;
    /// Stores the authenticator and replaces the recovery codes, in one transaction; false (and
    /// nothing changed) if the account has one already.
    async fn enable_totp(&self, totp: &StoredTotp, recovery_code_hashes: &[Vec<u8>]) -> Result<bool>;
    /// Accepts `step` if it is later than the last one accepted (a compare-and-set: of two uses of
    /// one code, one wins); false otherwise.
    async fn use_totp_step(&self, account: &AccountId, step: i64) -> Result<bool>;
    /// Marks the recovery code with this digest used, if it is the account's and unused.
    async fn use_recovery_code(&self, account: &AccountId, code_hash: &[u8], now: UnixTime) -> Result<bool>;
    /// Unused recovery codes left.
    async fn recovery_codes_left(&self, account: &AccountId) -> Result<i64>;
    /// Removes the authenticator and the recovery codes; false if there was none.
    async fn disable_totp(&self, account: &AccountId) -> Result<bool>;
}
