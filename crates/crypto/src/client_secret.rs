//! Confidential clients' secrets at rest: a bcrypt hash for verification plus an AES-256-GCM sealed
//! copy bound to the client id. bcrypt is deliberately slow (~77 ms at cost 10): callers run it on a
//! blocking thread and keep a verified-secret fast path in front of it.

use bk_domain::client::StoredSecret;

use crate::CryptoError;
use crate::envelope::MasterKey;
use crate::secret::{Secret, new_token};

pub const PREFIX: &str = "bks_";
const COST: u32 = 10;

pub fn generate() -> Secret {
    new_token(PREFIX)
}

/// Hashes and seals a secret for storage. CPU-heavy (bcrypt): call from a blocking thread.
pub fn protect(master: &MasterKey, client_id: &str, secret: &str) -> Result<StoredSecret, CryptoError> {
    let bcrypt = bcrypt::hash(secret, COST).map_err(|_| CryptoError::PasswordHash)?;
    let sealed = master.seal(format!("client-secret:{client_id}").as_bytes(), secret.as_bytes())?;
    Ok(StoredSecret { bcrypt, sealed })
}

/// Checks a presented secret against the bcrypt hash. CPU-heavy: call from a blocking thread.
pub fn verify(secret: &str, stored: &StoredSecret) -> bool {
    bcrypt::verify(secret, &stored.bcrypt).unwrap_or(false)
}

/// Recovers the secret from its sealed copy (operators only).
pub fn reveal(master: &MasterKey, client_id: &str, stored: &StoredSecret) -> Result<String, CryptoError> {
    let plain = master.open(format!("client-secret:{client_id}").as_bytes(), &stored.sealed)?;
    String::from_utf8(plain).map_err(|_| CryptoError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protect_verify_reveal() {
        let mk = MasterKey::new("k", [3u8; 32]).unwrap();
        let s = generate();
        let stored = protect(&mk, "cli_1", s.expose()).unwrap();
        assert!(stored.bcrypt.starts_with("$2"));
        assert!(verify(s.expose(), &stored));
        assert!(!verify("bks_wrong", &stored));
        assert_eq!(reveal(&mk, "cli_1", &stored).unwrap(), s.expose());
        assert!(reveal(&mk, "cli_2", &stored).is_err(), "sealed copy is bound to its client");
    }
}
