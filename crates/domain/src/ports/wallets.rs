//! Wallet identities (Sign-In with Ethereum) and the nonces their sign-in messages carry.

use async_trait::async_trait;

use super::Result;
use crate::UnixTime;
use crate::ids::AccountId;
use crate::siwe::Address;
use crate::wallet::{StoredSiweNonce, WalletAction, WalletIdentity, WalletRedemption, WalletUnlink};

#[async_trait]
pub trait WalletStore: Send + Sync {
    /// Keeps a nonce handed out (by digest).
    async fn create_siwe_nonce(&self, nonce: &StoredSiweNonce) -> Result<()>;
    /// The nonce, if it was handed out and not spent yet (expired or not; nothing is spent).
    async fn siwe_nonce(&self, nonce_hash: &[u8]) -> Result<Option<StoredSiweNonce>>;
    /// Spends the nonce if it is unspent and unexpired at `now`, and in the same transaction does
    /// `action`; when the action cannot be done, the nonce stays unspent and nothing changes. Of
    /// concurrent uses of one nonce, one spends it; the others get `NonceSpent`.
    async fn redeem_siwe_nonce(
        &self,
        nonce_hash: &[u8],
        now: UnixTime,
        action: &WalletAction,
    ) -> Result<WalletRedemption>;
    /// The identity of an address, whichever account holds it.
    async fn wallet(&self, address: &Address) -> Result<Option<WalletIdentity>>;
    /// An account's addresses, oldest first.
    async fn wallets_of(&self, account: &AccountId) -> Result<Vec<WalletIdentity>>;
    /// Removes one of the account's addresses, unless it is the account's last way to sign in (no
    /// password, no passkey, no other address) — decided in the removal's transaction.
    async fn unlink_wallet(&self, account: &AccountId, address: &Address) -> Result<WalletUnlink>;
}
