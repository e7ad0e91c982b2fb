//! Verifying confidential clients' secrets without making bcrypt the bottleneck, and without
//! letting anyone lock a client out.
//!
//! bcrypt (cost 10, ~77 ms) would cap confidential token requests near 26/s per core and give
//! attackers a CPU lever. So: a secret that verified recently is remembered by an HMAC of
//! (client id, secret) together with the bcrypt hash it matched. The fast path only applies while the
//! client's stored hash is still that one, so rotating the secret (on any instance) ends it at once.
//! bcrypt itself runs on a blocking thread.
//!
//! Failures are counted per client (from any address) and per source address (over all clients).
//! While either count is over its limit, a presented secret is not checked with bcrypt but against
//! the secret's sealed copy (AES-GCM and a constant-time comparison: microseconds). The right secret
//! is accepted — its holder is never refused because of someone else's failures, wherever they
//! come from (a shared NAT, or one proxy in front of every instance, included) — and a wrong one is
//! refused as throttled and counted, so a guesser stays throttled and costs no bcrypt. Client
//! secrets carry 256 random bits: the limits protect the CPU and make guessing loud; guessing
//! itself is hopeless.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use bk_crypto::envelope::MasterKey;
use bk_crypto::mac::MacKey;
use bk_domain::client::StoredSecret;
use bk_domain::ids::ClientId;

const FAST_PATH_TTL_MS: i64 = 10 * 60 * 1000;
const MAX_CACHED: usize = 10_000;
/// Failed secrets per client per minute, from any address, before wrong secrets are throttled.
const FAILURES_PER_MINUTE_PER_CLIENT: u32 = 10;
/// Failed secrets per source address per minute, over all clients, before its wrong secrets are throttled.
const FAILURES_PER_MINUTE_PER_SOURCE: u32 = 20;
const CLIENT_BUCKET: &str = "client_auth_failures";
const SOURCE_BUCKET: &str = "client_auth_failures_by_source";

pub struct SecretVerifier {
    key: MacKey,
    /// Opens the sealed copy of a secret (the check used while throttled).
    master: Arc<MasterKey>,
    verified: Mutex<HashMap<[u8; 32], (String, i64)>>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SecretCheck {
    Valid,
    Invalid,
    /// A wrong secret while failures for this client or from this address are over their limit:
    /// retry after this many seconds.
    Throttled(i64),
}

impl SecretVerifier {
    pub fn new(key: MacKey, master: Arc<MasterKey>) -> Self {
        Self { key, master, verified: Mutex::default() }
    }

    fn tag(&self, client: &ClientId, secret: &str) -> [u8; 32] {
        let mut data = Vec::with_capacity(client.as_str().len() + secret.len() + 1);
        data.extend_from_slice(client.as_str().as_bytes());
        data.push(0);
        data.extend_from_slice(secret.as_bytes());
        self.key.sign(&data)
    }

    /// Does `secret` equal the sealed copy of the client's secret? (Cheap: no bcrypt.)
    fn matches_sealed(&self, client: &ClientId, secret: &str, stored: &StoredSecret) -> bool {
        match bk_crypto::client_secret::reveal(&self.master, client.as_str(), stored) {
            Ok(plain) => bk_crypto::secret::ct_eq(plain.as_bytes(), secret.as_bytes()),
            Err(_) => false,
        }
    }

