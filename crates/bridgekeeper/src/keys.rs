//! Key material at start: the master key (from configuration, or generated under the data directory
//! in embedded mode only) and the signing keys (sealed under the master key in the database).

use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bk_crypto::envelope::MasterKey;
use bk_crypto::keyring::{KeyRing, SigningKey};
use bk_crypto::secret::{random_bytes, sha256};
use bk_domain::ports::{SigningKeyStore, StoredSigningKey};

use crate::config::Config;

fn decode_key(s: &str) -> anyhow::Result<[u8; 32]> {
    let s = s.trim();
    let raw = STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')))
        .context("master key is not base64")?;
    raw.try_into().map_err(|_| anyhow::anyhow!("master key must be exactly 32 bytes (base64 of 32 random bytes)"))
}

fn master_from_bytes(raw: [u8; 32]) -> anyhow::Result<MasterKey> {
    // The key id is derived from the key, so every instance with the same key agrees on it.
    let id = format!("mk-{}", &hex(&sha256(&raw))[..12]);
    Ok(MasterKey::new(id, raw)?)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn master_key(config: &Config, embedded: bool) -> anyhow::Result<MasterKey> {
    if let Some(k) = &config.master_key {
        return master_from_bytes(decode_key(k)?);
    }
    if !embedded {
        bail!(
            "master_key (BRIDGEKEEPER_MASTER_KEY) is required with a shared database: every instance must use the same key"
        );
    }
    let path = config.data_dir.join("master.key");
    if path.exists() {
        let s = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        return master_from_bytes(decode_key(&s)?);
    }
    let raw = random_bytes::<32>();
    write_private(&path, &STANDARD.encode(raw))?;
    tracing::warn!(path = %path.display(), "generated a new master key (embedded development mode); back it up, or set master_key in production");
    master_from_bytes(raw)
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Loads the signing keys, generating the first one if there is none.
pub async fn keyring(store: &dyn SigningKeyStore, master: &MasterKey, now: i64) -> anyhow::Result<KeyRing> {
    let mut stored = store.signing_keys(now).await?;
    if stored.is_empty() {
        let (key, der) = tokio::task::spawn_blocking(SigningKey::generate).await??;
        let sealed = master.seal(key.kid().as_str().as_bytes(), &der)?;
        let row = StoredSigningKey {
            kid: key.kid().clone(),
            alg: "RS256".into(),
            sealed_private_key: sealed,
            created_at: now,
            retire_after: None,
        };
        store.insert_signing_key(&row).await?;
        tracing::info!(kid = %key.kid(), "generated a new RS256 signing key");
        stored = store.signing_keys(now).await?;
    }
    ring_of(stored, master)
}

fn ring_of(stored: Vec<StoredSigningKey>, master: &MasterKey) -> anyhow::Result<KeyRing> {
    let mut keys = Vec::with_capacity(stored.len());
    for k in stored {
        let der = master
            .open(k.kid.as_str().as_bytes(), &k.sealed_private_key)
            .with_context(|| format!("signing key {} does not open with this master key", k.kid))?;
        keys.push(SigningKey::from_pkcs8(k.kid.clone(), &der)?);
    }
    Ok(KeyRing::new(keys)?)
}

/// Reloads the signing keys from the shared database (another instance generated or rotated one).
pub struct StoreKeys {
    pub store: std::sync::Arc<dyn SigningKeyStore>,
    pub master: std::sync::Arc<MasterKey>,
    pub clock: std::sync::Arc<dyn bk_domain::access::Clock>,
}

#[async_trait::async_trait]
impl bk_oauth::KeySource for StoreKeys {
    async fn load(&self) -> Result<KeyRing, String> {
        let stored = self.store.signing_keys(self.clock.now()).await.map_err(|e| e.to_string())?;
        let (master, stored) = (self.master.clone(), stored);
        // Parsing RSA keys is CPU work: off the async threads.
        tokio::task::spawn_blocking(move || ring_of(stored, &master).map_err(|e| format!("{e:#}")))
            .await
            .map_err(|e| e.to_string())?
    }
}
