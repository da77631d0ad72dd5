//! The status API (`GET /api/serve/applications`) and the process's own CPU and memory use.

use std::time::Instant;

use rayai_core::{Controller, DeploymentState, DeploymentStatus, Snapshot};
use serde_json::{Map, Value, json};

/// An application's status from its deployments' states: Ray Serve's names.
pub(crate) fn app_status(states: impl IntoIterator<Item = DeploymentState>) -> &'static str {
    let mut status = "RUNNING";
    for state in states {
        match state {
            DeploymentState::Healthy => {}
            DeploymentState::Unhealthy => {
                if status != "DEPLOY_FAILED" {
                    status = "UNHEALTHY";
                }
            }
            DeploymentState::DeployFailed => status = "DEPLOY_FAILED",
            // Updating, and any state added later: not settled yet.
            _ => {
                if status == "RUNNING" {
                    status = "DEPLOYING";
                }
            }
        }
    }
    status
}

/// The body of `GET /api/serve/applications`: every application of the controller's snapshot,
/// with its route prefix and each of its deployments (found by identity, not by name), plus the
/// node and this process.
pub(crate) fn applications(
    snapshot: &Snapshot,
    controller: &Controller,
    process: ProcessUsage,
) -> Value {
    let mut apps = Map::new();
    for app in snapshot.applications() {
        let statuses: Vec<DeploymentStatus> =
            app.deployments().iter().map(|d| d.status()).collect();
        let mut by_name = Map::new();
        for d in &statuses {
            by_name.insert(
                d.name.clone(),
                serde_json::to_value(d).unwrap_or(Value::Null),
            );
        }
        apps.insert(
            app.name().to_owned(),
            json!({
                "name": app.name(),
                "route_prefix": app.route_prefix(),
                "status": app_status(statuses.iter().map(|d| d.status)),
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

/// Reads `/proc/self/stat` and `/proc/self/statm` on Linux; zero elsewhere.
#[derive(Debug, Default)]
pub(crate) struct ProcessSampler {
    /// When the last sample was taken, and the CPU seconds used until then.
    last: Option<(Instant, f64)>,
    usage: ProcessUsage,
}

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
        let cpu = cpu_seconds();
        if let (Some((at, before)), Some(cpu)) = (self.last, cpu) {
            let secs = now.duration_since(at).as_secs_f64();
            let used = (cpu - before).max(0.0);
            self.usage.cpu_percent = (used / secs * 1000.0).round() / 10.0;
        }
        self.usage.rss_bytes = rss_bytes().unwrap_or(0);
        self.last = cpu.map(|c| (now, c));
        self.usage
    }
}

/// User plus system CPU time of this process, in seconds.
#[cfg(target_os = "linux")]
fn cpu_seconds() -> Option<f64> {
    let ticks = cpu_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    // `CLK_TCK`, the unit of `/proc`'s times, from the auxiliary vector.
    let per_second = rustix::param::clock_ticks_per_second();
    (per_second > 0).then(|| ticks as f64 / per_second as f64)
}

#[cfg(not(target_os = "linux"))]
fn cpu_seconds() -> Option<f64> {
    None
}

/// User plus system CPU time in a `/proc/<pid>/stat` line, in clock ticks.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and `)`; the fields after its last `)` are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// This process's resident memory: `/proc/self/statm`'s resident pages times the page size.
#[cfg(target_os = "linux")]
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page_size = u64::try_from(rustix::param::page_size()).ok()?;
    pages.checked_mul(page_size)
}

#[cfg(not(target_os = "linux"))]
fn rss_bytes() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_status_follows_the_worst_deployment() {
        use DeploymentState::*;
        let s = |states: &[DeploymentState]| app_status(states.iter().copied());
        assert_eq!(s(&[Healthy, Healthy]), "RUNNING");
        assert_eq!(s(&[Healthy, Updating]), "DEPLOYING");
        assert_eq!(s(&[Updating, Unhealthy]), "UNHEALTHY");
        assert_eq!(s(&[Unhealthy, DeployFailed, Updating]), "DEPLOY_FAILED");
    }

    #[test]
    fn reads_cpu_ticks_after_the_command_name() {
        // utime 7 and stime 5 (fields 14 and 15); the name holds a space and a `)`.
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 3 4 5\n";
        assert_eq!(cpu_ticks(stat), Some(12));
        assert_eq!(cpu_ticks("42 (short) S 1"), None);
        assert_eq!(cpu_ticks("no name here"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process_usage() {
        let mut sampler = ProcessSampler::default();
        let first = sampler.sample();
        assert!(first.rss_bytes > 1 << 20, "{first:?}");
        // Spin until the CPU time moves (at least 0.3 s of wall-clock time, at most 10 s).
        let before = cpu_seconds().unwrap();
        let start = Instant::now();
        let mut x = 0u64;
        let mut after = before;
        while start.elapsed().as_secs_f64() < 0.3
            || (after <= before && start.elapsed().as_secs() < 10)
        {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            after = cpu_seconds().unwrap();
        }
        assert!(after > before, "{before} -> {after}");
        // At most every core busy all along (other tests run in this process too), give or take.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let bound = start.elapsed().as_secs_f64() * cores + 0.05;
        assert!(
            after - before <= bound,
            "{before} -> {after} (bound {bound})"
        );
    }
}
