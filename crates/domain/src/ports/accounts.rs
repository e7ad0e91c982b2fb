//! Accounts (tenants), and what operators do to them: list, disable, enable, delete.

use async_trait::async_trait;

use super::Result;
use crate::UnixTime;
use crate::account::{
    Account, AccountEnabling, AccountErasure, AccountOverview, AccountPage, AccountQuery, AccountRevocation,
};
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

    /// Operators: a page of accounts, newest first, with counts of what each holds at `now`.
    async fn list_accounts(&self, q: &AccountQuery, now: UnixTime) -> Result<AccountPage>;
    /// Operators: one account with counts of what it holds at `now`; `None` if there is none.
    async fn account_overview(&self, id: &AccountId, now: UnixTime) -> Result<Option<AccountOverview>>;
    /// Disables the account and, in the same transaction, revokes every live session (OAuth grants
    /// and PATs' own sessions), every PAT, every browser session and MCP session, and voids what could
    /// still become one (unused authorization codes, handoff codes and connect flows). Idempotent:
    /// again on a disabled account it revokes whatever is live and keeps the first `disabled_at`.
    /// `None` if there is no such account.
    async fn disable_account(&self, id: &AccountId, now: UnixTime) -> Result<Option<AccountRevocation>>;
    /// Lifts a disable (nothing that was revoked comes back). A deleted account stays deleted.
    /// `None` if there is no such account.
    async fn enable_account(&self, id: &AccountId) -> Result<Option<AccountEnabling>>;
    /// Deletes the account, irreversibly, in one transaction: disables it as [`Self::disable_account`]
    /// does, then deletes its connections (with their sealed credentials), connect flows, PATs,
    /// emailed links, browser and MCP sessions, codes, refresh tokens and consents, replaces its email
    /// with [`crate::account::deleted_email`] and clears its password and verification. Its revoked
    /// sessions and its audit rows stay. Idempotent. `None` if there is no such account.
    async fn delete_account(&self, id: &AccountId, now: UnixTime) -> Result<Option<AccountErasure>>;
}
