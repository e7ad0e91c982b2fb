//! Accounts (tenants).

use async_trait::async_trait;

use super::Result;
use crate::account::Account;
use crate::ids::AccountId;

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Fails with `Conflict` if the email is taken.
    async fn create_account(&self, account: &Account) -> Result<()>;
    async fn account_by_email(&self, email: &str) -> Result<Option<Account>>;
    async fn account(&self, id: &AccountId) -> Result<Option<Account>>;
}
