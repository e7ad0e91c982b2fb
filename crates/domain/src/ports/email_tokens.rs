//! Emailed links (email verification, password reset), by the digest of the token.

use async_trait::async_trait;

use super::Result;
use crate::UnixTime;
use crate::email_token::{EmailChange, EmailPurpose, StoredEmailToken};
use crate::ids::AccountId;

#[async_trait]
pub trait EmailTokenStore: Send + Sync {
    async fn create_email_token(&self, token: &StoredEmailToken) -> Result<()>;
    /// The link as stored, used or not (to tell a person why it no longer works).
    async fn email_token(&self, token_hash: &[u8]) -> Result<Option<StoredEmailToken>>;
    /// Marks the link used and returns it, if it is for `purpose`, unused and unexpired at `now`: of
    /// two uses of one link, only one gets it.
    async fn use_email_token(
        &self,
        token_hash: &[u8],
        purpose: EmailPurpose,
        now: UnixTime,
    ) -> Result<Option<StoredEmailToken>>;
    /// Follows an address-change link: in one transaction, uses the link (once, unexpired) and gives
    /// the account the address it was sent to, verified at `now`.
    async fn use_email_change(&self, token_hash: &[u8], now: UnixTime) -> Result<EmailChange>;
    /// Marks every unused link of `purpose` sent to `account` used (a reset ends the others); how many.
    async fn void_email_tokens(&self, account: &AccountId, purpose: EmailPurpose, now: UnixTime) -> Result<u64>;
}
