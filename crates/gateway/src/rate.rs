//! Per-account MCP rate limit (GCRA, in memory).

use std::num::NonZeroU32;

use bk_domain::ids::AccountId;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

pub struct AccountLimiter {
    limiter: RateLimiter<AccountId, DefaultKeyedStateStore<AccountId>, DefaultClock>,
    clock: DefaultClock,
}

impl AccountLimiter {
    pub fn per_minute(n: u32) -> Self {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Self { limiter: RateLimiter::keyed(Quota::per_minute(n)), clock: DefaultClock::default() }
    }

    /// `Err(seconds to wait)` when the account is over its limit.
    pub fn check(&self, account: &AccountId) -> Result<(), u64> {
        match self.limiter.check_key(account) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                if self.limiter.len() > 100_000 {
                    self.limiter.retain_recent();
                }
                Err(not_until.wait_time_from(self.clock.now()).as_secs().max(1))
            }
        }
    }
}
