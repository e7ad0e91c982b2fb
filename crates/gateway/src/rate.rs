//! Per-account MCP rate limit (GCRA, in memory).

use std::num::NonZeroU32;

use bk_domain::ids::AccountId;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

pub struct AccountLimiter {
    limiter: RateLimiter<AccountId, DefaultKeyedStateStore<AccountId>, DefaultClock>,
    clock: DefaultClock,
    /// When set (Redis), the limit is shared by every instance instead.
    shared: Option<(std::sync::Arc<dyn bk_limits::Limiter>, u32)>,
}

impl AccountLimiter {
    pub fn per_minute(n: u32) -> Self {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Self { limiter: RateLimiter::keyed(Quota::per_minute(n)), clock: DefaultClock::default(), shared: None }
    }

    pub fn shared(n: u32, limiter: std::sync::Arc<dyn bk_limits::Limiter>) -> Self {
        let mut l = Self::per_minute(n);
        l.shared = Some((limiter, n));
        l
    }

    /// `Err(seconds to wait)` when the account is over its limit.
    pub async fn check(&self, account: &AccountId) -> Result<(), u64> {
        if let Some((shared, n)) = &self.shared {
            return shared.acquire("mcp_requests", account.as_str(), *n, 60).await;
        }
        match self.limiter.check_key(account) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                metrics::counter!("bridgekeeper_rate_limit_refusals_total", "bucket" => "mcp_requests").increment(1);
                if self.limiter.len() > 100_000 {
                    self.limiter.retain_recent();
                }
                Err(not_until.wait_time_from(self.clock.now()).as_secs().max(1))
            }
        }
    }
}
