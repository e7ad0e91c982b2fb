//! Key material and the operations on it: signing keys (parsed once, cached by `kid`), JWS/JWT,
//! AES-256-GCM envelopes under the master key, token hashing, HMAC and password hashing.
#![forbid(unsafe_code)]

pub mod client_secret;
pub mod envelope;
pub mod jwt;
pub mod keyring;
pub mod mac;
pub mod password;
pub mod secret;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("key material is invalid: {0}")]
    BadKey(&'static str),
    #[error("ciphertext could not be decrypted (wrong key, wrong associated data or tampered)")]
    Decrypt,
    #[error("random number generator failed")]
    Rng,
    #[error("signing failed")]
    Sign,
    #[error("password hashing failed")]
    PasswordHash,
}
