//! Verifying confidential clients' secrets without making bcrypt the bottleneck.
//!
//! bcrypt (cost 10, ~77 ms) would cap confidential token requests near 26/s per core and give
//! attackers a CPU lever. So: a secret that verified recently is remembered by an HMAC of
//! (client id, secret) together with the bcrypt hash it matched. The fast path only applies while the
//! client's stored hash is still that one, so rotating the secret (on any instance) ends it at once.
//! bcrypt itself runs on a blocking thread, and failures are rate-limited per client.

use std::collections::HashMap;
use std::sync::Mutex;

use bk_crypto::mac::MacKey;
use bk_domain::client::StoredSecret;
use bk_domain::ids::ClientId;

const FAST_PATH_TTL_MS: i64 = 10 * 60 * 1000;
const MAX_CACHED: usize = 10_000;
const FAILURES_PER_MINUTE: u32 = 10;

pub struct SecretVerifier {
    key: MacKey,
    verified: Mutex<HashMap<[u8; 32], (String, i64)>>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SecretCheck {
    Valid,
    Invalid,
    /// Too many failures for this client: retry after this many seconds.
    Throttled(i64),
}

impl SecretVerifier {
    pub fn new(key: MacKey) -> Self {
        Self { key, verified: Mutex::default() }
    }

    fn tag(&self, client: &ClientId, secret: &str) -> [u8; 32] {
        let mut data = Vec::with_capacity(client.as_str().len() + secret.len() + 1);
        data.extend_from_slice(client.as_str().as_bytes());
        data.push(0);
        data.extend_from_slice(secret.as_bytes());
        self.key.sign(&data)
    }

    pub async fn check(
        &self,
        limiter: &dyn bk_limits::Limiter,
        client: &ClientId,
        secret: &str,
        stored: &StoredSecret,
        now_ms: i64,
    ) -> SecretCheck {
        let tag = self.tag(client, secret);
        {
            let cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((hash, until)) = cache.get(&tag)
                && *hash == stored.bcrypt
                && *until > now_ms
            {
                return SecretCheck::Valid;
            }
        }
        if let Some(wait) = limiter.retry_after("client_auth_failures", client.as_str(), FAILURES_PER_MINUTE, 60).await
        {
            return SecretCheck::Throttled(wait as i64);
        }
        let (secret_owned, stored_owned) = (secret.to_owned(), stored.clone());
        let ok = tokio::task::spawn_blocking(move || bk_crypto::client_secret::verify(&secret_owned, &stored_owned))
            .await
            .unwrap_or(false);
        if ok {
            let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= MAX_CACHED {
                cache.retain(|_, (_, until)| *until > now_ms);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(tag, (stored.bcrypt.clone(), now_ms + FAST_PATH_TTL_MS));
            SecretCheck::Valid
        } else {
            limiter.record("client_auth_failures", client.as_str(), FAILURES_PER_MINUTE, 60).await;
            SecretCheck::Invalid
        }
    }

    /// Forgets every remembered secret of a client (rotation, deletion) on this instance.
    pub fn forget_client(&self, _client: &ClientId) {
        // Entries are keyed by an HMAC that includes the secret, so they cannot be found by client;
        // they are already dead (the stored hash changed), and dropping all is cheap and rare.
        self.verified.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}
