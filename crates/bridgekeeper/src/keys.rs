//! Key material at start: the master key ring (from configuration, or generated under the data
//! directory in embedded mode only) and the signing keys (sealed under the master key in the
//! database); their rotation, by the operator (`keys rotate`) or on a period (`keys.rotate_every_days`,
//! [`rotate_periodically`]); and the operator's `keys list` and `keys rotate-master`.
//!
//! The master key ring: `master_key` seals (and opens); `open_only_master_keys` only open — the old
//! key while `keys rotate-master` re-seals what it sealed, or a new key introduced to every instance
//! before it becomes the active one. In embedded mode the `master.key` file holds one key per line,
//! the first active.

use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bk_crypto::envelope::MasterKey;
use bk_crypto::keyring::{KeyRing, SigningKey};
use bk_crypto::secret::{random_bytes, sha256};
use bk_domain::audit::{AuditEvent, AuditSink, Outcome};
use bk_domain::ids::KeyId;
use bk_domain::ports::{SigningKeyRotation, SigningKeyStore, StoredSigningKey};

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
    let open_only = config
        .open_only_master_keys
        .iter()
        .map(|k| master_from_bytes(decode_key(k)?))
        .collect::<anyhow::Result<Vec<_>>>()
        .context("open_only_master_keys")?;
    let ring = |active: MasterKey, mut others: Vec<MasterKey>| -> anyhow::Result<MasterKey> {
        others.extend(open_only);
        others.retain(|k| k.id() != active.id());
        let mut seen = std::collections::HashSet::new();
        others.retain(|k| seen.insert(k.id().to_owned()));
        Ok(active.with_others(others)?)
    };
    if let Some(k) = &config.master_key {
        return ring(master_from_bytes(decode_key(k)?)?, Vec::new());
    }
    if !embedded {
        bail!(
            "master_key (BRIDGEKEEPER_MASTER_KEY) is required with a shared database: every instance must use the same key"
        );
    }
    let path = config.data_dir.join("master.key");
    if path.exists() {
        let s = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut keys = s
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| master_from_bytes(decode_key(l)?))
            .collect::<anyhow::Result<Vec<_>>>()
            .with_context(|| format!("{}: one base64 key per line, the active one first", path.display()))?;
        if keys.is_empty() {
            bail!("{} holds no key", path.display());
        }
        let active = keys.remove(0);
        return ring(active, keys);
    }
    let raw = random_bytes::<32>();
    write_private(&path, &STANDARD.encode(raw))?;
    tracing::warn!(path = %path.display(), "generated a new master key (embedded development mode); back it up, or set master_key in production");
    ring(master_from_bytes(raw)?, Vec::new())
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

/// A new signing key, sealed under the master key (RSA key generation runs off the async threads).
async fn sealed_signing_key(master: &MasterKey, now: i64) -> anyhow::Result<StoredSigningKey> {
    let (key, der) = tokio::task::spawn_blocking(SigningKey::generate).await??;
    let sealed = master.seal(key.kid().as_str().as_bytes(), &der)?;
    Ok(StoredSigningKey {
        kid: key.kid().clone(),
        alg: "RS256".into(),
        sealed_private_key: sealed,
        created_at: now,
        retire_after: None,
    })
}

/// A new signing key, stored (sealed) as the newest: the active one of every instance's ring.
async fn new_signing_key(store: &dyn SigningKeyStore, master: &MasterKey, now: i64) -> anyhow::Result<KeyId> {
    let row = sealed_signing_key(master, now).await?;
    store.insert_signing_key(&row).await?;
    Ok(row.kid)
}

/// `keys rotate`: a new signing key becomes active; the others stay in the ring (and the JWKS) until
/// `retire_after`, when every token they signed has expired. One transaction: the new key and the
/// others' retirement are stored together or not at all.
pub async fn rotate_signing(
    store: &dyn SigningKeyStore,
    master: &MasterKey,
    now: i64,
    retire_after: i64,
) -> anyhow::Result<(KeyId, SigningKeyRotation)> {
    // The newest key (by creation time, then by its time-ordered id) is every ring's active one.
    let row = sealed_signing_key(master, now).await?;
    let done = store
        .rotate_signing_key(&row, None, retire_after)
        .await?
        .context("the store did not apply an unconditional rotation")?;
    Ok((row.kid, done))
}

