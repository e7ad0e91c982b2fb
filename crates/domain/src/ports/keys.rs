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
    /// Sets when every other key not retired earlier leaves the key ring (and the JWKS): a rotation;
    /// how many keys it concerns.
    async fn retire_signing_keys(&self, except: &KeyId, retire_after: UnixTime) -> Result<u64>;
    /// A rotation in one transaction: `key` becomes the newest (active) key and every other key not
    /// retired earlier leaves the ring at `retire_after`. With `only_if_active_created_before`, only
    /// if the active key was created before that time — a periodic rotation, recorded as the active
    /// key's successor (a key has at most one), so that of several instances rotating at once exactly
    /// one creates a key. `None` when it did not rotate (not due, or another instance just did).
    async fn rotate_signing_key(
        &self,
        key: &StoredSigningKey,
        only_if_active_created_before: Option<UnixTime>,
        retire_after: UnixTime,
    ) -> Result<Option<SigningKeyRotation>>;
}

/// What a rotation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningKeyRotation {
    /// The key that was active until now (none when there was no key).
    pub replaced: Option<KeyId>,
    /// How many older keys now leave the ring at `retire_after`.
    pub retired: u64,
}

/// Values sealed under the master key outside connections (whose credentials are re-sealed through
/// `ConnectionStore`), for `bridgekeeper keys rotate-master`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MasterSealedKind {
    /// A confidential client's recoverable secret copy; bound to `client-secret:{client id}`.
    ClientSecret,
    /// A signing key's PKCS#8 private key; bound to its kid.
    SigningKey,
    /// The secret of a registration at an upstream authorization server; bound to
    /// `upstream-client-secret:{id}`.
    UpstreamClientSecret,
    /// An account's TOTP secret; bound to `totp-secret:{account id}`.
    TotpSecret,
    /// A bridge-mode scoped token (`crate::bridge`); its id is `{account id}:{row id}`, bound to
    /// `bridge_binding(account, row)`.
    SessionBridge,
    /// An LLM model's upstream API key set by an operator; its id is the model id, bound to
    /// `llm_api_key_binding(model id)`.
    LlmApiKey,
}

/// One such value.
#[derive(Clone, Debug)]
pub struct MasterSealedValue {
    pub kind: MasterSealedKind,
    /// The client id, the kid or the upstream registration's id.
    pub id: String,
    pub sealed: Vec<u8>,
}

#[async_trait]
pub trait MasterSealedStore: Send + Sync {
    /// Every client secret copy (deleted clients' included) and every signing key (retired ones included).
    async fn master_sealed_values(&self) -> Result<Vec<MasterSealedValue>>;
    /// Replaces the value with `new` if it is still exactly `old` (a compare-and-set); false otherwise.
    async fn reseal_value(&self, kind: MasterSealedKind, id: &str, old: &[u8], new: &[u8]) -> Result<bool>;
}
