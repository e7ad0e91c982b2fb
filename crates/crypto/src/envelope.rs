//! AES-256-GCM envelopes under the master key. A sealed value is
//! `version(1) | key-id length(1) | key id | nonce(12) | ciphertext+tag`; the key id lets keys rotate.
//! Associated data binds a ciphertext to its row (tenant + row id), so a value moved elsewhere does not open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroize;

use crate::CryptoError;
use crate::secret::random_bytes;

const VERSION: u8 = 1;

pub struct MasterKey {
    id: String,
    raw: [u8; 32],
    aead: LessSafeKey,
}

impl MasterKey {
    pub fn new(id: impl Into<String>, raw: [u8; 32]) -> Result<Self, CryptoError> {
        let id = id.into();
        if id.is_empty() || id.len() > 64 {
            return Err(CryptoError::BadKey("master key id must be 1 to 64 bytes"));
        }
        let unbound = UnboundKey::new(&AES_256_GCM, &raw).map_err(|_| CryptoError::BadKey("AES-256 key"))?;
        Ok(Self { id, raw, aead: LessSafeKey::new(unbound) })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Raw bytes, for deriving purpose-bound subkeys (HMAC).
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
        if id != self.id.as_bytes() {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Decrypt)?;
        // Decrypted in place and returned without a copy, so the caller's buffer is the only one
        // holding the plaintext (and can be zeroized); a failed open leaves nothing behind.
        let mut buf = body.to_vec();
        match self.aead.open_in_place(nonce, Aad::from(aad), &mut buf) {
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
}
