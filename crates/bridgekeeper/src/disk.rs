//! Free space where the embedded database lives: sampled every minute, exported on `/metrics`, and
//! warned about in the log while it is low (a full disk stops every write, audit included).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Below this many free bytes, or this share of the file system, the log warns.
const LOW_BYTES: u64 = 1024 * 1024 * 1024;
const LOW_SHARE: f64 = 0.05;
/// While space stays low, the warning repeats this often.
const REPEAT: Duration = Duration::from_secs(600);

#[derive(Default)]
pub struct FreeSpace {
    /// Free bytes available to us at the last sample (`u64::MAX` before the first).
    free: AtomicU64,
    total: AtomicU64,
}

impl FreeSpace {
    pub fn free_bytes(&self) -> Option<u64> {
        Some(self.free.load(Ordering::Relaxed)).filter(|&b| b != u64::MAX)
    }

    pub fn total_bytes(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// Samples the file system holding `dir` now and every minute after.
pub fn watch(dir: PathBuf) -> Arc<FreeSpace> {
    let space = Arc::new(FreeSpace { free: AtomicU64::new(u64::MAX), total: AtomicU64::new(0) });
    let watched = space.clone();
    tokio::spawn(async move {
        let mut last_warning: Option<tokio::time::Instant> = None;
        loop {
            match rustix::fs::statvfs(&dir) {
                Ok(s) => {
                    let (free, total) = (s.f_bavail.saturating_mul(s.f_frsize), s.f_blocks.saturating_mul(s.f_frsize));
                    watched.free.store(free, Ordering::Relaxed);
                    watched.total.store(total, Ordering::Relaxed);
                    if is_low(free, total) {
                        if last_warning.is_none_or(|t| t.elapsed() >= REPEAT) {
                            tracing::warn!(
                                free_bytes = free,
                                total_bytes = total,
                                data_dir = %dir.display(),
                                "free space in the data directory is low: writes (and the audit log) stop when it runs out"
                            );
                            last_warning = Some(tokio::time::Instant::now());
                        }
                    } else if last_warning.take().is_some() {
                        tracing::info!(
                            free_bytes = free,
                            "free space in the data directory is back above the warning level"
                        );
                    }
                }
                Err(e) => tracing::debug!(error = %e, "could not read the data directory's free space"),
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    });
    space
}

fn is_low(free: u64, total: u64) -> bool {
    free < LOW_BYTES || (total > 0 && (free as f64) < LOW_SHARE * total as f64)
}

#[cfg(test)]
mod tests {
    use super::is_low;

    #[test]
    fn low_is_under_a_gibibyte_or_five_percent() {
        let gib = 1024 * 1024 * 1024;
        assert!(is_low(gib - 1, 1000 * gib));
        assert!(!is_low(60 * gib, 1000 * gib));
        assert!(is_low(40 * gib, 1000 * gib), "4% of a large disk is low");
        assert!(!is_low(2 * gib, 10 * gib));
    }
}
