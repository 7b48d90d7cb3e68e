//! Fixed-bucket histograms of the durations the daemon measures of
//! itself (how long the kernel's report of a death took to reach it, how
//! long a restart took), as Prometheus histograms want them: cumulative
//! counts per upper bound, a sum and a count. Fixed bounds keep them a few
//! hundred bytes, copied into each snapshot the loop publishes.
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Upper bounds, in seconds: 10 µs to 10 s, about three per decade (the
/// eBPF backend reports in tens of µs, a restart takes a millisecond or,
/// in backoff, seconds).
pub const BOUNDS: [f64; 19] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// How many observations were at most each of `BOUNDS` (not
    /// cumulative: the exposition adds them up).
    pub counts: Vec<u64>,
    /// Observations above the last bound.
    pub over: u64,
    /// Sum of all observations, in seconds.
    pub sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, value: Duration) {
        let seconds = value.as_secs_f64();
        if self.counts.len() != BOUNDS.len() {
            self.counts.resize(BOUNDS.len(), 0);
        }
        match BOUNDS.iter().position(|&b| seconds <= b) {
            Some(i) => self.counts[i] += 1,
            None => self.over += 1,
        }
        self.sum += seconds;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.over
    }

    /// `(upper bound, observations at most that)`, the last one `+Inf`.
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let mut total = 0;
        BOUNDS
            .iter()
            .enumerate()
            .map(move |(i, &bound)| {
                total += self.counts.get(i).copied().unwrap_or(0);
                (bound, total)
            })
            .chain(std::iter::once((f64::INFINITY, self.count())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_cumulative_up_to_inf() {
        let mut h = Histogram::default();
        for micros in [5, 30, 30, 2_000, 60_000_000] {
            h.observe(Duration::from_micros(micros));
        }
        let buckets: Vec<(f64, u64)> = h.cumulative().collect();
        assert_eq!(buckets.len(), BOUNDS.len() + 1);
        assert_eq!(buckets[0], (0.000_01, 1));
        assert_eq!(buckets[2], (0.000_05, 3));
        assert_eq!(buckets[7], (0.002_5, 4));
        assert_eq!(buckets[BOUNDS.len() - 1], (10.0, 4));
        assert_eq!(buckets[BOUNDS.len()], (f64::INFINITY, 5));
        assert_eq!(h.count(), 5);
        assert!((h.sum - 60.002_065).abs() < 1e-9, "{}", h.sum);
    }
}
