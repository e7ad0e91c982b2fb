//! Accounts: the tenants. Everything a person connects or is granted belongs to one.
//! Also the rules an account must meet when it is created (by the sign-up page or the admin command):
//! a plausible email address, normalised, and a password of acceptable length. Hashing is not a rule
//! and happens outside this crate.

use crate::UnixTime;
use crate::ids::AccountId;

#[derive(Clone, Debug)]
pub struct Account {
    pub id: AccountId,
    pub email: String,
    /// argon2id PHC string; `None` for accounts that sign in another way.
    pub password_hash: Option<String>,
    pub created_at: UnixTime,
    /// When the person proved they receive mail at `email` (followed the link sent to it); `None`
    /// until then, and again after the address changes.
    pub email_verified_at: Option<UnixTime>,
    /// When an operator disabled the account: from then on it cannot sign in and holds no live
    /// credential, until it is enabled again. `None`: active (or enabled since).
    pub disabled_at: Option<UnixTime>,
    /// When an operator deleted the account (irreversible): its credentials are erased, its email is
    /// [`deleted_email`] and it has no password. `None`: not deleted.
    pub deleted_at: Option<UnixTime>,
}

impl Account {
    /// A new account that signs in with a password. `email` is the one [`check_new_account`] returned.
    pub fn with_password(id: AccountId, email: String, password_hash: String, now: UnixTime) -> Self {
        Self {
            id,
            email,
            password_hash: Some(password_hash),
            created_at: now,
            email_verified_at: None,
            disabled_at: None,
            deleted_at: None,
        }
    }

    /// Has the person proved the address (what `email_verified` in tokens and userinfo says)?
    pub fn email_verified(&self) -> bool {
        self.email_verified_at.is_some()
    }

    /// May the account not be used: disabled, or deleted (a deleted account is disabled too)? Sign-in
    /// refuses such an account, whatever the password.
    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some() || self.deleted_at.is_some()
    }

    /// Active, disabled or deleted.
    pub fn status(&self) -> AccountStatus {
        if self.deleted_at.is_some() {
            AccountStatus::Deleted
        } else if self.disabled_at.is_some() {
            AccountStatus::Disabled
        } else {
            AccountStatus::Active
        }
    }
}

/// Where an account stands, as operators see and filter it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountStatus {
    Active,
    /// Disabled by an operator: no sign-in, no live credential; can be enabled again.
    Disabled,
    /// Deleted by an operator: credentials erased, email replaced; irreversible.
    Deleted,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Disabled => "disabled",
            AccountStatus::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(AccountStatus::Active),
            "disabled" => Some(AccountStatus::Disabled),
            "deleted" => Some(AccountStatus::Deleted),
            _ => None,
        }
    }
}

/// The email a deleted account keeps instead of its own: unique, under the reserved top-level domain
/// `.invalid` (RFC 2606) so nothing is ever sent to it, and not a valid address for sign-up or
/// sign-in (no dot in its domain), so the real address can sign up again.
pub fn deleted_email(id: &AccountId) -> String {
    format!("deleted-{id}@invalid")
}

/// An account as an operator sees it: the account and counts of what it holds now.
#[derive(Clone, Debug)]
pub struct AccountOverview {
    pub account: Account,
    /// Unrevoked OAuth grants (authorized apps).
    pub live_grants: u64,
    /// Unrevoked, unexpired personal access tokens.
    pub live_pats: u64,
    /// Connected services (whatever their status: each holds a sealed credential).
    pub connections: u64,
}

/// The most accounts one page of the operator's list holds.
pub const MAX_ACCOUNTS_PAGE: u32 = 100;

/// A filter on the operator's account list (newest first).
#[derive(Clone, Debug)]
pub struct AccountQuery {
    /// Only accounts whose email contains this (compared in lower case; `%` and `_` are literal).
    pub email_contains: Option<String>,
    pub status: Option<AccountStatus>,
    /// From 1.
    pub page: u32,
    /// 1 to [`MAX_ACCOUNTS_PAGE`].
    pub limit: u32,
}

/// One page of accounts and how many match in all.
#[derive(Clone, Debug)]
pub struct AccountPage {
    pub items: Vec<AccountOverview>,
    pub total: u64,
}

