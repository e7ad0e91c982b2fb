//! Accounts (tenants).

use async_trait::async_trait;

use super::Result;
use crate::UnixTime;
use crate::account::Account;
use crate::ids::AccountId;

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Fails with `Conflict` if the email is taken.
    async fn create_account(&self, account: &Account) -> Result<()>;
    async fn account_by_email(&self, email: &str) -> Result<Option<Account>>;
    async fn account(&self, id: &AccountId) -> Result<Option<Account>>;
    /// Replaces the password hash; false if the account does not exist.
    async fn set_password(&self, id: &AccountId, password_hash: &str) -> Result<bool>;
    /// Records that the person proved `email`, if the account still holds that address (a link sent
    /// to an address since changed proves nothing about the new one); false otherwise.
    async fn mark_email_verified(&self, id: &AccountId, email: &str, now: UnixTime) -> Result<bool>;
}
