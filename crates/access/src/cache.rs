//! A small bounded map whose entries are trusted for a fixed time: how long another instance's
//! change (a revocation, a rotated secret) may go unseen here.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

pub struct TtlCache<K, V> {
    ttl_ms: i64,
    max: usize,
    map: Mutex<HashMap<K, (i64, V)>>,
    hits: metrics::Counter,
    misses: metrics::Counter,
}

impl<K: Hash + Eq + Clone, V: Clone> TtlCache<K, V> {
    /// A cache counted in `/metrics` as `bridgekeeper_cache_requests_total{cache=name}`.
    pub fn new(name: &'static str, ttl_ms: i64, max: usize) -> Self {
        let counter = |result: &'static str| metrics::counter!("bridgekeeper_cache_requests_total", "cache" => name, "result" => result);
        Self { ttl_ms, max, map: Mutex::default(), hits: counter("hit"), misses: counter("miss") }
    }

    pub fn get(&self, k: &K, now_ms: i64) -> Option<V> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let v = map.get(k).filter(|(at, _)| now_ms - at < self.ttl_ms).map(|(_, v)| v.clone());
        if v.is_some() { &self.hits } else { &self.misses }.increment(1);
        v
    }

    pub fn put(&self, k: K, v: V, now_ms: i64) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max {
            let ttl = self.ttl_ms;
            map.retain(|_, (at, _)| now_ms - *at < ttl);
            if map.len() >= self.max {
                map.clear();
            }
        }
        map.insert(k, (now_ms, v));
    }

    pub fn remove(&self, k: &K) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(k);
    }

    pub fn clear(&self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}