/// What disabling an account revoked. Disabling an account already disabled (or deleted) revokes
/// whatever is live again and keeps the first `disabled_at`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountRevocation {
    /// False when it was disabled already.
    pub newly_disabled: bool,
    /// Sessions revoked now: OAuth grants and the sessions of PATs (their cached state must go).
    pub sessions: Vec<crate::ids::SessionId>,
    /// Personal access tokens revoked now.
    pub pats: u64,
    /// Browser sessions ended now.
    pub browser_sessions: u64,
}

/// What deleting an account erased (beyond what disabling it revoked).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountErasure {
    pub revoked: AccountRevocation,
    /// False when it was deleted already (nothing was left to erase).
    pub newly_deleted: bool,
    /// Connections deleted with their sealed credentials.
    pub connections: u64,
    /// Personal access tokens deleted.
    pub pats: u64,
    /// Emailed links deleted.
    pub email_links: u64,
    /// Browser sessions deleted.
    pub browser_sessions: u64,
    /// Audit rows of the account whose mention of its email was replaced by the placeholder.
    pub audit_rows_redacted: u64,
}

/// What enabling an account did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountEnabling {
    /// It was disabled and is active again (nothing it held comes back).
    Enabled,
    /// It was active: nothing changed.
    AlreadyActive,
    /// It is deleted, which cannot be undone: nothing changed.
    Deleted,
}

/// The shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The longest password accepted, in bytes (argon2 input is bounded so hashing cost is too).
pub const MAX_PASSWORD_BYTES: usize = 1024;
impl NewAccountError {
    /// A stable name for the error (a page's `?error=` code).
    pub fn code(self) -> &'static str {
        match self {
            NewAccountError::InvalidEmail => "invalid_email",
            NewAccountError::PasswordTooShort => "password_too_short",
            NewAccountError::PasswordTooLong => "password_too_long",
            NewAccountError::EmailTaken => "email_taken",
        }
    }
}

/// The longest email address accepted, in bytes (RFC 5321's path limit).
pub const MAX_EMAIL_BYTES: usize = 254;

/// Why an account cannot be created. The text is shown to the person as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NewAccountError {
    #[error("Enter a valid email address.")]
    InvalidEmail,
    #[error("The password must be at least 8 characters long.")]
    PasswordTooShort,
    #[error("The password must be at most 1024 bytes long.")]
    PasswordTooLong,
    /// Emails are unique; the store reports the clash, this names it.
    #[error("An account with this email already exists. Sign in instead.")]
    EmailTaken,
}

/// The form an email address is stored and looked up in: surrounding whitespace removed, lower case.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Is an (already normalised) email address plausible: `local@domain.tld`, no whitespace or control
/// characters, at most [`MAX_EMAIL_BYTES`]? Deliverability is not checked.
pub fn is_valid_email(email: &str) -> bool {
    email.len() <= MAX_EMAIL_BYTES
        && email
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Checks a new password's length: at least [`MIN_PASSWORD_CHARS`] characters, at most [`MAX_PASSWORD_BYTES`] bytes.
pub fn check_password(password: &str) -> Result<(), NewAccountError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(NewAccountError::PasswordTooShort);
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(NewAccountError::PasswordTooLong);
    }
    Ok(())
}

/// Why a sign-in form is refused before any account is looked up, counted or audited. The text is
/// shown to the person as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignInInputError {
    #[error("Enter your email and password.")]
    Missing,
    #[error("An email address is at most 254 bytes long.")]
    EmailTooLong,
    #[error("The password must be at most 1024 bytes long.")]
    PasswordTooLong,
}

/// Checks what was typed into the sign-in form and returns the normalised email to look up. Over-long
/// input can match no account (every stored email and password is within these bounds), so it is
/// refused before it can become a rate-limit key, an audit row or argon2 input.
pub fn check_sign_in_input(email: &str, password: &str) -> Result<String, SignInInputError> {
    let email = email.trim();
    if email.len() > MAX_EMAIL_BYTES {
        return Err(SignInInputError::EmailTooLong);
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(SignInInputError::PasswordTooLong);
    }
    let email = normalize_email(email);
    if email.is_empty() || password.is_empty() {
        return Err(SignInInputError::Missing);
    }
    Ok(email)
}