    pub async fn check(
        &self,
        limiter: &dyn bk_limits::Limiter,
        client: &ClientId,
        secret: &str,
        stored: &StoredSecret,
        source: IpAddr,
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
        let source = bk_domain::rate_limit::source_key(source);
        let throttled = limiter
            .retry_after(CLIENT_BUCKET, client.as_str(), FAILURES_PER_MINUTE_PER_CLIENT, 60)
            .await
            .max(limiter.retry_after(SOURCE_BUCKET, &source, FAILURES_PER_MINUTE_PER_SOURCE, 60).await);
        let ok = match throttled {
            Some(_) => self.matches_sealed(client, secret, stored),
            None => {
                let (secret_owned, stored_owned) = (secret.to_owned(), stored.clone());
                tokio::task::spawn_blocking(move || bk_crypto::client_secret::verify(&secret_owned, &stored_owned))
                    .await
                    .unwrap_or(false)
            }
        };
        if ok {
            let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= MAX_CACHED {
                cache.retain(|_, (_, until)| *until > now_ms);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(tag, (stored.bcrypt.clone(), now_ms + FAST_PATH_TTL_MS));
            return SecretCheck::Valid;
        }
        limiter.record(CLIENT_BUCKET, client.as_str(), FAILURES_PER_MINUTE_PER_CLIENT, 60).await;
        limiter.record(SOURCE_BUCKET, &source, FAILURES_PER_MINUTE_PER_SOURCE, 60).await;
        match throttled {
            Some(wait) => SecretCheck::Throttled(wait as i64),
            None => SecretCheck::Invalid,
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
    use std::net::Ipv4Addr;

    use bk_limits::{Limiter, LocalLimiter};

    use super::*;

    const NOW: i64 = 1_700_000_000_000;
    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

    fn master() -> Arc<MasterKey> {
        Arc::new(MasterKey::new("k", [3u8; 32]).unwrap())
    }

    fn stored_for(client: &str, secret: &str) -> StoredSecret {
        bk_crypto::client_secret::protect(&master(), client, secret).unwrap()
    }

    fn stored(secret: &str) -> StoredSecret {
        stored_for("cli_1", secret)
    }

    fn verifier() -> SecretVerifier {
        SecretVerifier::new(MacKey::derive(&[9u8; 32], "client-secret-fast-path"), master())
    }

    /// Puts the client over its failure limit, so wrong secrets are throttled.
    async fn exhaust(limiter: &LocalLimiter, client: &ClientId) {
        for _ in 0..FAILURES_PER_MINUTE_PER_CLIENT {
            limiter.record(CLIENT_BUCKET, client.as_str(), FAILURES_PER_MINUTE_PER_CLIENT, 60).await;
        }
    }

    #[tokio::test]
    async fn client_secret_checked_against_its_hash() {
        let (v, limiter, client) = (verifier(), LocalLimiter::default(), ClientId::from_string("cli_1"));
        let s = stored("bks_right");
        assert_eq!(v.check(&limiter, &client, "bks_right", &s, A, NOW).await, SecretCheck::Valid);
        assert_eq!(v.check(&limiter, &client, "bks_wrong", &s, A, NOW).await, SecretCheck::Invalid);
    }

    #[tokio::test]
    async fn failed_client_secrets_throttle_wrong_guesses_never_the_right_secret() {
        let (v, limiter, client) = (verifier(), LocalLimiter::default(), ClientId::from_string("cli_1"));
        let s = stored("bks_right");
        for _ in 0..FAILURES_PER_MINUTE_PER_CLIENT {
            assert_eq!(v.check(&limiter, &client, "bks_wrong", &s, A, NOW).await, SecretCheck::Invalid);
        }
        match v.check(&limiter, &client, "bks_wrong", &s, A, NOW).await {
            SecretCheck::Throttled(wait) => assert!((1..=60).contains(&wait), "{wait}"),
            other => panic!("expected throttling, got {other:?}"),
        }
        assert!(matches!(v.check(&limiter, &client, "bks_wrong", &s, B, NOW).await, SecretCheck::Throttled(_)));
        // The holder of the right secret gets in, from the failing address as from any other.
        assert_eq!(v.check(&limiter, &client, "bks_right", &s, A, NOW).await, SecretCheck::Valid);
        let fresh = verifier();
        assert_eq!(fresh.check(&limiter, &client, "bks_right", &s, B, NOW).await, SecretCheck::Valid);
        let other = ClientId::from_string("cli_2");
        let s2 = stored_for("cli_2", "bks_two");
        assert_eq!(v.check(&limiter, &other, "bks_wrong", &s2, B, NOW).await, SecretCheck::Invalid, "per client");
    }

    #[tokio::test]
    async fn a_source_failing_across_clients_is_throttled() {
        let (v, limiter) = (verifier(), LocalLimiter::default());
        for i in 0..FAILURES_PER_MINUTE_PER_SOURCE {
            let client = ClientId::from_string(format!("cli_{}", i % 4));
            let s = stored_for(client.as_str(), "bks_right");
            assert_eq!(v.check(&limiter, &client, "bks_wrong", &s, A, NOW).await, SecretCheck::Invalid);
        }
        let fresh = ClientId::from_string("cli_fresh");
        let s = stored_for("cli_fresh", "bks_right");
        assert!(matches!(v.check(&limiter, &fresh, "bks_wrong", &s, A, NOW).await, SecretCheck::Throttled(_)));
        assert_eq!(v.check(&limiter, &fresh, "bks_wrong", &s, B, NOW).await, SecretCheck::Invalid, "another source");
        assert_eq!(v.check(&limiter, &fresh, "bks_right", &s, A, NOW).await, SecretCheck::Valid);
    }

    #[tokio::test]
    async fn throttled_checks_use_the_sealed_copy_not_bcrypt() {
        let (v, limiter, client) = (verifier(), LocalLimiter::default(), ClientId::from_string("cli_1"));
        // A stored secret whose bcrypt hash matches nothing: only the sealed copy can say yes.
        let s = StoredSecret { bcrypt: stored("bks_other").bcrypt, sealed: stored("bks_right").sealed };
        assert_eq!(v.check(&limiter, &client, "bks_right", &s, A, NOW).await, SecretCheck::Invalid, "bcrypt");
        exhaust(&limiter, &client).await;
        assert_eq!(v.check(&limiter, &client, "bks_right", &s, A, NOW).await, SecretCheck::Valid, "sealed copy");
        // A sealed copy of another client never matches.
        let foreign = StoredSecret { bcrypt: String::new(), sealed: stored_for("cli_2", "bks_x").sealed };
        assert!(matches!(v.check(&limiter, &client, "bks_x", &foreign, A, NOW).await, SecretCheck::Throttled(_)));
    }

    #[tokio::test]
    async fn verified_secret_takes_the_fast_path_for_ten_minutes() {
        let (v, limiter, client) = (verifier(), LocalLimiter::default(), ClientId::from_string("cli_1"));
        let s = stored("bks_right");
        assert_eq!(v.check(&limiter, &client, "bks_right", &s, A, NOW).await, SecretCheck::Valid);
        exhaust(&limiter, &client).await;
        // Remembered: answered without bcrypt or the limiter.
        assert_eq!(v.check(&limiter, &client, "bks_right", &s, A, NOW + 1000).await, SecretCheck::Valid);
        assert!(matches!(v.check(&limiter, &client, "bks_wrong", &s, A, NOW).await, SecretCheck::Throttled(_)));
        let later = NOW + FAST_PATH_TTL_MS;
        assert_eq!(v.check(&limiter, &client, "bks_right", &s, A, later).await, SecretCheck::Valid);
    }

    #[tokio::test]
    async fn rotated_secret_ends_the_fast_path() {
        let (v, limiter, client) = (verifier(), LocalLimiter::default(), ClientId::from_string("cli_1"));
        let old = stored("bks_old");
        assert_eq!(v.check(&limiter, &client, "bks_old", &old, A, NOW).await, SecretCheck::Valid);
        let rotated = stored("bks_new");
        assert_eq!(v.check(&limiter, &client, "bks_old", &rotated, A, NOW).await, SecretCheck::Invalid);
        assert_eq!(v.check(&limiter, &client, "bks_new", &rotated, A, NOW).await, SecretCheck::Valid);
        // Also while throttled: the old secret is refused, the new one accepted.
        exhaust(&limiter, &client).await;
        let fresh = verifier();
        assert!(matches!(fresh.check(&limiter, &client, "bks_old", &rotated, A, NOW).await, SecretCheck::Throttled(_)));
        assert_eq!(fresh.check(&limiter, &client, "bks_new", &rotated, A, NOW).await, SecretCheck::Valid);
    }

    #[tokio::test]
    async fn forgotten_client_loses_the_fast_path() {
        let (v, limiter, client) = (verifier(), LocalLimiter::default(), ClientId::from_string("cli_1"));
        let s = stored("bks_right");
        assert_eq!(v.check(&limiter, &client, "bks_right", &s, A, NOW).await, SecretCheck::Valid);
        v.forget_client(&client);
        assert!(v.verified.lock().unwrap().is_empty());
    }
}
