//! Signing keys, sealed at rest.

use async_trait::async_trait;

use super::Result;
use crate::UnixTime;
use crate::ids::KeyId;

/// A signing key as stored: the PKCS#8 private key sealed under the master key.
#[derive(Clone, Debug)]
pub struct StoredSigningKey {
    pub kid: KeyId,
    pub alg: String,
    pub sealed_private_key: Vec<u8>,
    pub created_at: UnixTime,
    pub retire_after: Option<UnixTime>,
}

#[async_trait]
pub trait SigningKeyStore: Send + Sync {
    /// Keys not yet retired at `now`, newest first.
    async fn signing_keys(&self, now: UnixTime) -> Result<Vec<StoredSigningKey>>;
    async fn insert_signing_key(&self, key: &StoredSigningKey) -> Result<()>;
}
