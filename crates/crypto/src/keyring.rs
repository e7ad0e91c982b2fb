//! Signing keys. Each key is parsed once when loaded and kept in memory by `kid`; signing and
//! verification never re-parse key material.

use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{self, KeyPair as _, ParsedPublicKey};
use bk_domain::ids::KeyId;
use serde_json::json;

use crate::CryptoError;
use crate::secret::b64url;

pub struct SigningKey {
    kid: KeyId,
    pair: KeyPair,
    public: ParsedPublicKey,
    jwk: serde_json::Value,
}

impl SigningKey {
    /// Generates a new RSA-2048 key; returns it with its PKCS#8 DER for sealing at rest.
    /// Key generation takes tens of milliseconds: call it from a blocking thread.
    pub fn generate() -> Result<(Self, Vec<u8>), CryptoError> {
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| CryptoError::BadKey("RSA key generation"))?;
        let der = pair.as_der().map_err(|_| CryptoError::BadKey("PKCS#8 encoding"))?.as_ref().to_vec();
        let key = Self::from_pkcs8(KeyId::generate(), &der)?;
        Ok((key, der))
    }

    pub fn from_pkcs8(kid: KeyId, der: &[u8]) -> Result<Self, CryptoError> {
        let pair = KeyPair::from_pkcs8(der).map_err(|_| CryptoError::BadKey("RSA PKCS#8"))?;
        let components = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let public = components
            .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
            .map_err(|_| CryptoError::BadKey("RSA public key"))?;
        let jwk = json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": kid.as_str(),
            "n": b64url(&components.n),
            "e": b64url(&components.e),
        });
        Ok(Self { kid, pair, public, jwk })
    }

    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    pub fn jwk(&self) -> &serde_json::Value {
        &self.jwk
    }

    /// RS256 (RSASSA-PKCS1-v1_5 with SHA-256) over `message`.
    pub fn sign_rs256(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig).map_err(|_| CryptoError::Sign)?;
        Ok(sig)
    }

    pub fn verify_rs256(&self, message: &[u8], sig: &[u8]) -> bool {
        self.public.verify_sig(message, sig).is_ok()
    }
}

/// The keys in use: one active signing key plus any others still valid for verification.
pub struct KeyRing {
    active: Arc<SigningKey>,
    all: Vec<Arc<SigningKey>>,
    jwks: String,
}

impl KeyRing {
    /// `keys` must be non-empty; the first is the active signing key.
    pub fn new(keys: Vec<SigningKey>) -> Result<Self, CryptoError> {
        let all: Vec<Arc<SigningKey>> = keys.into_iter().map(Arc::new).collect();
        let active = all.first().cloned().ok_or(CryptoError::BadKey("no signing key"))?;
        let jwks = json!({ "keys": all.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string();
        Ok(Self { active, all, jwks })
    }

    pub fn active(&self) -> &SigningKey {
        &self.active
    }

    pub fn find(&self, kid: &str) -> Option<&SigningKey> {
        self.all.iter().find(|k| k.kid.as_str() == kid).map(|k| k.as_ref())
    }

    /// The JWKS document, serialized once.
    pub fn jwks_json(&self) -> &str {
        &self.jwks
    }

    /// The key ids, the active one first (to tell whether a reloaded ring differs).
    pub fn kids(&self) -> Vec<&str> {
        std::iter::once(self.active.kid().as_str())
            .chain(self.all.iter().map(|k| k.kid().as_str()).filter(|k| *k != self.active.kid().as_str()))
            .collect()
    }
}

/// The key ring in use, replaceable while the server runs (another instance generated or rotated a
/// key). Readers take a cheap `Arc` clone; nothing re-parses keys.
pub struct KeySet {
    ring: std::sync::RwLock<Arc<KeyRing>>,
}

impl KeySet {
    pub fn new(ring: KeyRing) -> Self {
        Self { ring: std::sync::RwLock::new(Arc::new(ring)) }
    }

    pub fn current(&self) -> Arc<KeyRing> {
        self.ring.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn replace(&self, ring: KeyRing) {
        *self.ring.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ring);
    }
}
