//! A circuit breaker per upstream origin (`scheme://host:port`): after `failures` failures in a
//! row that say the service itself is failing (the transport failed, the server timed out or
//! answered 5xx — never a refused credential, a step-up or a JSON-RPC error, which a working server
//! gives), the origin is left alone for `cooldown`: calls fail at once saying when to retry and
//! listings leave its tools out, so a dead server costs its tenants no time-outs and gets no load.
//! After the cooldown one request is let through (half-open): its success closes the circuit, its
//! failure opens it again for another cooldown.
//!
//! Kept in this process: each instance learns about a failing server from its own requests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct BreakerSettings {
    /// Consecutive service failures that open the circuit (0: never opens).
    pub failures: u32,
    /// How long an open circuit refuses before it lets one request try.
    pub cooldown: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self { failures: 5, cooldown: Duration::from_secs(30) }
    }
}

#[derive(Default)]
struct State {
    consecutive: u32,
    open_until: Option<Instant>,
    /// A half-open probe is out (others are refused until it ends).
    probing: bool,
}

/// What became of a request the breaker let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The server answered (a result, a tool error, a JSON-RPC error, a refused credential).
    Answered,
    /// The service failed (transport, timeout, 5xx).
    Failed,
}

pub(crate) struct Breakers {
    settings: BreakerSettings,
    origins: Mutex<HashMap<String, State>>,
}

impl Breakers {
    pub(crate) fn new(settings: BreakerSettings) -> Self {
        Self { settings, origins: Mutex::default() }
    }

    /// May a request go to `origin` now? `Err(seconds until it may)` while the circuit is open.
    pub(crate) fn admit(&self, origin: &str) -> Result<(), u64> {
        self.admit_at(origin, Instant::now())
    }

    fn admit_at(&self, origin: &str, now: Instant) -> Result<(), u64> {
        let mut origins = self.origins.lock().unwrap();
        let Some(s) = origins.get_mut(origin) else { return Ok(()) };
        match s.open_until {
            None => Ok(()),
            Some(until) if now < until => Err(until.duration_since(now).as_secs().max(1)),
            // Half-open: one probe at a time.
            Some(_) if s.probing => Err(1),
            Some(_) => {
                s.probing = true;
                Ok(())
            }
        }
    }

    /// Records how a request that `admit` let through ended. Returns `true` when this opened
    /// the circuit.
    pub(crate) fn record(&self, origin: &str, ending: Ending) -> bool {
        self.record_at(origin, ending, Instant::now())
    }

    fn record_at(&self, origin: &str, ending: Ending, now: Instant) -> bool {
        if self.settings.failures == 0 {
            return false;
        }
        let mut origins = self.origins.lock().unwrap();
        match ending {
            Ending::Answered => {
                origins.remove(origin);
                false
            }
            Ending::Failed => {
                if origins.len() > 10_000 && !origins.contains_key(origin) {
                    origins.retain(|_, s| s.open_until.is_some());
                }
                let s = origins.entry(origin.to_owned()).or_default();
                s.consecutive = s.consecutive.saturating_add(1);
                if s.probing || s.consecutive >= self.settings.failures {
                    let reopened = s.open_until.is_some();
                    s.open_until = Some(now + self.settings.cooldown);
                    s.probing = false;
                    return !reopened;
                }
                false
            }
        }
    }

    /// Origins whose circuit is open now (for `/metrics`).
    pub(crate) fn open_count(&self) -> usize {
        let now = Instant::now();
        self.origins.lock().unwrap().values().filter(|s| s.open_until.is_some_and(|u| now < u)).count()
    }
}

/// The breaker's key of a URL: its origin.
pub(crate) fn origin_of(url: &url::Url) -> String {
    url.origin().ascii_serialization()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_lets_one_probe_through_after_the_cooldown() {
        let b = Breakers::new(BreakerSettings { failures: 3, cooldown: Duration::from_secs(30) });
        let t0 = Instant::now();
        let o = "https://mcp.example";
        for _ in 0..2 {
            assert_eq!(b.admit_at(o, t0), Ok(()));
            assert!(!b.record_at(o, Ending::Failed, t0));
        }
        // An answer in between resets the count.
        assert!(!b.record_at(o, Ending::Answered, t0));
        for _ in 0..2 {
            assert!(!b.record_at(o, Ending::Failed, t0));
        }
        assert!(b.record_at(o, Ending::Failed, t0), "the third failure in a row opens the circuit");
        assert_eq!(b.admit_at(o, t0 + Duration::from_secs(10)), Err(20));
        assert_eq!(b.admit_at("https://other.example", t0), Ok(()), "other origins are not affected");
        // Half-open: one probe; a second caller waits.
        let later = t0 + Duration::from_secs(31);
        assert_eq!(b.admit_at(o, later), Ok(()));
        assert_eq!(b.admit_at(o, later), Err(1));
        // The probe fails: open again for a whole cooldown (not counted as newly opened).
        assert!(!b.record_at(o, Ending::Failed, later));
        assert_eq!(b.admit_at(o, later + Duration::from_secs(1)), Err(29));
        // The next probe succeeds: closed.
        let much_later = later + Duration::from_secs(31);
        assert_eq!(b.admit_at(o, much_later), Ok(()));
        b.record_at(o, Ending::Answered, much_later);
        assert_eq!(b.admit_at(o, much_later), Ok(()));
        assert_eq!(b.admit_at(o, much_later), Ok(()));
    }

    #[test]
    fn zero_failures_never_opens() {
        let b = Breakers::new(BreakerSettings { failures: 0, cooldown: Duration::from_secs(30) });
        for _ in 0..100 {
            b.record("https://x.example", Ending::Failed);
        }
        assert_eq!(b.admit("https://x.example"), Ok(()));
    }
}
