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

#[cfg(test)]
mod tests {
    use bk_crypto::envelope::MasterKey;
    use bk_limits::{Limiter, LocalLimiter};

    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn stored(secret: &str) -> StoredSecret {
        let master = MasterKey::new("k", [3u8; 32]).unwrap();
        bk_crypto::client_secret::protect(&master, "cli_1", secret).unwrap()
    }

    fn verifier() -> SecretVerifier {
        SecretVerifier::new(MacKey::derive(&[9u8; 32], "client-secret-fast-path"))
    }

    /// Puts the client over its failure limit, so only the fast path can still answer `Valid`.
    async fn exhaust(limiter: &LocalLimiter, client: &ClientId) {
        for _ in 0..FAILURES_PER_MINUTE {
            limiter.record("client_auth_failures", client.as_str(), FAILURES_PER_MINUTE, 60).await;
        }
    }

    #[tokio::test]
    async fn client_secret_checked_against_its_hash() {
        let (v, limiter, client) = (verifier(), LocalLimiter::default(), ClientId::from_string("cli_1"));
        let s = stored("bks_right");
        assert_eq!(v.check(&limiter, &client, "bks_right", &s, NOW).await, SecretCheck::Valid);
        assert_eq!(v.check(&limiter, &client, "bks_wrong", &s, NOW).await, SecretCheck::Invalid);
    }

    #[tokio::test]
    async fn failed_client_secrets_are_throttled() {
        let (v, limiter, client) = (verifier(), LocalLimiter::default(), ClientId::from_string("cli_1"));
        let s = stored("bks_right");
        for _ in 0..FAILURES_PER_MINUTE {
            assert_eq!(v.check(&limiter, &client, "bks_wrong", &s, NOW).await, SecretCheck::Invalid);
        }
        match v.check(&limiter, &client, "bks_right", &s, NOW).await {
            SecretCheck::Throttled(wait) => assert!((1..=60).contains(&wait), "{wait}"),
            other => panic!("expected throttling, got {other:?}"),
        }
        let other = ClientId::from_string("cli_2");
        assert_eq!(v.check(&limiter, &other, "bks_right", &s, NOW).await, SecretCheck::Valid, "per client");
    }

    #[tokio::test]
    async fn verified_secret_takes_the_fast_path_for_ten_minutes() {
        let (v, limiter, client) = (verifier(), LocalLimiter::default(), ClientId::from_string("cli_1"));
        let s = stored("bks_right");
        assert_eq!(v.check(&limiter, &client, "bks_right", &s, NOW).await, SecretCheck::Valid);
        exhaust(&limiter, &client).await;
        // Remembered: answered without bcrypt or the limiter.
        assert_eq!(v.check(&limiter, &client, "bks_right", &s, NOW + 1000).await, SecretCheck::Valid);
        assert!(matches!(v.check(&limiter, &client, "bks_wrong", &s, NOW).await, SecretCheck::Throttled(_)));
        let later = NOW + FAST_PATH_TTL_MS;
        assert!(matches!(v.check(&limiter, &client, "bks_right", &s, later).await, SecretCheck::Throttled(_)));
    }

    #[tokio::test]
    async fn rotated_secret_ends_the_fast_path() {
        let (v, limiter, client) = (verifier(), LocalLimiter::default(), ClientId::from_string("cli_1"));
        let old = stored("bks_old");
        assert_eq!(v.check(&limiter, &client, "bks_old", &old, NOW).await, SecretCheck::Valid);
        let rotated = stored("bks_new");
        assert_eq!(v.check(&limiter, &client, "bks_old", &rotated, NOW).await, SecretCheck::Invalid);
        assert_eq!(v.check(&limiter, &client, "bks_new", &rotated, NOW).await, SecretCheck::Valid);
    }

    #[tokio::test]
    async fn forgotten_client_loses_the_fast_path() {
        let (v, limiter, client) = (verifier(), LocalLimiter::default(), ClientId::from_string("cli_1"));
        let s = stored("bks_right");
        assert_eq!(v.check(&limiter, &client, "bks_right", &s, NOW).await, SecretCheck::Valid);
        v.forget_client(&client);
        exhaust(&limiter, &client).await;
        assert!(matches!(v.check(&limiter, &client, "bks_right", &s, NOW).await, SecretCheck::Throttled(_)));
    }
}
