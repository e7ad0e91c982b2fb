//! Ethereum wallets as an account's identity (Sign-In with Ethereum): an address belongs to at most
//! one account; an account may hold several. The nonces a sign-in message must carry are kept
//! server-side (by digest), live a few minutes and are spent once, in the same transaction as
//! what the sign-in does (signs in, links the address, or creates the account).
//!
//! An account a wallet creates has no email address until the person adds one. The schema (and
//! every face that shows an account) keeps one address per account, unique and required, so such
//! an account holds a placeholder in its place, [`no_email_placeholder`]: unique, under the
//! reserved top-level domain `.invalid` (RFC 2606) so nothing is ever sent to it, and not a valid
//! address for sign-up, sign-in or a password reset (no dot in its domain), exactly like the
//! placeholder a deleted account keeps.

use crate::UnixTime;
use crate::account::Account;
use crate::ids::AccountId;
use crate::siwe::Address;

/// An address linked to an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletIdentity {
    pub address: Address,
    pub account_id: AccountId,
    pub created_at: UnixTime,
    /// The last sign-in with it.
    pub last_used_at: Option<UnixTime>,
}

/// A nonce handed out for a sign-in message, by the SHA-256 of its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSiweNonce {
    pub nonce_hash: Vec<u8>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

impl StoredSiweNonce {
    pub fn is_expired(&self, now: UnixTime) -> bool {
        self.expires_at <= now
    }
}

/// What a verified sign-in message does, in the transaction that spends its nonce.
#[derive(Clone, Debug)]
pub enum WalletAction {
    /// Signs in the account the address belongs to (its last use noted); the address must still
    /// be that account's.
    SignIn { account_id: AccountId, address: Address },
    /// Links the address to a signed-in account.
    Link { account_id: AccountId, address: Address },
    /// Creates `account` (no password, the placeholder email) with the address as its identity.
    SignUp { account: Account, address: Address },
}

/// How spending a nonce went. Only [`WalletRedemption::Done`] and
/// [`WalletRedemption::AlreadyLinked`] spent it; every other outcome changed nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalletRedemption {
    Done,
    /// `Link` of an address the account holds already (its last use noted).
    AlreadyLinked,
    /// The nonce is unknown, expired or spent (by a concurrent use, say).
    NonceSpent,
    /// `Link` or `SignUp` of an address another account holds.
    AddressTaken,
    /// `SignIn` with an address that is no longer that account's.
    IdentityGone,
}

/// How unlinking an address went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalletUnlink {
    Unlinked,
    /// The account holds no such address (another account's is answered alike).
    NotFound,
    /// It is the account's only way to sign in (no password, no passkey, no other address).
    LastSignInMethod,
}

/// The email an account created by a wallet holds until the person adds one (see the module).
pub fn no_email_placeholder(id: &AccountId) -> String {
    format!("wallet-{id}@invalid")
}

/// Is this one of the placeholders that stand for "no email address" (a wallet account's, or a
/// deleted account's)? Such an address is never shown as one, and never mailed.
pub fn is_placeholder_email(email: &str) -> bool {
    email.ends_with("@invalid")
}

/// A new account for a wallet: no password, no email address (the placeholder), active.
pub fn new_wallet_account(id: AccountId, now: UnixTime) -> Account {
    Account {
        email: no_email_placeholder(&id),
        id,
        password_hash: None,
        created_at: now,
        email_verified_at: None,
        disabled_at: None,
        deleted_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{NewAccountError, check_new_account, deleted_email, is_valid_email};

    #[test]
    fn the_placeholder_is_unique_and_never_an_address() {
        let id = AccountId::from_string("acc_w1");
        let e = no_email_placeholder(&id);
        assert_eq!(e, "wallet-acc_w1@invalid");
        assert!(!is_valid_email(&e), "it can neither sign up, be reset, nor receive mail");
        assert_eq!(check_new_account(&e, "long enough"), Err(NewAccountError::InvalidEmail));
        assert!(is_placeholder_email(&e));
        assert!(is_placeholder_email(&deleted_email(&id)));
        assert!(!is_placeholder_email("someone@example.com"));
        assert_ne!(e, no_email_placeholder(&AccountId::from_string("acc_w2")));
    }

    #[test]
    fn a_wallet_account_has_no_password_and_is_active() {
        let a = new_wallet_account(AccountId::from_string("acc_w1"), 5);
        assert_eq!(
            (a.password_hash.as_deref(), a.created_at, a.is_disabled(), a.email_verified()),
            (None, 5, false, false)
        );
    }
}
