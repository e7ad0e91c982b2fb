//! Passkeys and WebAuthn ceremonies in progress.

use async_trait::async_trait;

use super::Result;
use crate::UnixTime;
use crate::ids::AccountId;
use crate::passkey::{CeremonyPurpose, StoredCeremony, StoredPasskey};

#[async_trait]
pub trait PasskeyStore: Send + Sync {
    /// Adds a passkey if the account holds fewer than `max` (counted in the insert's transaction);
    /// false at the quota. `Conflict` if the credential id is registered already (to any account).
    async fn add_passkey(&self, passkey: &StoredPasskey, max: i64) -> Result<bool>;
    async fn passkeys_of(&self, account: &AccountId) -> Result<Vec<StoredPasskey>>;
    async fn passkey(&self, credential_id: &str) -> Result<Option<StoredPasskey>>;
    /// Stores the credential's new state (its counter) after a use by its account.
    async fn passkey_used(
        &self,
        account: &AccountId,
        credential_id: &str,
        credential: &str,
        now: UnixTime,
    ) -> Result<bool>;
    /// Removes the account's passkey — unless it is the account's last way to sign in (no password,
    /// no other passkey, no wallet): an account must not lock its owner out.
    async fn delete_passkey(&self, account: &AccountId, credential_id: &str) -> Result<PasskeyRemoval>;
    async fn create_ceremony(&self, ceremony: &StoredCeremony) -> Result<()>;
    /// Takes the ceremony (once) if it is for `purpose` and unexpired at `now`.
    async fn take_ceremony(
        &self,
        id_hash: &[u8],
        purpose: CeremonyPurpose,
        now: UnixTime,
    ) -> Result<Option<StoredCeremony>>;
}

/// What removing a passkey did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasskeyRemoval {
    Removed,
    /// The account has no passkey by that id.
    NotFound,
    /// It is the account's last way to sign in: kept.
    LastSignInMethod,
}
