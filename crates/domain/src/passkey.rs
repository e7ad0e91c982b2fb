//! Passkeys (WebAuthn): public-key credentials a person's device holds, usable instead of the
//! password (discoverable, with user verification) or as the second factor after it. The server
//! keeps each credential's public key and signature counter (as the WebAuthn library serialises
//! them), and each ceremony's challenge state between its two requests, server-side, single use.

use crate::UnixTime;
use crate::ids::AccountId;

/// Passkeys one account may hold.
pub const MAX_PASSKEYS_PER_ACCOUNT: i64 = 20;
/// The longest passkey name, in characters.
pub const MAX_PASSKEY_NAME_CHARS: usize = 64;
/// How long a ceremony (options handed out, answer awaited) may take.
pub const CEREMONY_TTL_SECS: i64 = 300;

/// A registered passkey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPasskey {
    /// The credential id, base64url.
    pub credential_id: String,
    pub account_id: AccountId,
    /// What the person called it ("Laptop", "Phone").
    pub name: String,
    /// The credential (public key, counter, flags) as the WebAuthn library serialises it.
    pub credential: String,
    pub created_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
}

/// What a ceremony is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CeremonyPurpose {
    /// Adding a passkey to a signed-in account.
    Register,
    /// Signing in with a passkey alone (discoverable credential).
    SignIn,
    /// The second factor after the password.
    SecondFactor,
}

impl CeremonyPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            CeremonyPurpose::Register => "register",
            CeremonyPurpose::SignIn => "sign_in",
            CeremonyPurpose::SecondFactor => "second_factor",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "register" => Some(CeremonyPurpose::Register),
            "sign_in" => Some(CeremonyPurpose::SignIn),
            "second_factor" => Some(CeremonyPurpose::SecondFactor),
            _ => None,
        }
    }
}

/// A ceremony in progress: the challenge state, found by the digest of the id the browser holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCeremony {
    pub id_hash: Vec<u8>,
    /// The account it is for (none for a passkey sign-in: the passkey names it).
    pub account_id: Option<AccountId>,
    pub purpose: CeremonyPurpose,
    /// The library's state (the challenge), serialised.
    pub state: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// A passkey name as typed: trimmed, control characters refused, at most 64 characters; empty
/// becomes "Passkey".
pub fn passkey_name(typed: &str) -> Result<String, &'static str> {
    let name = typed.trim();
    if name.chars().any(char::is_control) {
        return Err("The name may not contain control characters.");
    }
    if name.chars().count() > MAX_PASSKEY_NAME_CHARS {
        return Err("The name is at most 64 characters long.");
    }
    Ok(if name.is_empty() { "Passkey".to_owned() } else { name.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_have_stable_names() {
        for p in [CeremonyPurpose::Register, CeremonyPurpose::SignIn, CeremonyPurpose::SecondFactor] {
            assert_eq!(CeremonyPurpose::parse(p.as_str()), Some(p));
        }
        assert_eq!(CeremonyPurpose::parse("x"), None);
    }

    #[test]
    fn names_are_bounded_and_printable() {
        assert_eq!(passkey_name("  Laptop "), Ok("Laptop".into()));
        assert_eq!(passkey_name(""), Ok("Passkey".into()));
        assert!(passkey_name("a\u{7}b").is_err());
        assert!(passkey_name(&"x".repeat(65)).is_err());
        assert_eq!(passkey_name(&"é".repeat(64)).map(|n| n.chars().count()), Ok(64));
    }
}
