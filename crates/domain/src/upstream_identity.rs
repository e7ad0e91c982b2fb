//! Upstream OpenID Connect identities: an (issuer, subject) pair of an operator-configured identity
//! provider belongs to at most one account; an account may hold several. Also the pure rules of a
//! sign-in through such a provider: which email a verified ID token vouches for (verified, in an
//! allowed domain), and what the sign-in may do with it — never link an existing account by email
//! (linking happens only while signed in), never create an account from an unverified address.

use crate::UnixTime;
use crate::account::{Account, normalize_email};
use crate::ids::AccountId;

/// How long a sign-in may wait at the provider.
pub const LOGIN_TTL_SECS: i64 = 600;

/// An identity linked to an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdpIdentity {
    /// Its handle on pages (`idi_…`): the unlink form names it, never the subject.
    pub id: String,
    /// The configured provider it came through.
    pub idp_id: String,
    pub issuer: String,
    pub subject: String,
    pub account_id: AccountId,
    /// The address the provider vouched for when it was linked.
    pub email: Option<String>,
    pub created_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
}

impl IdpIdentity {
    pub fn new(
        idp_id: &str,
        issuer: &str,
        subject: &str,
        account_id: AccountId,
        email: Option<String>,
        now: UnixTime,
    ) -> Self {
        let id = format!("idi_{}", uuid::Uuid::new_v4().simple());
        Self {
            id,
            idp_id: idp_id.to_owned(),
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
            account_id,
            email,
            created_at: now,
            last_used_at: Some(now),
        }
    }
}

/// A sign-in (or link) under way at a provider, by the digest of its `state`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdpLoginState {
    pub state_hash: Vec<u8>,
    pub idp_id: String,
    /// The digest of the browser session that started it: only that browser may finish it.
    pub browser_hash: Vec<u8>,
    /// Where the browser goes once signed in (a path of this site).
    pub next: String,
    /// Set when a signed-in account links the provider: the account it links to.
    pub link_account: Option<AccountId>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// How creating an account for a new identity went (nothing changed unless `Created`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdpSignUp {
    Created,
    /// An account holds the email: it is not linked (the person must sign in and link).
    EmailTaken,
    /// The identity was linked to an account meanwhile.
    IdentityTaken,
}

/// How linking an identity to a signed-in account went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdpLink {
    Linked,
    AlreadyLinked,
    /// Another account holds it (never moved, never a sign-in to that account).
    HeldByAnother,
}

/// How unlinking went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdpUnlink {
    Unlinked,
    /// The account holds no such identity (another account's is answered alike).
    NotFound,
    /// It is the account's only way to sign in (no password, passkey, wallet or other identity).
    LastSignInMethod,
}

/// Why a verified ID token cannot sign anyone in; each says what the person can do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdpEmailRefusal {
    #[error("the identity provider did not give an email address")]
    NoEmail,
    #[error("the identity provider does not vouch for this email address (email_verified is not true)")]
    Unverified,
    #[error("sign-in through this identity provider is limited to addresses in {0}")]
    DomainNotAllowed(String),
}

impl IdpEmailRefusal {
    /// A stable code for audit rows.
    pub fn code(&self) -> &'static str {
        match self {
            IdpEmailRefusal::NoEmail => "no_email",
            IdpEmailRefusal::Unverified => "email_unverified",
            IdpEmailRefusal::DomainNotAllowed(_) => "domain_not_allowed",
        }
    }
}

/// The email a verified ID token vouches for: present, `email_verified` exactly `true` (a string
/// `"true"`, as some providers send, counts; anything else or missing does not), and, when the
/// operator limited the provider to domains, in one of them — and for Google (`hosted_domain`
/// true) the token's `hd` claim must name that domain too, since only `hd` says the address is
/// managed by that Workspace.
pub fn vouched_email(
    email: Option<&str>,
    email_verified: Option<&serde_json::Value>,
    hd: Option<&str>,
    allowed_domains: &[String],
    hosted_domain: bool,
) -> Result<String, IdpEmailRefusal> {
    let email = email.map(str::trim).filter(|e| !e.is_empty()).ok_or(IdpEmailRefusal::NoEmail)?;
    if !crate::account::is_valid_email(email) {
        return Err(IdpEmailRefusal::NoEmail);
    }
    let verified = match email_verified {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => s == "true",
        _ => false,
    };
    if !verified {
        return Err(IdpEmailRefusal::Unverified);
    }
    let email = normalize_email(email);
    if !allowed_domains.is_empty() {
        let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        let listed = allowed_domains.iter().any(|d| d.eq_ignore_ascii_case(domain));
        let hosted_ok = !hosted_domain || hd.is_some_and(|h| h.eq_ignore_ascii_case(domain));
        if !listed || !hosted_ok {
            return Err(IdpEmailRefusal::DomainNotAllowed(allowed_domains.join(", ")));
        }
    }
    Ok(email)
}

/// A new account for a person a provider vouched for: the address verified (the provider proved
/// it), no password.
pub fn new_idp_account(id: AccountId, email: String, now: UnixTime) -> Account {
    Account {
        id,
        email,
        password_hash: None,
        created_at: now,
        email_verified_at: Some(now),
        disabled_at: None,
        deleted_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn domains(d: &[&str]) -> Vec<String> {
        d.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn an_unverified_or_missing_email_vouches_for_nothing() {
        let t = json!(true);
        assert_eq!(vouched_email(Some("A@Example.com"), Some(&t), None, &[], false), Ok("a@example.com".into()));
        assert_eq!(
            vouched_email(Some("a@example.com"), Some(&json!("true")), None, &[], false),
            Ok("a@example.com".into())
        );
        for bad in [None, Some(json!(false)), Some(json!("false")), Some(json!(1)), Some(json!(null))] {
            assert_eq!(
                vouched_email(Some("a@example.com"), bad.as_ref(), None, &[], false),
                Err(IdpEmailRefusal::Unverified),
                "{bad:?}"
            );
        }
        assert_eq!(vouched_email(None, Some(&t), None, &[], false), Err(IdpEmailRefusal::NoEmail));
        assert_eq!(vouched_email(Some("not an address"), Some(&t), None, &[], false), Err(IdpEmailRefusal::NoEmail));
    }

    #[test]
    fn allowed_domains_are_enforced_and_google_needs_hd() {
        let t = json!(true);
        let acme = domains(&["acme.example"]);
        assert!(vouched_email(Some("a@acme.example"), Some(&t), None, &acme, false).is_ok());
        assert!(matches!(
            vouched_email(Some("a@evil.example"), Some(&t), None, &acme, false),
            Err(IdpEmailRefusal::DomainNotAllowed(_))
        ));
        // A sub-domain or a look-alike suffix is another domain.
        assert!(vouched_email(Some("a@x.acme.example"), Some(&t), None, &acme, false).is_err());
        assert!(vouched_email(Some("a@evilacme.example"), Some(&t), None, &acme, false).is_err());
        // Google: a consumer account with a Workspace-looking address has no hd.
        assert!(vouched_email(Some("a@acme.example"), Some(&t), None, &acme, true).is_err());
        assert!(vouched_email(Some("a@acme.example"), Some(&t), Some("other.example"), &acme, true).is_err());
        assert!(vouched_email(Some("a@acme.example"), Some(&t), Some("acme.example"), &acme, true).is_ok());
    }

    #[test]
    fn an_idp_account_has_a_verified_email_and_no_password() {
        let a = new_idp_account(AccountId::from_string("acc_i"), "a@b.co".into(), 7);
        assert_eq!((a.password_hash.as_deref(), a.email_verified(), a.is_disabled()), (None, true, false));
    }
}
