//! The status API (`GET /api/serve/applications`) and the process's own CPU and memory use.

use std::time::Instant;

use rayai_core::{Controller, DeploymentState, DeploymentStatus, RouteTable};
use serde_json::{Map, Value, json};

/// Every deployment `routes` serves, with its route prefix, as the controller sees it now.
pub(crate) fn deployments<T>(
    controller: &Controller,
    routes: &RouteTable<T>,
) -> Vec<(String, DeploymentStatus)> {
    let all = controller.status();
    let mut out: Vec<(String, DeploymentStatus)> = routes
        .iter()
        .filter_map(|r| {
            all.iter()
                .find(|d| d.name == r.app())
                .map(|d| (r.prefix().to_owned(), d.clone()))
        })
        .collect();
    out.sort_by(|a, b| a.1.name.cmp(&b.1.name));
    out
}

/// An application's status from its deployments': Ray Serve's names.
pub(crate) fn app_status<'a>(
    deployments: impl IntoIterator<Item = &'a DeploymentStatus>,
) -> &'static str {
    let mut status = "RUNNING";
    for d in deployments {
        match d.status {
            DeploymentState::Healthy => {}
            DeploymentState::Updating => {
                if status == "RUNNING" {
                    status = "DEPLOYING";
                }
            }
            DeploymentState::Unhealthy => {
                if status != "DEPLOY_FAILED" {
                    status = "UNHEALTHY";
                }
            }
            DeploymentState::DeployFailed => status = "DEPLOY_FAILED",
        }
    }
    status
}

/// The body of `GET /api/serve/applications`. Every agent is its own application, named after
/// its deployment, as RayAI deploys them.
pub(crate) fn applications(
    deployments: &[(String, DeploymentStatus)],
    controller: &Controller,
    process: ProcessUsage,
) -> Value {
    let mut apps = Map::new();
    for (prefix, d) in deployments {
        let mut by_name = Map::new();
        by_name.insert(
            d.name.clone(),
            serde_json::to_value(d).unwrap_or(Value::Null),
        );
        apps.insert(
            d.name.clone(),
            json!({
                "name": d.name,
                "route_prefix": prefix,
                "status": app_status([d]),
                "deployments": by_name,
            }),
        );
    }
    json!({
        "applications": apps,
        "node": node(controller),
        "process": { "cpu_percent": process.cpu_percent, "rss_bytes": process.rss_bytes },
    })
}

/// The node's resources and what the replicas hold of them.
pub(crate) fn node(controller: &Controller) -> Value {
    let node = controller.node();
    let (cpus, gpus, memory) = controller.reserved();
    json!({
        "num_cpus": node.num_cpus,
        "memory_bytes": node.memory_bytes,
        "num_gpus": node.num_gpus(),
        "reserved_cpus": cpus,
        "reserved_gpus": gpus,
        "reserved_memory_bytes": memory,
    })
}

/// The process's CPU (percent of one core, over the last sample) and resident memory.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ProcessUsage {
    pub(crate) cpu_percent: f64,
    pub(crate) rss_bytes: u64,
}

/// Reads `/proc/self/stat` and `/proc/self/statm`; zero where there is no `/proc`.
#[derive(Debug, Default)]
pub(crate) struct ProcessSampler {
    last: Option<(Instant, u64)>,
    usage: ProcessUsage,
}

/// Clock ticks per second of `/proc/self/stat` (`CLK_TCK`; 100 on Linux's usual builds).
const TICKS_PER_SECOND: f64 = 100.0;
/// The page size of `/proc/self/statm` (4 KiB on the usual Linux targets).
const PAGE_BYTES: u64 = 4096;

impl ProcessSampler {
    /// Samples now when the last sample is at least 0.5 s old, and returns the latest usage.
    pub(crate) fn sample(&mut self) -> ProcessUsage {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|(at, _)| now.duration_since(at).as_secs_f64() < 0.5)
        {
            return self.usage;
        }
        let ticks = cpu_ticks();
        if let (Some((at, before)), Some(ticks)) = (self.last, ticks) {
            let secs = now.duration_since(at).as_secs_f64();
            let used = ticks.saturating_sub(before) as f64 / TICKS_PER_SECOND;
            self.usage.cpu_percent = (used / secs * 1000.0).round() / 10.0;
        }
        self.usage.rss_bytes = rss_bytes().unwrap_or(0);
        self.last = ticks.map(|t| (now, t));
        self.usage
    }
}

/// User plus system CPU time of this process, in clock ticks.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; the fields after its `)` are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * PAGE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_state(status: DeploymentState) -> DeploymentStatus {
        DeploymentStatus {
            name: "d".into(),
            status,
            message: String::new(),
            target_replicas: 1,
            running_replicas: 1,
            queued_requests: 0,
            replicas_started: 1,
            replicas: vec![],
        }
    }

    #[test]
    fn app_status_follows_the_worst_deployment() {
        use DeploymentState::*;
        let s = |states: &[DeploymentState]| {
            let ds: Vec<_> = states.iter().map(|&s| with_state(s)).collect();
            app_status(ds.iter())
        };
        assert_eq!(s(&[Healthy, Healthy]), "RUNNING");
        assert_eq!(s(&[Healthy, Updating]), "DEPLOYING");
        assert_eq!(s(&[Updating, Unhealthy]), "UNHEALTHY");
        assert_eq!(s(&[Unhealthy, DeployFailed, Updating]), "DEPLOY_FAILED");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process_usage() {
        let mut sampler = ProcessSampler::default();
        let first = sampler.sample();
        assert!(first.rss_bytes > 1 << 20, "{first:?}");
        assert!(cpu_ticks().is_some());
    }
}
