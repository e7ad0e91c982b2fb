//! Links sent by email: verifying an address, resetting a password. The link carries a random
//! token; the server keeps only its digest, the account, the address it was sent to and how long it
//! is good for. A token works once.

use crate::UnixTime;
use crate::ids::AccountId;

/// What an emailed link does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailPurpose {
    /// Proves the person receives mail at the address (at sign-up, on request).
    VerifyEmail,
    /// Lets the person choose a new password.
    ResetPassword,
    /// Moves the account to a new address (sent to the new address; `email` is the new one).
    ChangeEmail,
}

impl EmailPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            EmailPurpose::VerifyEmail => "verify_email",
            EmailPurpose::ResetPassword => "reset_password",
            EmailPurpose::ChangeEmail => "change_email",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "verify_email" => Some(EmailPurpose::VerifyEmail),
            "reset_password" => Some(EmailPurpose::ResetPassword),
            "change_email" => Some(EmailPurpose::ChangeEmail),
            _ => None,
        }
    }

    /// How long a link is good for: a day to verify an address, half an hour to reset a password
    /// (a reset link is a sign-in, so it is short-lived).
    pub fn lifetime_secs(self) -> i64 {
        match self {
            EmailPurpose::VerifyEmail | EmailPurpose::ChangeEmail => 24 * 3600,
            EmailPurpose::ResetPassword => 30 * 60,
        }
    }
}

/// What following an address-change link did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmailChange {
    /// The account now has the new address, verified.
    Changed { account_id: AccountId, old_email: String, new_email: String },
    /// Another account has taken the new address since: nothing changed (the link is spent).
    Taken { account_id: AccountId, new_email: String },
    /// Unknown, used, expired or not an address-change link.
    Dead,
}

/// An emailed link as stored (never the token itself, only its digest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEmailToken {
    /// SHA-256 of the token in the link.
    pub token_hash: Vec<u8>,
    pub account_id: AccountId,
    pub purpose: EmailPurpose,
    /// The address the link was sent to: verifying proves this address, not whatever the account
    /// holds by the time the link is followed.
    pub email: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub used_at: Option<UnixTime>,
}

impl StoredEmailToken {
    pub fn new(
        token_hash: Vec<u8>,
        account_id: AccountId,
        purpose: EmailPurpose,
        email: String,
        now: UnixTime,
    ) -> Self {
        Self {
            token_hash,
            account_id,
            purpose,
            email,
            created_at: now,
            expires_at: now + purpose.lifetime_secs(),
            used_at: None,
        }
    }

    /// May the link still be followed at `now`?
    pub fn is_usable(&self, now: UnixTime) -> bool {
        self.used_at.is_none() && now < self.expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_have_stable_names_and_lifetimes() {
        for p in [EmailPurpose::VerifyEmail, EmailPurpose::ResetPassword, EmailPurpose::ChangeEmail] {
            assert_eq!(EmailPurpose::parse(p.as_str()), Some(p));
        }
        assert_eq!(EmailPurpose::parse("other"), None);
        assert_eq!(EmailPurpose::ResetPassword.lifetime_secs(), 1800);
        assert_eq!(EmailPurpose::VerifyEmail.lifetime_secs(), 86_400);
    }

    #[test]
    fn a_link_works_until_used_or_expired() {
        let t = StoredEmailToken::new(
            vec![1; 32],
            AccountId::from_string("acc_1"),
            EmailPurpose::ResetPassword,
            "a@b.co".into(),
            100,
        );
        assert_eq!(t.expires_at, 1900);
        assert!(t.is_usable(100));
        assert!(t.is_usable(1899));
        assert!(!t.is_usable(1900), "expiry is exclusive");
        let used = StoredEmailToken { used_at: Some(150), ..t };
        assert!(!used.is_usable(160));
    }
}
