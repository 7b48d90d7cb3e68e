//! The daemon's shared check grid: periodic checks (resource conditions,
//! health probes) fall due on multiples of their interval counted from one
//! epoch, so checks with the same interval are made together, in one
//! wakeup, however their watches' starts are spread.
use std::time::{Duration, Instant};

/// The first instant after `now` on the grid of `every`.
pub fn next_tick(now: Instant, every: Duration) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let every_ns = every.as_nanos().max(1);
    let since = now.saturating_duration_since(epoch).as_nanos();
    let ticks = since / every_ns + 1;
    epoch + Duration::from_nanos(u64::try_from(ticks * every_ns).unwrap_or(u64::MAX))
}
