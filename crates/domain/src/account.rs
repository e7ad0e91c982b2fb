//! Accounts: the tenants. Everything a person connects or is granted belongs to one.

use crate::UnixTime;
use crate::ids::AccountId;

#[derive(Clone, Debug)]
pub struct Account {
    pub id: AccountId,
    pub email: String,
    /// argon2id PHC string; `None` for accounts that sign in another way.
    pub password_hash: Option<String>,
    pub created_at: UnixTime,
}
