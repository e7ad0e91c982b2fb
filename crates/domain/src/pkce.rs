//! PKCE (RFC 7636), S256 only: `plain` and missing challenges are refused (OAuth 2.1).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    #[error("code_challenge is required (PKCE with S256)")]
    MissingChallenge,
    #[error("code_challenge_method is required and must be S256")]
    MissingMethod,
    #[error("code_challenge_method must be S256; {0} is not supported")]
    UnsupportedMethod(String),
    #[error("code_challenge must be 43 characters of base64url (a SHA-256 digest)")]
    MalformedChallenge,
    #[error("code_verifier is required")]
    MissingVerifier,
    #[error("code_verifier must be 43 to 128 characters of [A-Za-z0-9-._~]")]
    MalformedVerifier,
    #[error("code_verifier does not match the code_challenge")]
    Mismatch,
}

/// A validated S256 challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeChallenge(String);

impl CodeChallenge {
    /// Validates the pair of authorization-request parameters.
    pub fn from_request(challenge: Option<&str>, method: Option<&str>) -> Result<Self, PkceError> {
        let challenge = challenge.filter(|c| !c.is_empty()).ok_or(PkceError::MissingChallenge)?;
        match method {
            None | Some("") => return Err(PkceError::MissingMethod),
            Some("S256") => {}
            Some(other) => {
                return Err(PkceError::UnsupportedMethod(other.chars().take(20).collect()));
            }
        }
        let ok =
            challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(PkceError::MalformedChallenge);
        }
        Ok(CodeChallenge(challenge.to_owned()))
    }

    /// Wraps a challenge read back from storage.
    pub fn from_stored(s: String) -> Self {
        CodeChallenge(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks a `code_verifier` against this challenge in constant time.
    pub fn verify(&self, verifier: Option<&str>) -> Result<(), PkceError> {
        let verifier = verifier.filter(|v| !v.is_empty()).ok_or(PkceError::MissingVerifier)?;
        let ok = (43..=128).contains(&verifier.len())
            && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if !ok {
            return Err(PkceError::MalformedVerifier);
        }
        let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        if bool::from(digest.as_bytes().ct_eq(self.0.as_bytes())) { Ok(()) } else { Err(PkceError::Mismatch) }
    }
}

/// S256 of a verifier (used by clients and tests).
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    const V: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    #[test]
    fn rfc7636_example_verifies() {
        let c = CodeChallenge::from_request(Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"), Some("S256")).unwrap();
        assert_eq!(c.verify(Some(V)), Ok(()));
        assert_eq!(c.verify(Some(&V.replace('d', "e"))), Err(PkceError::Mismatch));
    }

    #[test]
    fn pkce_plain_rejected() {
        assert_eq!(
            CodeChallenge::from_request(Some(V), Some("plain")),
            Err(PkceError::UnsupportedMethod("plain".into()))
        );
    }

    #[test]
    fn pkce_missing_challenge_or_method_rejected() {
        assert_eq!(CodeChallenge::from_request(None, Some("S256")), Err(PkceError::MissingChallenge));
        assert_eq!(CodeChallenge::from_request(Some(&s256(V)), None), Err(PkceError::MissingMethod));
    }

    #[test]
    fn pkce_downgrade_missing_verifier_rejected() {
        let c = CodeChallenge::from_request(Some(&s256(V)), Some("S256")).unwrap();
        assert_eq!(c.verify(None), Err(PkceError::MissingVerifier));
        assert_eq!(c.verify(Some("short")), Err(PkceError::MalformedVerifier));
    }
}
