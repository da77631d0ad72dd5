//! The dashboard's time series: one point a second, the last ten minutes, of each deployment's
//! traffic and the process's and node's use.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use rayai_core::LATENCY_BUCKETS_MS;

use super::metrics::Window;
use super::status::ProcessUsage;

/// Points kept: ten minutes at one a second.
pub(crate) const POINTS: usize = 600;

/// A deployment's traffic over one second.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub(crate) struct Traffic {
    pub(crate) rps: f64,
    pub(crate) error_rate: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

/// One second of everything.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Point {
    pub(crate) t_ms: u64,
    pub(crate) cpu_percent: f64,
    pub(crate) rss_bytes: u64,
    pub(crate) reserved_cpus: f64,
    pub(crate) reserved_gpus: f64,
    pub(crate) reserved_memory_bytes: u64,
    pub(crate) deployments: BTreeMap<String, Traffic>,
}

/// The last [`POINTS`] points, and the counts the next one is measured from.
#[derive(Default)]
pub(crate) struct Series {
    points: VecDeque<Point>,
    last: HashMap<Arc<str>, (u64, u64, Vec<u64>)>,
}

impl Series {
    /// Adds the point of the second that ended now, from the windows' counts.
    pub(crate) fn push(
        &mut self,
        elapsed_s: f64,
        windows: &[(Arc<str>, Arc<Window>)],
        process: ProcessUsage,
        reserved: (f64, f64, u64),
    ) {
        let mut deployments = BTreeMap::new();
        for (name, window) in windows {
            let now = window.snapshot();
            let before = self
                .last
                .insert(name.clone(), now.clone())
                .unwrap_or_else(|| (0, 0, vec![0; now.2.len()]));
            let requests = now.0.saturating_sub(before.0);
            let errors = now.1.saturating_sub(before.1);
            let buckets: Vec<u64> = now
                .2
                .iter()
                .zip(&before.2)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect();
            deployments.insert(
                name.to_string(),
                Traffic {
                    rps: requests as f64 / elapsed_s.max(1e-3),
                    error_rate: if requests == 0 {
                        0.0
                    } else {
                        errors as f64 / requests as f64
                    },
                    p50_ms: quantile(&buckets, 0.5),
                    p99_ms: quantile(&buckets, 0.99),
                },
            );
        }
        let t_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if self.points.len() == POINTS {
            self.points.pop_front();
        }
        self.points.push_back(Point {
            t_ms,
            cpu_percent: process.cpu_percent,
            rss_bytes: process.rss_bytes,
            reserved_cpus: reserved.0,
            reserved_gpus: reserved.1,
            reserved_memory_bytes: reserved.2,
            deployments,
        });
    }

    /// The points, oldest first.
    pub(crate) fn points(&self) -> impl Iterator<Item = &Point> {
        self.points.iter()
    }
}

/// The `q` quantile of counts in [`LATENCY_BUCKETS_MS`] buckets, interpolated inside its bucket;
/// 0 when there are none.
pub(crate) fn quantile(buckets: &[u64], q: f64) -> f64 {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    for (i, &n) in buckets.iter().enumerate() {
        if n > 0 && (seen + n) as f64 >= rank {
            let lower = if i == 0 {
                0.0
            } else {
                LATENCY_BUCKETS_MS[i - 1]
            };
            let Some(&upper) = LATENCY_BUCKETS_MS.get(i) else {
                return lower;
            };
            let within = ((rank - seen as f64) / n as f64).clamp(0.0, 1.0);
            return lower + (upper - lower) * within;
        }
        seen += n;
    }
    0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_bucket_counts() {
        let mut b = vec![0u64; LATENCY_BUCKETS_MS.len() + 1];
        assert_eq!(quantile(&b, 0.5), 0.0);
        b[3] = 99; // (5, 10] ms
        b[12] = 1; // (1000, 2000] ms
        let p50 = quantile(&b, 0.5);
        assert!((5.0..=10.0).contains(&p50), "{p50}");
        let p99 = quantile(&b, 0.99);
        assert!((5.0..=10.0).contains(&p99), "{p99}");
        assert!(quantile(&b, 1.0) > 1000.0);
    }

    #[test]
    fn keeps_ten_minutes_of_points_with_rates() {
        let w = Arc::new(Window::default());
        let windows = vec![(Arc::<str>::from("echo"), w.clone())];
        let mut s = Series::default();
        for i in 0..POINTS + 5 {
            for n in 0..10 {
                w.record(i % 2 == 0 && n < 5, 1.0);
            }
            s.push(1.0, &windows, ProcessUsage::default(), (0.0, 0.0, 0));
        }
        assert_eq!(s.points().count(), POINTS);
        let last = s.points().last().unwrap();
        assert_eq!(last.deployments["echo"].rps, 10.0);
    }
}
