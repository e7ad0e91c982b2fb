//! HMAC-SHA256 keys derived from the master key, one per purpose (cookies, CSRF, …).

use aws_lc_rs::hmac;

use crate::secret::ct_eq;

pub struct MacKey(hmac::Key);

impl MacKey {
    /// Derives a purpose-bound key: HMAC(master, "bridgekeeper:" + purpose).
    pub fn derive(master: &[u8; 32], purpose: &str) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, master);
        let tag = hmac::sign(&root, format!("bridgekeeper:{purpose}").as_bytes());
        MacKey(hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref()))
    }

    pub fn sign(&self, data: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(hmac::sign(&self.0, data).as_ref());
        out
    }

    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        ct_eq(&self.sign(data), tag)
    }
}
