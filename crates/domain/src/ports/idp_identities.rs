//! Upstream OpenID Connect identities and the sign-ins under way at their providers.

use async_trait::async_trait;

use super::Result;
use crate::UnixTime;
use crate::account::Account;
use crate::ids::AccountId;
use crate::upstream_identity::{IdpIdentity, IdpLink, IdpLoginState, IdpSignUp, IdpUnlink};

#[async_trait]
pub trait IdpIdentityStore: Send + Sync {
    /// Keeps a sign-in started at a provider (by the digest of its state).
    async fn create_idp_login_state(&self, state: &IdpLoginState) -> Result<()>;
    /// Spends the sign-in's state: it is gone afterwards whatever the answer, so a state is used at
    /// most once (of concurrent uses, one gets it). `None` when unknown, spent or expired at `now`.
    async fn take_idp_login_state(&self, state_hash: &[u8], now: UnixTime) -> Result<Option<IdpLoginState>>;
    /// The identity of (issuer, subject), whichever account holds it.
    async fn idp_identity(&self, issuer: &str, subject: &str) -> Result<Option<IdpIdentity>>;
    /// An account's identities, oldest first.
    async fn idp_identities_of(&self, account: &AccountId) -> Result<Vec<IdpIdentity>>;
    /// Notes a sign-in with the identity.
    async fn touch_idp_identity(&self, id: &str, now: UnixTime) -> Result<()>;
    /// Creates `account` with `identity` as its way to sign in, in one transaction: nothing when an
    /// account holds the email already (`EmailTaken`) or the identity is taken (`IdentityTaken`).
    async fn sign_up_with_idp(&self, account: &Account, identity: &IdpIdentity) -> Result<IdpSignUp>;
    /// Links `identity` to its `account_id` (a signed-in account).
    async fn link_idp_identity(&self, identity: &IdpIdentity, now: UnixTime) -> Result<IdpLink>;
    /// Removes one of the account's identities (by its `id`), unless it is the account's last way
    /// to sign in — decided in the removal's transaction.
    async fn unlink_idp_identity(&self, account: &AccountId, id: &str) -> Result<(IdpUnlink, Option<IdpIdentity>)>;
}
