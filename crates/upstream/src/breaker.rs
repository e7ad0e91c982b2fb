//! A circuit breaker per upstream origin (`scheme://host:port`) and tenant: after `failures`
//! failures in a row that say the service itself is failing (the transport failed, the server timed out or
//! answered 5xx — never a refused credential, a step-up or a JSON-RPC error, which a working server
//! gives), the origin is left alone for `cooldown`: calls fail at once saying when to retry and
//! listings leave its tools out, so a dead server costs its tenants no time-outs and gets no load.
//! After the cooldown one request is let through (half-open): its success closes the circuit, its
//! failure opens it again for another cooldown.
//!
//! Kept per tenant, so that no tenant can open the circuit for the others (a tenant's own slow calls
//! or refused credential are its own business) nor hold another's probe; each tenant pays at most
//! `failures` failed requests to learn that a server is down. Kept in this process: each instance
//! learns about a failing server from its own requests. A probe whose request is dropped before it
//! ends (the caller went away) lets the next request probe.

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

    /// May a request go to `origin` now? A permit (a probe when the circuit is half-open), or
    /// `Err(seconds until it may)` while the circuit is open.
    pub(crate) fn admit<'a>(&'a self, origin: &str) -> Result<Permit<'a>, u64> {
        let probe = self.admit_at(origin, Instant::now())?;
        Ok(Permit { breakers: self, origin: origin.to_owned(), probe, done: false })
    }

    /// `Ok(true)` for the half-open probe.
    fn admit_at(&self, origin: &str, now: Instant) -> Result<bool, u64> {
        let mut origins = self.origins.lock().unwrap();
        let Some(s) = origins.get_mut(origin) else { return Ok(false) };
        match s.open_until {
            None => Ok(false),
            Some(until) if now < until => Err(until.duration_since(now).as_secs().max(1)),
            // Half-open: one probe at a time.
            Some(_) if s.probing => Err(1),
            Some(_) => {
                s.probing = true;
                Ok(true)
            }
        }
    }

    /// A probe that ended without an outcome: the next request may probe.
    fn abandon(&self, origin: &str) {
        if let Some(s) = self.origins.lock().unwrap().get_mut(origin) {
            s.probing = false;
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
}

/// A request the breaker let through; a probe dropped before its outcome is recorded frees the
/// half-open slot.
pub(crate) struct Permit<'a> {
    breakers: &'a Breakers,
    origin: String,
    probe: bool,
    done: bool,
}

impl Permit<'_> {
    /// Records how the request ended (the first outcome counts; later ones of a retry too).
    pub(crate) fn ended(&mut self, ending: Ending) -> bool {
        self.done = true;
        self.breakers.record(&self.origin, ending)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe && !self.done {
            self.breakers.abandon(&self.origin);
        }
    }
}

/// The breaker's key of a URL for a tenant: its origin and the account.
pub(crate) fn origin_of(url: &url::Url, account: &str) -> String {
    format!("{} {account}", url.origin().ascii_serialization())
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
            assert_eq!(b.admit_at(o, t0), Ok(false));
            assert!(!b.record_at(o, Ending::Failed, t0));
        }
        // An answer in between resets the count.
        assert!(!b.record_at(o, Ending::Answered, t0));
        for _ in 0..2 {
            assert!(!b.record_at(o, Ending::Failed, t0));
        }
        assert!(b.record_at(o, Ending::Failed, t0), "the third failure in a row opens the circuit");
        assert_eq!(b.admit_at(o, t0 + Duration::from_secs(10)), Err(20));
        assert_eq!(b.admit_at("https://other.example", t0), Ok(false), "other origins are not affected");
        // Half-open: one probe; a second caller waits.
        let later = t0 + Duration::from_secs(31);
        assert_eq!(b.admit_at(o, later), Ok(true));
        assert_eq!(b.admit_at(o, later), Err(1));
        // The probe fails: open again for a whole cooldown (not counted as newly opened).
        assert!(!b.record_at(o, Ending::Failed, later));
        assert_eq!(b.admit_at(o, later + Duration::from_secs(1)), Err(29));
        // The next probe succeeds: closed.
        let much_later = later + Duration::from_secs(31);
        assert_eq!(b.admit_at(o, much_later), Ok(true));
        b.record_at(o, Ending::Answered, much_later);
        assert_eq!(b.admit_at(o, much_later), Ok(false));
        assert_eq!(b.admit_at(o, much_later), Ok(false));
    }

    #[test]
    fn a_probe_dropped_before_its_outcome_lets_the_next_request_probe() {
        let b = Breakers::new(BreakerSettings { failures: 1, cooldown: Duration::from_millis(1) });
        let o = "https://mcp.example acct-1";
        b.admit(o).unwrap().ended(Ending::Failed);
        std::thread::sleep(Duration::from_millis(5));
        let probe = b.admit(o).unwrap();
        assert!(probe.probe);
        assert_eq!(b.admit(o).err(), Some(1), "one probe at a time");
        drop(probe); // the caller went away mid-request
        assert!(b.admit(o).unwrap().probe, "the next request probes instead of waiting forever");
    }

    #[test]
    fn zero_failures_never_opens() {
        let b = Breakers::new(BreakerSettings { failures: 0, cooldown: Duration::from_secs(30) });
        for _ in 0..100 {
            b.record("https://x.example", Ending::Failed);
        }
        assert!(b.admit("https://x.example").is_ok());
    }
}
