//! Serialised tool lists, keyed by what the list depends on (listing versions and the visible set,
//! see `Tools::list_json`), so a caller never gets a list built for a different visible set.
//! Bounded: when full it starts over, since every entry is cheap to rebuild.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

pub const DEFAULT_CAPACITY: usize = 1024;

pub struct ListCache {
    entries: RwLock<HashMap<Box<[u64]>, Arc<str>>>,
    capacity: usize,
}

impl ListCache {
    pub fn new(capacity: usize) -> Self {
        Self { entries: RwLock::new(HashMap::new()), capacity: capacity.max(1) }
    }

    pub fn get(&self, key: &[u64]) -> Option<Arc<str>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner).get(key).cloned()
    }

    /// Stores `json` under `key` and returns what is cached there (the earlier entry if another
    /// request stored it first, so one key keeps one string).
    pub fn insert(&self, key: Box<[u64]>, json: Arc<str>) -> Arc<str> {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = entries.get(&key) {
            return existing.clone();
        }
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(key, json.clone());
        json
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_first_writer_wins() {
        let c = ListCache::new(2);
        let a = c.insert(Box::new([1, 0b01]), Arc::from("a"));
        assert!(Arc::ptr_eq(&c.insert(Box::new([1, 0b01]), Arc::from("a again")), &a));
        c.insert(Box::new([1, 0b10]), Arc::from("b"));
        assert_eq!(c.len(), 2);
        c.insert(Box::new([1, 0b11]), Arc::from("c"));
        assert_eq!(c.len(), 1, "a full cache starts over");
        assert_eq!(c.get(&[1, 0b11]).as_deref(), Some("c"));
        assert_eq!(c.get(&[1, 0b01]), None);
    }
}
