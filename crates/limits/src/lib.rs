//! Rate limits shared by every instance (Redis) or kept in this process (the default); and the
//! message bus between instances (`bus`, Redis publish/subscribe).
//! A limit is `limit` events per `window_secs` per key within a bucket (`registrations` per IP,
//! `sign_in_failures` per account name, `client_auth_failures` per client, …).
#![forbid(unsafe_code)]

pub mod bus;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bk_domain::rate_limit::SlidingWindow;

#[async_trait]
pub trait Limiter: Send + Sync {
    /// Counts an event if the key is under its limit; otherwise the seconds to wait.
    async fn acquire(&self, bucket: &str, key: &str, limit: u32, window_secs: u32) -> Result<(), u64>;
    /// The seconds to wait before an event would be allowed, without counting one.
    async fn retry_after(&self, bucket: &str, key: &str, limit: u32, window_secs: u32) -> Option<u64>;
    /// Counts an event whatever the limit (failures are recorded after they happen).
    async fn record(&self, bucket: &str, key: &str, limit: u32, window_secs: u32);
    /// Is the shared store reachable? (readiness; always true in memory)
    async fn healthy(&self) -> bool;
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Limits kept in this process.
#[derive(Default)]
pub struct LocalLimiter {
    buckets: Mutex<HashMap<(String, u32, u32), SlidingWindow>>,
}

impl LocalLimiter {
    fn with<T>(&self, bucket: &str, limit: u32, window: u32, f: impl FnOnce(&mut SlidingWindow) -> T) -> T {
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let w = map.entry((bucket.to_owned(), limit, window)).or_insert_with(|| SlidingWindow::new(limit, window));
        f(w)
    }
}

#[async_trait]
impl Limiter for LocalLimiter {
    async fn acquire(&self, bucket: &str, key: &str, limit: u32, window_secs: u32) -> Result<(), u64> {
        self.with(bucket, limit, window_secs, |w| w.try_acquire(key, now_ms())).map_err(|s| s.max(1) as u64)
    }
    async fn retry_after(&self, bucket: &str, key: &str, limit: u32, window_secs: u32) -> Option<u64> {
        self.with(bucket, limit, window_secs, |w| w.retry_after(key, now_ms())).map(|s| s.max(1) as u64)
    }
    async fn record(&self, bucket: &str, key: &str, limit: u32, window_secs: u32) {
        self.with(bucket, limit, window_secs, |w| w.record(key, now_ms()));
    }
    async fn healthy(&self) -> bool {
        true
    }
}

/// What to do when Redis cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureMode {
    /// Allow the request (availability first).
    Open,
    /// Refuse it (protection first).
    Closed,
}

/// A sliding-window log per key in a Redis sorted set, checked and updated atomically by one Lua
/// script using Redis's own clock, so every instance counts the same events.
pub struct RedisLimiter {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<redis::aio::ConnectionManager>>,
    last_attempt_ms: std::sync::atomic::AtomicI64,
    script: redis::Script,
    failure: FailureMode,
    prefix: String,
}

const SCRIPT: &str = r#"
local key, window, limit, mode, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, 0, now - window)
if mode == 'record' then
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, window)
  return -1
end
local n = redis.call('ZCARD', key)
if n >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return math.max(1, math.ceil((tonumber(oldest[2]) + window - now) / 1000))
end
if mode == 'acquire' then
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, window)
end
return -1
"#;

impl RedisLimiter {
    /// A limiter on `url`; keys are `{prefix}:rl:{bucket}:{key}`. It connects lazily and reconnects
    /// on its own: while Redis is unreachable every check fails in `failure` mode.
    pub fn new(url: &str, failure: FailureMode, prefix: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("invalid redis.url: {e}"))?;
        Ok(Self {
            client,
            conn: tokio::sync::Mutex::new(None),
            last_attempt_ms: std::sync::atomic::AtomicI64::new(i64::MIN / 2),
            script: redis::Script::new(SCRIPT),
            failure,
            prefix: format!("{prefix}:rl"),
        })
    }

    /// The connection, connecting if needed (at most one attempt every 2 s).
    async fn connection(&self) -> Option<redis::aio::ConnectionManager> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Some(c.clone());
        }
        let now = now_ms();
        if now - self.last_attempt_ms.load(std::sync::atomic::Ordering::Relaxed) < 2000 {
            return None;
        }
        self.last_attempt_ms.store(now, std::sync::atomic::Ordering::Relaxed);
        match tokio::time::timeout(Duration::from_secs(2), redis::aio::ConnectionManager::new(self.client.clone()))
            .await
        {
            Ok(Ok(c)) => {
                tracing::info!("connected to Redis for rate limits");
                *guard = Some(c.clone());
                Some(c)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot connect to Redis for rate limits");
                None
            }
            Err(_) => {
                tracing::warn!("Redis did not answer within 2 s");
                None
            }
        }
    }

    fn failed(&self, why: &str, bucket: &str) -> Option<u64> {
        tracing::warn!(reason = why, bucket, mode = ?self.failure, "Redis rate limiter unavailable: failing {}", match self.failure {
            FailureMode::Open => "open (allowing)",
            FailureMode::Closed => "closed (refusing)",
        });
        match self.failure {
            FailureMode::Open => None,
            FailureMode::Closed => Some(1),
        }
    }

    async fn run(&self, mode: &str, bucket: &str, key: &str, limit: u32, window_secs: u32) -> Option<u64> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let member =
            format!("{}-{}-{}", now_ms(), std::process::id(), SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let Some(mut conn) = self.connection().await else {
            return self.failed("not connected", bucket);
        };
        let res: Result<i64, _> = self
            .script
            .key(format!("{}:{bucket}:{key}", self.prefix))
            .arg(i64::from(window_secs) * 1000)
            .arg(limit)
            .arg(mode)
            .arg(member)
            .invoke_async(&mut conn)
            .await;
        match res {
            Ok(n) if n >= 0 => Some(n as u64),
            Ok(_) => None,
            Err(e) => self.failed(&e.to_string(), bucket),
        }
    }
}