/// What the audit log keeps of an email typed into a sign-in form that matched no account: the
/// address itself only when it looks like one (a top-level domain of letters), otherwise a fixed
/// marker with its length, so a password typed into the wrong field is never stored in clear and
/// the row stays small whatever was typed.
pub fn typed_email_for_audit(typed: &str) -> String {
    let email = normalize_email(typed);
    let tld_is_letters =
        email.rsplit_once('.').is_some_and(|(_, tld)| tld.chars().count() >= 2 && tld.chars().all(char::is_alphabetic));
    if is_valid_email(&email) && tld_is_letters {
        email
    } else {
        format!("[not an email address: {} bytes]", typed.len())
    }
}

/// Checks what a new password account is made from and returns the normalised email to store.
/// The email is checked first, then the password.
pub fn check_new_account(email: &str, password: &str) -> Result<String, NewAccountError> {
    let email = normalize_email(email);
    if !is_valid_email(&email) {
        return Err(NewAccountError::InvalidEmail);
    }
    check_password(password)?;
    Ok(email)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "long enough";

    #[test]
    fn new_account_email_is_trimmed_and_lowercased() {
        assert_eq!(check_new_account("  Admin@Example.COM \n", PW), Ok("admin@example.com".to_owned()));
        assert_eq!(check_new_account("\tÉlodie@Exemple.fr", PW), Ok("élodie@exemple.fr".to_owned()));
    }

    #[test]
    fn plausible_emails_accepted() {
        for e in ["a@b.co", "first.last+tag@mail.example.org", "x@sub.domain.example"] {
            assert_eq!(check_new_account(e, PW).as_deref(), Ok(e), "{e}");
        }
    }

    #[test]
    fn implausible_emails_rejected() {
        let long_local = format!("{}@example.com", "a".repeat(MAX_EMAIL_BYTES - 11));
        for e in [
            "",
            "   ",
            "no-at-sign.example.com",
            "@example.com",
            "user@",
            "user@localhost",
            "user@.example.com",
            "user@example.com.",
            "us er@example.com",
            "user@exa\u{0}mple.com",
            "user@exam\u{7f}ple.com",
            long_local.as_str(),
        ] {
            assert_eq!(check_new_account(e, PW), Err(NewAccountError::InvalidEmail), "{e:?}");
        }
    }

    #[test]
    fn email_length_limit_is_254_bytes() {
        let at_limit = format!("{}@example.com", "a".repeat(MAX_EMAIL_BYTES - 12));
        assert_eq!(at_limit.len(), MAX_EMAIL_BYTES);
        assert!(is_valid_email(&at_limit));
        assert!(!is_valid_email(&format!("a{at_limit}")));
    }

    #[test]
    fn email_checked_before_password() {
        assert_eq!(check_new_account("bad", "short"), Err(NewAccountError::InvalidEmail));
    }

    #[test]
    fn password_length_bounds() {
        let ok = "a@b.co";
        assert_eq!(check_new_account(ok, ""), Err(NewAccountError::PasswordTooShort));
        assert_eq!(check_new_account(ok, "1234567"), Err(NewAccountError::PasswordTooShort));
        assert!(check_new_account(ok, "12345678").is_ok());
        // Counted in characters: eight two-byte characters are enough, seven are not.
        assert!(check_new_account(ok, &"é".repeat(8)).is_ok());
        assert_eq!(check_new_account(ok, &"é".repeat(7)), Err(NewAccountError::PasswordTooShort));
        assert!(check_new_account(ok, &"x".repeat(MAX_PASSWORD_BYTES)).is_ok());
        assert_eq!(check_new_account(ok, &"x".repeat(MAX_PASSWORD_BYTES + 1)), Err(NewAccountError::PasswordTooLong));
        // The upper bound is in bytes: 513 two-byte characters exceed it.
        assert_eq!(check_new_account(ok, &"é".repeat(513)), Err(NewAccountError::PasswordTooLong));
    }

    #[test]
    fn messages_are_the_ones_shown_to_people() {
        assert_eq!(NewAccountError::InvalidEmail.to_string(), "Enter a valid email address.");
        assert_eq!(NewAccountError::PasswordTooShort.to_string(), "The password must be at least 8 characters long.");
        assert_eq!(NewAccountError::PasswordTooLong.to_string(), "The password must be at most 1024 bytes long.");
        assert_eq!(
            NewAccountError::EmailTaken.to_string(),
            "An account with this email already exists. Sign in instead."
        );
    }

    #[test]
    fn sign_in_input_is_bounded_before_anything_else() {
        assert_eq!(check_sign_in_input("  A@B.co ", "pw"), Ok("a@b.co".to_owned()));
        assert_eq!(check_sign_in_input("", "pw"), Err(SignInInputError::Missing));
        assert_eq!(check_sign_in_input("a@b.co", ""), Err(SignInInputError::Missing));
        let at_limit = format!("{}@example.com", "a".repeat(MAX_EMAIL_BYTES - 12));
        assert!(check_sign_in_input(&at_limit, "pw").is_ok());
        assert_eq!(check_sign_in_input(&format!("a{at_limit}"), "pw"), Err(SignInInputError::EmailTooLong));
        // Surrounding whitespace does not count; a 60 KB paste is refused whatever else is wrong.
        assert!(check_sign_in_input(&format!("  {at_limit}\n"), "pw").is_ok());
        assert_eq!(check_sign_in_input(&"x".repeat(60_000), ""), Err(SignInInputError::EmailTooLong));
        assert!(check_sign_in_input("a@b.co", &"p".repeat(MAX_PASSWORD_BYTES)).is_ok());
        assert_eq!(
            check_sign_in_input("a@b.co", &"p".repeat(MAX_PASSWORD_BYTES + 1)),
            Err(SignInInputError::PasswordTooLong)
        );
        assert_eq!(SignInInputError::EmailTooLong.to_string(), "An email address is at most 254 bytes long.");
    }

    #[test]
    fn typed_email_is_audited_only_when_it_looks_like_one() {
        assert_eq!(typed_email_for_audit(" Someone@Example.COM "), "someone@example.com");
        assert_eq!(typed_email_for_audit("élodie@exemple.fr"), "élodie@exemple.fr");
        // Passwords typed into the email field: never kept, only their length.
        for pw in ["correct horse battery", "P@ssw0rd.1", "Tr0ub@dor.and3", "hunter2", "x@y.z"] {
            assert_eq!(typed_email_for_audit(pw), format!("[not an email address: {} bytes]", pw.len()), "{pw}");
        }
        let huge = "a".repeat(60_000) + "@example.com";
        assert_eq!(typed_email_for_audit(&huge), "[not an email address: 60012 bytes]");
    }

    #[test]
    fn status_follows_disable_and_delete() {
        let mut a = Account::with_password(AccountId::from_string("acc_1"), "a@b.co".into(), "h".into(), 1);
        assert_eq!((a.status(), a.is_disabled()), (AccountStatus::Active, false));
        a.disabled_at = Some(2);
        assert_eq!((a.status(), a.is_disabled()), (AccountStatus::Disabled, true));
        a.deleted_at = Some(3);
        assert_eq!((a.status(), a.is_disabled()), (AccountStatus::Deleted, true));
        a.disabled_at = None;
        assert!(a.is_disabled(), "a deleted account is refused even without disabled_at");
        for s in [AccountStatus::Active, AccountStatus::Disabled, AccountStatus::Deleted] {
            assert_eq!(AccountStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(AccountStatus::parse("Active"), None);
    }

    #[test]
    fn a_deleted_accounts_email_is_unique_and_never_an_address() {
        let id = AccountId::from_string("acc_xyz");
        let e = deleted_email(&id);
        assert_eq!(e, "deleted-acc_xyz@invalid");
        assert!(!is_valid_email(&e), "the placeholder can neither sign up nor receive mail");
        assert_eq!(check_new_account(&e, "long enough"), Err(NewAccountError::InvalidEmail));
    }

    #[test]
    fn with_password_keeps_what_it_is_given() {
        let id = AccountId::from_string("acc_1");
        let a = Account::with_password(id.clone(), "a@b.co".into(), "$argon2id$x".into(), 42);
        assert_eq!(
            (a.id, a.email.as_str(), a.password_hash.as_deref(), a.created_at),
            (id, "a@b.co", Some("$argon2id$x"), 42)
        );
    }
}
