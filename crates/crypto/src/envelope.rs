//! AES-256-GCM envelopes under the master key. A sealed value is
//! `version(1) | key-id length(1) | key id | nonce(12) | ciphertext+tag`; the key id lets keys rotate.
//! Associated data binds a ciphertext to its row (tenant + row id), so a value moved elsewhere does not open.
//!
//! The master key is a small key ring: one active key seals; older keys (kept while
//! `bridgekeeper keys rotate-master` re-seals what they sealed) and a newly introduced one still open.
//! The key id written in each ciphertext says which key opens it.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroize;

use crate::CryptoError;
use crate::secret::random_bytes;

const VERSION: u8 = 1;

pub struct MasterKey {
    id: String,
    raw: [u8; 32],
    aead: LessSafeKey,
    /// Keys that open but never seal (rotation in progress).
    others: Vec<MasterKey>,
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.raw.zeroize();
    }
}

/// The key id a sealed value names, if it is well formed.
pub fn key_id_of(sealed: &[u8]) -> Option<&str> {
    let (&version, rest) = sealed.split_first()?;
    let (&id_len, rest) = rest.split_first()?;
    if version != VERSION || rest.len() < id_len as usize {
        return None;
    }
    std::str::from_utf8(&rest[..id_len as usize]).ok()
}

impl MasterKey {
    pub fn new(id: impl Into<String>, raw: [u8; 32]) -> Result<Self, CryptoError> {
        let id = id.into();
        if id.is_empty() || id.len() > 64 {
            return Err(CryptoError::BadKey("master key id must be 1 to 64 bytes"));
        }
        let unbound = UnboundKey::new(&AES_256_GCM, &raw).map_err(|_| CryptoError::BadKey("AES-256 key"))?;
        Ok(Self { id, raw, aead: LessSafeKey::new(unbound), others: Vec::new() })
    }

    /// This key, active, with `others` kept for opening only. Ids must differ.
    pub fn with_others(mut self, others: Vec<MasterKey>) -> Result<Self, CryptoError> {
        let mut ids = vec![self.id.as_str()];
        for k in &others {
            if ids.contains(&k.id.as_str()) {
                return Err(CryptoError::BadKey("two master keys with the same id"));
            }
            ids.push(k.id.as_str());
        }
        // A ring is one level deep: the others' own others are not kept.
        self.others = others
            .into_iter()
            .map(|mut k| {
                k.others.clear();
                k
            })
            .collect();
        Ok(self)
    }

    /// The id of the key that seals.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Every key id of the ring, the active one first.
    pub fn ids(&self) -> Vec<&str> {
        std::iter::once(self.id.as_str()).chain(self.others.iter().map(|k| k.id.as_str())).collect()
    }

    /// Raw bytes of the active key, for deriving purpose-bound subkeys (HMAC).
    pub fn raw(&self) -> &[u8; 32] {
        &self.raw
    }

    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let nonce_bytes = random_bytes::<NONCE_LEN>();
        let mut out = Vec::with_capacity(2 + self.id.len() + NONCE_LEN + plaintext.len() + 16);
        out.push(VERSION);
        out.push(self.id.len() as u8);
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(&nonce_bytes);
        // Room for the tag up front: growing the buffer would free a copy of the plaintext unzeroed.
        let mut body = Vec::with_capacity(plaintext.len() + AES_256_GCM.tag_len());
        body.extend_from_slice(plaintext);
        self.aead
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), Aad::from(aad), &mut body)
            .map_err(|_| CryptoError::Sign)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (&version, rest) = sealed.split_first().ok_or(CryptoError::Decrypt)?;
        let (&id_len, rest) = rest.split_first().ok_or(CryptoError::Decrypt)?;
        if version != VERSION || rest.len() < id_len as usize + NONCE_LEN {
            return Err(CryptoError::Decrypt);
        }
        let (id, rest) = rest.split_at(id_len as usize);
        let key = if id == self.id.as_bytes() {
            self
        } else {
            self.others.iter().find(|k| k.id.as_bytes() == id).ok_or(CryptoError::Decrypt)?
        };
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Decrypt)?;
        // Decrypted in place and returned without a copy, so the caller's buffer is the only one
        // holding the plaintext (and can be zeroized); a failed open leaves nothing behind.
        let mut buf = body.to_vec();
        match key.aead.open_in_place(nonce, Aad::from(aad), &mut buf) {
            Ok(plain) => {
                let len = plain.len();
                buf.truncate(len);
                Ok(buf)
            }
            Err(_) => {
                buf.zeroize();
                Err(CryptoError::Decrypt)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_roundtrip_and_aad_binding() {
        let k = MasterKey::new("k1", [7u8; 32]).unwrap();
        let sealed = k.seal(b"acc_1/row_1", b"upstream-token").unwrap();
        assert_eq!(k.open(b"acc_1/row_1", &sealed).unwrap(), b"upstream-token");
        assert!(k.open(b"acc_2/row_1", &sealed).is_err());
        let other = MasterKey::new("k2", [7u8; 32]).unwrap();
        assert!(other.open(b"acc_1/row_1", &sealed).is_err());
    }

    #[test]
    fn a_ring_seals_with_the_active_key_and_opens_with_any() {
        let old = MasterKey::new("k1", [7u8; 32]).unwrap();
        let sealed_old = old.seal(b"row", b"secret").unwrap();
        let ring = MasterKey::new("k2", [8u8; 32]).unwrap().with_others(vec![old]).unwrap();
        assert_eq!(ring.ids(), vec!["k2", "k1"]);
        assert_eq!(key_id_of(&sealed_old), Some("k1"));
        assert_eq!(ring.open(b"row", &sealed_old).unwrap(), b"secret");
        let sealed_new = ring.seal(b"row", b"secret").unwrap();
        assert_eq!(key_id_of(&sealed_new), Some("k2"));
        assert!(ring.open(b"other-row", &sealed_old).is_err());
        let without = MasterKey::new("k2", [8u8; 32]).unwrap();
        assert!(without.open(b"row", &sealed_old).is_err(), "a key left out of the ring no longer opens");
        let dup = MasterKey::new("k2", [8u8; 32]).unwrap();
        assert!(MasterKey::new("k2", [9u8; 32]).unwrap().with_others(vec![dup]).is_err());
    }
}