#[async_trait]
impl Limiter for RedisLimiter {
    async fn acquire(&self, bucket: &str, key: &str, limit: u32, window_secs: u32) -> Result<(), u64> {
        match self.run("acquire", bucket, key, limit, window_secs).await {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }
    async fn retry_after(&self, bucket: &str, key: &str, limit: u32, window_secs: u32) -> Option<u64> {
        self.run("check", bucket, key, limit, window_secs).await
    }
    async fn record(&self, bucket: &str, key: &str, limit: u32, window_secs: u32) {
        self.run("record", bucket, key, limit, window_secs).await;
    }
    async fn healthy(&self) -> bool {
        match self.connection().await {
            Some(mut conn) => redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok(),
            None => false,
        }
    }
}

/// A limiter that counts its refusals for `/metrics` (`bridgekeeper_rate_limit_refusals_total`,
/// by bucket; a bucket is named by the code or by the operator's tool rules, never by a caller).
pub struct Counted(pub std::sync::Arc<dyn Limiter>);

fn refused(bucket: &str) {
    // `tool_calls:<which>:<rule>` names an operator's rule; keep only its kind as the label.
    let label = match bucket.split_once(':') {
        Some((kind, rest)) => format!("{kind}:{}", rest.split(':').next().unwrap_or_default()),
        None => bucket.to_owned(),
    };
    metrics::counter!("bridgekeeper_rate_limit_refusals_total", "bucket" => label).increment(1);
}

#[async_trait]
impl Limiter for Counted {
    async fn acquire(&self, bucket: &str, key: &str, limit: u32, window_secs: u32) -> Result<(), u64> {
        let r = self.0.acquire(bucket, key, limit, window_secs).await;
        if r.is_err() {
            refused(bucket);
        }
        r
    }
    async fn retry_after(&self, bucket: &str, key: &str, limit: u32, window_secs: u32) -> Option<u64> {
        let r = self.0.retry_after(bucket, key, limit, window_secs).await;
        if r.is_some() {
            refused(bucket);
        }
        r
    }
    async fn record(&self, bucket: &str, key: &str, limit: u32, window_secs: u32) {
        self.0.record(bucket, key, limit, window_secs).await
    }
    async fn healthy(&self) -> bool {
        self.0.healthy().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_limiter_allows_the_limit_then_refuses_with_a_wait() {
        let l = LocalLimiter::default();
        for i in 0..3 {
            assert_eq!(l.acquire("registrations", "10.0.0.1", 3, 60).await, Ok(()), "event {i}");
        }
        let wait = l.acquire("registrations", "10.0.0.1", 3, 60).await.expect_err("the fourth is over the limit");
        assert!((1..=60).contains(&wait), "wait {wait} within the window");
        let again = l.retry_after("registrations", "10.0.0.1", 3, 60).await.expect("still limited");
        assert!((1..=60).contains(&again), "retry_after {again}");
    }

    #[tokio::test]
    async fn local_limiter_separates_keys_and_buckets() {
        let l = LocalLimiter::default();
        assert_eq!(l.acquire("registrations", "a", 1, 60).await, Ok(()));
        assert!(l.acquire("registrations", "a", 1, 60).await.is_err());
        assert_eq!(l.acquire("registrations", "b", 1, 60).await, Ok(()), "another key");
        assert_eq!(l.acquire("sign_in_failures", "a", 1, 60).await, Ok(()), "another bucket");
    }

    #[tokio::test]
    async fn retry_after_does_not_count_and_record_always_does() {
        let l = LocalLimiter::default();
        for _ in 0..5 {
            assert_eq!(l.retry_after("sign_in_failures", "x@y.z", 2, 60).await, None);
        }
        // Failures are recorded after they happen, even past the limit.
        for _ in 0..3 {
            l.record("sign_in_failures", "x@y.z", 2, 60).await;
        }
        assert!(l.retry_after("sign_in_failures", "x@y.z", 2, 60).await.is_some());
        assert!(l.acquire("sign_in_failures", "x@y.z", 2, 60).await.is_err());
    }

    #[tokio::test]
    async fn local_limiter_window_slides() {
        let l = LocalLimiter::default();
        assert_eq!(l.acquire("b", "k", 1, 1).await, Ok(()));
        assert_eq!(l.acquire("b", "k", 1, 1).await, Err(1), "a wait is at least one second");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(l.acquire("b", "k", 1, 1).await, Ok(()), "the event left the window");
    }
}