/// The audit event of a rotation (`signing_key.rotated`), by `via` = `cli` or `schedule`.
pub fn rotation_event(kid: &KeyId, done: &SigningKeyRotation, retire_after: i64, at_ms: i64, via: &str) -> AuditEvent {
    AuditEvent::new("signing_key.rotated", Outcome::Success, at_ms)
        .target(kid)
        .detail("via", via)
        .detail("replaced", done.replaced.as_ref().map(|k| k.as_str().to_owned()))
        .detail("retired_keys", done.retired)
        .detail("older_keys_published_until", retire_after)
}

/// Rotation on a period, from the configuration: `keys.rotate_every_days` (or `_secs`), and how long an
/// older key stays published (the access-token lifetime and a minute, as for `keys rotate`).
#[derive(Clone, Copy, Debug)]
pub struct SigningKeySchedule {
    pub period_secs: Option<i64>,
    pub published_for_secs: i64,
}

impl SigningKeySchedule {
    pub fn of(config: &Config) -> Self {
        Self {
            period_secs: config.keys.rotation_period_secs(),
            published_for_secs: config.tokens.access_token_ttl_secs + 60,
        }
    }

    /// How often an instance looks: a quarter of the period, at least every second and at most every minute.
    fn check_every(period_secs: i64) -> std::time::Duration {
        std::time::Duration::from_secs(u64::try_from(period_secs / 4).unwrap_or(1).clamp(1, 60))
    }
}

/// Each instance looks now and then whether the active signing key is older than the period and, if
/// so, rotates it (as `keys rotate` does, audited with `via: schedule`). The store's rotation is
/// conditional and atomic, so of several instances that find the key due at once exactly one creates
/// a key; the others see it within their next reload (10 s) or at the first token it signed.
pub async fn rotate_periodically(
    schedule: SigningKeySchedule,
    store: std::sync::Arc<dyn SigningKeyStore>,
    master: std::sync::Arc<MasterKey>,
    clock: std::sync::Arc<dyn bk_domain::access::Clock>,
    audit: std::sync::Arc<dyn AuditSink>,
) {
    let Some(period) = schedule.period_secs else { return };
    let every = SigningKeySchedule::check_every(period);
    tracing::info!(period_secs = period, check_every_secs = every.as_secs(), "signing keys rotate on a period");
    // Instances started together do not all look (and generate a key) at the same instant.
    let jitter = u64::from(u32::from_le_bytes(random_bytes::<4>())) % u64::try_from(every.as_millis()).unwrap_or(1000);
    tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = clock.now();
        let retire_after = now + schedule.published_for_secs;
        match rotate_if_due(store.as_ref(), &master, now, period, retire_after).await {
            Ok(Some((kid, done))) => {
                tracing::info!(%kid, retired = done.retired, published_until = retire_after,
                    "signing key rotated on schedule (older keys stay published until their tokens expire)");
                audit.record(rotation_event(&kid, &done, retire_after, clock.now_ms(), "schedule"));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "rotating the signing key on schedule failed; retrying")
            }
        }
    }
}

/// Rotates if the active key is older than `period_secs`: the key and what was retired, or `None`
/// when it is not due or another instance rotated it first.
pub async fn rotate_if_due(
    store: &dyn SigningKeyStore,
    master: &MasterKey,
    now: i64,
    period_secs: i64,
    retire_after: i64,
) -> anyhow::Result<Option<(KeyId, SigningKeyRotation)>> {
    let due_before = now - period_secs;
    // A cheap look first: an RSA key is generated only when the rotation is due.
    if store.signing_keys(now).await?.first().is_some_and(|active| active.created_at >= due_before) {
        return Ok(None);
    }
    let row = sealed_signing_key(master, now).await?;
    Ok(store.rotate_signing_key(&row, Some(due_before), retire_after).await?.map(|done| (row.kid, done)))
}

