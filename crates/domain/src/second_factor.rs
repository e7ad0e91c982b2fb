//! A second factor: a TOTP authenticator (RFC 6238: SHA-1, 6 digits, 30-second steps, one step of
//! skew either way) and ten single-use recovery codes. The TOTP secret is sealed under the master
//! key, bound to the account; a recovery code is kept only as a keyed digest. A code is accepted
//! only for a step later than the last one accepted, so a code seen over a shoulder or in a proxy
//! log cannot be replayed within its window.

use crate::ids::AccountId;

/// Recovery codes made at enrolment.
pub const RECOVERY_CODES: usize = 10;
/// Characters of a recovery code (shown as two groups of five).
pub const RECOVERY_CODE_CHARS: usize = 10;
/// The alphabet of recovery codes: no 0/O, 1/I/L (read aloud, typed from paper).
pub const RECOVERY_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
/// Seconds per TOTP step.
pub const TOTP_STEP_SECS: u64 = 30;
/// TOTP code length.
pub const TOTP_DIGITS: usize = 6;

/// The binding of an account's sealed TOTP secret (a copy moved to another account does not open).
pub fn totp_binding(account: &AccountId) -> String {
    format!("totp-secret:{account}")
}

/// What a person typed into the second-factor form, told apart by shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecondFactorInput {
    /// Six digits (spaces ignored).
    Totp(String),
    /// A recovery code, normalised: upper case, no separators.
    Recovery(String),
}

/// Reads a code as typed (`123 456`, `abcde-fghjk`); `None` when it is neither shape.
pub fn parse_second_factor(typed: &str) -> Option<SecondFactorInput> {
    let compact: String = typed.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
    if compact.len() == TOTP_DIGITS && compact.bytes().all(|b| b.is_ascii_digit()) {
        return Some(SecondFactorInput::Totp(compact));
    }
    let upper = compact.to_ascii_uppercase();
    if upper.len() == RECOVERY_CODE_CHARS && upper.bytes().all(|b| RECOVERY_ALPHABET.contains(&b)) {
        return Some(SecondFactorInput::Recovery(upper));
    }
    None
}

/// A recovery code as shown to the person: `ABCDE-FGHJK`.
pub fn show_recovery_code(code: &str) -> String {
    let (a, b) = code.split_at(code.len() / 2);
    format!("{a}-{b}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_told_apart_by_shape() {
        assert_eq!(parse_second_factor(" 123 456 "), Some(SecondFactorInput::Totp("123456".into())));
        assert_eq!(parse_second_factor("abcde-fghjk"), Some(SecondFactorInput::Recovery("ABCDEFGHJK".into())));
        assert_eq!(parse_second_factor("ABCDEFGHJK"), Some(SecondFactorInput::Recovery("ABCDEFGHJK".into())));
        for bad in ["", "12345", "1234567", "abcde-fghj0", "ABCDEFGHJI", "12345a", "ABCDE-FGHJK-L"] {
            assert_eq!(parse_second_factor(bad), None, "{bad}");
        }
    }

    #[test]
    fn recovery_codes_are_shown_in_two_groups() {
        assert_eq!(show_recovery_code("ABCDEFGHJK"), "ABCDE-FGHJK");
        assert_eq!(
            parse_second_factor(&show_recovery_code("ABCDEFGHJK")),
            Some(SecondFactorInput::Recovery("ABCDEFGHJK".into()))
        );
    }
}
