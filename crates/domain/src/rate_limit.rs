//! A keyed sliding-window counter held in memory: at most `limit` events per `window` seconds per key.
//! Time is passed in. Shared (Redis) limits implement the same decision elsewhere.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use crate::UnixTime;

/// The limiter key of a source address: an IPv4 address (IPv4-mapped IPv6 too), or the /64 of an
/// IPv6 address (one host usually holds a whole /64, so counting single IPv6 addresses would count
/// nothing).
pub fn source_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

pub struct SlidingWindow {
    limit: usize,
    window_ms: i64,
    events: HashMap<String, VecDeque<i64>>,
}

impl SlidingWindow {
    pub fn new(limit: u32, window_secs: u32) -> Self {
        Self { limit: limit as usize, window_ms: i64::from(window_secs) * 1000, events: HashMap::new() }
    }

    fn prune(&mut self, key: &str, now_ms: i64) -> usize {
        let window = self.window_ms;
        match self.events.get_mut(key) {
            Some(q) => {
                while q.front().is_some_and(|t| now_ms - *t >= window) {
                    q.pop_front();
                }
                let n = q.len();
                if n == 0 {
                    self.events.remove(key);
                }
                n
            }
            None => 0,
        }
    }

    /// Seconds until another event would be allowed, or `None` if one is allowed now.
    pub fn retry_after(&mut self, key: &str, now_ms: i64) -> Option<UnixTime> {
        if self.prune(key, now_ms) < self.limit {
            return None;
        }
        let oldest = self.events.get(key).and_then(|q| q.front().copied()).unwrap_or(now_ms);
        Some(((oldest + self.window_ms - now_ms) as f64 / 1000.0).ceil().max(1.0) as UnixTime)
    }

    /// Records an event.
    pub fn record(&mut self, key: &str, now_ms: i64) {
        self.prune(key, now_ms);
        self.events.entry(key.to_owned()).or_default().push_back(now_ms);
        // Bound memory: forget idle keys now and then.
        if self.events.len() > 100_000 {
            let window = self.window_ms;
            self.events.retain(|_, q| q.back().is_some_and(|t| now_ms - *t < window));
        }
    }

    /// Records an event if allowed; otherwise returns the seconds to wait.
    pub fn try_acquire(&mut self, key: &str, now_ms: i64) -> Result<(), UnixTime> {
        match self.retry_after(key, now_ms) {
            Some(wait) => Err(wait),
            None => {
                self.record(key, now_ms);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_addresses_and_ipv6_networks() {
        assert_eq!(source_key("203.0.113.7".parse().unwrap()), "203.0.113.7");
        assert_eq!(source_key("::ffff:203.0.113.7".parse().unwrap()), "203.0.113.7");
        let a = source_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(a, source_key("2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap()), "one /64 is one source");
        assert_ne!(a, source_key("2001:db8:1:3::1".parse().unwrap()));
    }

    #[test]
    fn limits_per_key_within_window() {
        let mut w = SlidingWindow::new(5, 60);
        for i in 0..5 {
            assert!(w.try_acquire("ip", i).is_ok());
        }
        assert_eq!(w.try_acquire("ip", 10), Err(60));
        assert!(w.try_acquire("other", 10).is_ok());
        assert!(w.try_acquire("ip", 60_000).is_ok());
    }
}
