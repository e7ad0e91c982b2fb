//! How failed sign-ins are slowed down. Three sliding windows of a minute, through the shared limiter
//! (in memory, or Redis for every instance):
//!
//! - per source address, whatever account it tries: one source cannot walk through many accounts;
//! - per account *and* source: guessing one account's password from one place is slow, and it locks
//!   out only that place — the owner signing in from elsewhere is not refused;
//! - per account, from every source together: a higher ceiling that bounds how fast a distributed
//!   attacker can guess. Reaching it does lock the account out for everyone until the window slides,
//!   but only an attacker with several source addresses can reach it.
//!
//! Keys hold no typed text: an account name is keyed by its digest (a password typed into the email
//! field never becomes a key in clear, and keys have a fixed size), a source by its address (IPv6 by
//! its /64, the block one subscriber usually holds).

use bk_crypto::secret::{hex, sha256};
use bk_limits::Limiter;

const WINDOW_SECS: u32 = 60;
const BY_SOURCE: &str = "sign_in_failures_by_source";
const BY_ACCOUNT_AND_SOURCE: &str = "sign_in_failures";
const BY_ACCOUNT: &str = "sign_in_failures_by_account";

/// Failed sign-ins allowed per minute before further attempts are refused.
#[derive(Clone, Copy, Debug)]
pub struct SignInLimits {
    /// From one source, for one account (`limits.login_failures_per_minute`).
    pub per_account_and_source: u32,
    /// From one source, whatever the accounts (`limits.login_failures_per_source_per_minute`).
    pub per_source: u32,
    /// For one account, from every source together (`limits.login_failures_per_account_per_minute`).
    pub per_account: u32,
}

pub(crate) use bk_domain::rate_limit::source_key;

/// The limiter key of an account name (the normalised email, existing or not).
fn account_key(email: &str) -> String {
    hex(&sha256(email.as_bytes()))
}

impl SignInLimits {
    /// The seconds to wait if this source is over its limit (checked before anything it typed is read).
    pub(crate) async fn source_refused(&self, limiter: &dyn Limiter, source: &str) -> Option<u64> {
        limiter.retry_after(BY_SOURCE, source, self.per_source, WINDOW_SECS).await
    }

    /// The seconds to wait if this account is over its limit, from this source or from all of them together.
    pub(crate) async fn account_refused(&self, limiter: &dyn Limiter, email: &str, source: &str) -> Option<u64> {
        let account = account_key(email);
        let pair = format!("{account}|{source}");
        let (a, b) = tokio::join!(
            limiter.retry_after(BY_ACCOUNT_AND_SOURCE, &pair, self.per_account_and_source, WINDOW_SECS),
            limiter.retry_after(BY_ACCOUNT, &account, self.per_account, WINDOW_SECS),
        );
        a.max(b)
    }

    /// Counts a failed attempt from `source` (for `email`, when one was typed within bounds).
    pub(crate) async fn record_failure(&self, limiter: &dyn Limiter, email: Option<&str>, source: &str) {
        limiter.record(BY_SOURCE, source, self.per_source, WINDOW_SECS).await;
        if let Some(email) = email {
            let account = account_key(email);
            let pair = format!("{account}|{source}");
            limiter.record(BY_ACCOUNT_AND_SOURCE, &pair, self.per_account_and_source, WINDOW_SECS).await;
            limiter.record(BY_ACCOUNT, &account, self.per_account, WINDOW_SECS).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bk_limits::LocalLimiter;

    const LIMITS: SignInLimits = SignInLimits { per_account_and_source: 2, per_source: 5, per_account: 3 };

    #[test]
    fn account_keys_are_fixed_size_digests() {
        let k = account_key("victim@example.com");
        assert_eq!(k.len(), 64);
        assert!(!k.contains("victim"));
        assert_eq!(account_key(&"x".repeat(10_000)).len(), 64);
    }

    #[tokio::test]
    async fn one_source_locks_out_only_itself() {
        let l = LocalLimiter::default();
        for _ in 0..2 {
            LIMITS.record_failure(&l, Some("v@example.com"), "10.0.0.1").await;
        }
        assert!(LIMITS.account_refused(&l, "v@example.com", "10.0.0.1").await.is_some());
        assert_eq!(LIMITS.account_refused(&l, "v@example.com", "10.0.0.2").await, None, "the owner elsewhere");
        assert_eq!(LIMITS.account_refused(&l, "w@example.com", "10.0.0.1").await, None, "another account");
        assert_eq!(LIMITS.source_refused(&l, "10.0.0.1").await, None);
    }

    #[tokio::test]
    async fn the_account_ceiling_counts_every_source() {
        let l = LocalLimiter::default();
        for source in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            LIMITS.record_failure(&l, Some("v@example.com"), source).await;
        }
        assert!(LIMITS.account_refused(&l, "v@example.com", "10.0.0.9").await.is_some(), "ceiling reached");
    }

    #[tokio::test]
    async fn a_source_is_limited_across_accounts() {
        let l = LocalLimiter::default();
        for i in 0..4 {
            LIMITS.record_failure(&l, Some(&format!("u{i}@example.com")), "10.0.0.1").await;
        }
        LIMITS.record_failure(&l, None, "10.0.0.1").await;
        assert!(LIMITS.source_refused(&l, "10.0.0.1").await.is_some());
        assert_eq!(LIMITS.source_refused(&l, "10.0.0.2").await, None);
    }
}
