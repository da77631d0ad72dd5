//! The GPU gauges of a node that has GPUs, as Ray's node metrics name them:
//! `ray_node_gpus_utilization` (percent), `ray_node_gram_used` and `ray_node_gram_available`
//! (MB), labelled `GpuIndex` and `GpuDeviceName`, from `nvidia-smi --query-gpu`.
//!
//! `nvidia-smi` runs in the background, at most once a second and bounded by a timeout; a
//! scrape exports the latest reading and never waits for the command.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::exposition::{Family, Kind};

/// How old a reading may be before a scrape asks for a new one.
const REFRESH: Duration = Duration::from_secs(1);
/// How long `nvidia-smi` may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// One GPU's figures.
#[derive(Debug, Clone, PartialEq)]
struct Reading {
    index: String,
    name: String,
    utilization_percent: f64,
    used_mb: f64,
    total_mb: f64,
}

/// The lines of `nvidia-smi --query-gpu=index,name,utilization.gpu,memory.used,memory.total
/// --format=csv,noheader,nounits`, such as `0, NVIDIA A100-SXM4-40GB, 35, 1024, 40960`. A line
/// that does not read (`[N/A]` figures) is skipped.
fn parse(csv: &str) -> Vec<Reading> {
    csv.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [index, name, utilization, used, total] = fields[..] else {
                return None;
            };
            Some(Reading {
                index: index.parse::<u32>().ok()?.to_string(),
                name: name.to_owned(),
                utilization_percent: utilization.parse().ok()?,
                used_mb: used.parse().ok()?,
                total_mb: total.parse().ok()?,
            })
        })
        .collect()
}

/// When the GPUs were read, and what they said.
type Latest = Option<(Instant, Vec<Reading>)>;

/// The latest GPU reading, refreshed in the background.
#[derive(Debug, Default)]
pub(crate) struct GpuSampler {
    latest: Arc<Mutex<Latest>>,
    refreshing: Arc<AtomicBool>,
}

impl GpuSampler {
    /// The GPU gauges of the latest reading (none before the first), asking for a new reading
    /// when it is older than a second.
    pub(crate) fn families(&self) -> Vec<Family> {
        let latest = self
            .latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if latest
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= REFRESH)
        {
            self.refresh();
        }
        let Some((_, readings)) = latest else {
            return Vec::new();
        };
        let mut utilization = Family::new(
            "ray_node_gpus_utilization",
            Kind::Gauge,
            "Utilization of each GPU of the node, in percent",
        );
        let mut used = Family::new(
            "ray_node_gram_used",
            Kind::Gauge,
            "GPU memory used on each GPU of the node, in MB",
        );
        let mut available = Family::new(
            "ray_node_gram_available",
            Kind::Gauge,
            "GPU memory available on each GPU of the node (total minus used), in MB",
        );
        for r in &readings {
            let labels = || {
                vec![
                    ("GpuIndex", r.index.clone()),
                    ("GpuDeviceName", r.name.clone()),
                ]
            };
            utilization.number(labels(), r.utilization_percent);
            used.number(labels(), r.used_mb);
            available.number(labels(), (r.total_mb - r.used_mb).max(0.0));
        }
        vec![utilization, used, available]
    }

    /// Runs `nvidia-smi` on a task of the current runtime, unless a run is under way.
    fn refresh(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let latest = self.latest.clone();
        let refreshing = self.refreshing.clone();
        runtime.spawn(async move {
            let run = tokio::process::Command::new("nvidia-smi")
                .args([
                    "--query-gpu=index,name,utilization.gpu,memory.used,memory.total",
                    "--format=csv,noheader,nounits",
                ])
                .kill_on_drop(true)
                .output();
            let readings = match tokio::time::timeout(TIMEOUT, run).await {
                Ok(Ok(out)) if out.status.success() => parse(&String::from_utf8_lossy(&out.stdout)),
                _ => Vec::new(),
            };
            *latest.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), readings));
            refreshing.store(false, Ordering::Release);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nvidia_smi_csv() {
        let csv = "0, NVIDIA A100-SXM4-40GB, 35, 1024, 40960\n1, NVIDIA A100-SXM4-40GB, [N/A], 0, 40960\n";
        assert_eq!(
            parse(csv),
            [Reading {
                index: "0".to_owned(),
                name: "NVIDIA A100-SXM4-40GB".to_owned(),
                utilization_percent: 35.0,
                used_mb: 1024.0,
                total_mb: 40960.0,
            }]
        );
        assert!(parse("").is_empty());
        assert!(parse("garbage").is_empty());
    }

    #[test]
    fn exports_the_latest_reading_with_rays_labels() {
        let sampler = GpuSampler::default();
        // No reading yet, and no runtime to take one: nothing, and no panic.
        assert!(sampler.families().is_empty());
        *sampler.latest.lock().unwrap() =
            Some((Instant::now(), parse("0, Tesla T4, 50, 100, 300")));
        let families = sampler.families();
        let names: Vec<_> = families.iter().map(|f| f.name).collect();
        assert_eq!(
            names,
            [
                "ray_node_gpus_utilization",
                "ray_node_gram_used",
                "ray_node_gram_available"
            ]
        );
        let text =
            super::super::exposition::encode(&families, super::super::exposition::Format::Classic);
        assert!(
            text.contains(
                "ray_node_gram_available{GpuIndex=\"0\",GpuDeviceName=\"Tesla T4\"} 200\n"
            )
        );
    }
}