/// Loads the signing keys, generating the first one if there is none.
pub async fn keyring(store: &dyn SigningKeyStore, master: &MasterKey, now: i64) -> anyhow::Result<KeyRing> {
    let mut stored = store.signing_keys(now).await?;
    if stored.is_empty() {
        let kid = new_signing_key(store, master, now).await?;
        tracing::info!(%kid, "generated a new RS256 signing key");
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

/// How many stored values each master key id seals (`keys list`).
pub async fn sealed_by_key(store: &bk_store::SqlStore) -> anyhow::Result<std::collections::BTreeMap<String, usize>> {
    use bk_domain::ports::{ConnectionStore, MasterSealedStore};
    let mut counts = std::collections::BTreeMap::new();
    let mut count = |sealed: &[u8]| {
        let id = bk_crypto::envelope::key_id_of(sealed).unwrap_or("(unreadable)").to_owned();
        *counts.entry(id).or_insert(0usize) += 1;
    };
    let mut after = None;
    loop {
        let page = store.sealed_credentials_page(after.as_ref(), 500).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        page.iter().for_each(|r| count(&r.sealed));
    }
    store.master_sealed_values().await?.iter().for_each(|v| count(&v.sealed));
    Ok(counts)
}

/// What `keys rotate-master` did.
#[derive(Debug, Default)]
pub struct Rotation {
    pub resealed: usize,
    pub already_current: usize,
    /// Values that did not open with any key of the ring (left as they are).
    pub failed: Vec<String>,
}

/// Re-seals every value sealed under the master key that is not under the active key, row by row,
/// each a compare-and-set on the old ciphertext: a refresh that stores a new credential meanwhile
/// wins, and the row is read again and re-sealed if it still needs it. Safe while servers serve,
/// as long as every instance's ring holds the active key.
pub async fn rotate_master(store: &bk_store::SqlStore, master: &MasterKey) -> anyhow::Result<Rotation> {
    use bk_domain::connection::credential_binding;
    use bk_domain::ports::{ConnectionStore, MasterSealedKind, MasterSealedStore};
    let active = master.id().to_owned();
    let current = |sealed: &[u8]| bk_crypto::envelope::key_id_of(sealed) == Some(active.as_str());
    let mut done = Rotation::default();
    let mut after = None;
    loop {
        let page = store.sealed_credentials_page(after.as_ref(), 200).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for row in page {
            let aad = credential_binding(&row.account_id, &row.id);
            let mut sealed = row.sealed;
            // A few rounds: each lost compare-and-set means a refresh just stored a newer credential.
            for _ in 0..5 {
                if current(&sealed) {
                    done.already_current += 1;
                    break;
                }
                let new = match master.open(&aad, &sealed) {
                    Ok(plain) => {
                        let plain = zeroize::Zeroizing::new(plain);
                        master.seal(&aad, &plain)?
                    }
                    Err(_) => {
                        done.failed.push(format!("connection {}", row.id));
                        break;
                    }
                };
                if store.reseal_credential(&row.account_id, &row.id, &sealed, &new).await? {
                    done.resealed += 1;
                    break;
                }
                match store.sealed_credential(&row.account_id, &row.id).await? {
                    Some(now) => sealed = now,
                    None => break, // deleted meanwhile
                }
            }
        }
    }
    for v in store.master_sealed_values().await? {
        if current(&v.sealed) {
            done.already_current += 1;
            continue;
        }
        let aad = match v.kind {
            MasterSealedKind::ClientSecret => format!("client-secret:{}", v.id).into_bytes(),
            MasterSealedKind::SigningKey => v.id.clone().into_bytes(),
            MasterSealedKind::UpstreamClientSecret => bk_domain::connection::upstream_registration_binding(&v.id),
            MasterSealedKind::TotpSecret => {
                bk_domain::second_factor::totp_binding(&bk_domain::ids::AccountId::from_string(v.id.clone()))
                    .into_bytes()
            }
            MasterSealedKind::SessionBridge => {
                let (account, row) = v.id.split_once(':').unwrap_or_default();
                bk_domain::bridge::bridge_binding(&bk_domain::ids::AccountId::from_string(account.to_owned()), row)
            }
            MasterSealedKind::LlmApiKey => bk_domain::ports::llm_api_key_binding(&v.id),
        };
        let what = match v.kind {
            MasterSealedKind::ClientSecret => "client secret",
            MasterSealedKind::SigningKey => "signing key",
            MasterSealedKind::UpstreamClientSecret => "upstream registration",
            MasterSealedKind::TotpSecret => "TOTP secret",
            MasterSealedKind::SessionBridge => "bridge-mode session token",
            MasterSealedKind::LlmApiKey => "LLM upstream API key of model",
        };
        let new = match master.open(&aad, &v.sealed) {
            Ok(plain) => master.seal(&aad, &zeroize::Zeroizing::new(plain))?,
            Err(_) => {
                done.failed.push(format!("{what} {}", v.id));
                continue;
            }
        };
        // A client secret replaced meanwhile was sealed under an instance's active key: leave it.
        if store.reseal_value(v.kind, &v.id, &v.sealed, &new).await? {
            done.resealed += 1;
        } else {
            done.failed.push(format!("{what} {} (changed meanwhile: run the command again)", v.id));
        }
    }
    Ok(done)
}
