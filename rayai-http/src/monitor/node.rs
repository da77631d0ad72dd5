//! The node's own gauges, as Ray's node metrics name them: CPU utilization (`/proc/stat`),
//! memory used and total (`/proc/meminfo`), the root file system's used and free bytes
//! (`statvfs`), and network receive and send speeds (`/proc/net/dev`, every interface, as
//! `psutil` counts them). Rates are over the time since the previous sample (a sample is kept
//! at least half a second, so scrapers close together share one). Linux only; other systems
//! export none of them.

use std::time::Instant;

use super::exposition::{Family, Kind};

/// CPU time counters of `/proc/stat`'s first line: `(busy, total)` in clock ticks.
fn cpu_times(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<u64> = fields.map_while(|f| f.parse().ok()).collect();
    if values.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal; guest time is already in user.
    let total: u64 = values.iter().take(8).sum();
    let idle = values[3] + values.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// `(total, available)` bytes from `/proc/meminfo`.
fn memory(meminfo: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        kb.checked_mul(1024)
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

/// Bytes received and sent over every interface, from `/proc/net/dev`.
fn network(dev: &str) -> Option<(u64, u64)> {
    let mut rx = 0u64;
    let mut tx = 0u64;
    let mut any = false;
    for line in dev.lines().skip(2) {
        let Some((_, counters)) = line.split_once(':') else {
            continue;
        };
        let fields: Vec<u64> = counters
            .split_whitespace()
            .map_while(|f| f.parse().ok())
            .collect();
        if fields.len() >= 9 {
            rx = rx.saturating_add(fields[0]);
            tx = tx.saturating_add(fields[8]);
            any = true;
        }
    }
    any.then_some((rx, tx))
}

/// `(used, free)` bytes of the root file system, as `psutil.disk_usage("/")` counts them.
#[cfg(target_os = "linux")]
fn disk() -> Option<(u64, u64)> {
    let vfs = rustix::fs::statvfs("/").ok()?;
    let used = vfs
        .f_blocks
        .saturating_sub(vfs.f_bfree)
        .saturating_mul(vfs.f_frsize);
    Some((used, vfs.f_bavail.saturating_mul(vfs.f_frsize)))
}

#[cfg(not(target_os = "linux"))]
fn disk() -> Option<(u64, u64)> {
    None
}

/// One reading of the counters the rates come from.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    /// `(busy, total)` CPU ticks.
    cpu: Option<(u64, u64)>,
    /// `(received, sent)` bytes.
    net: Option<(u64, u64)>,
}

/// The rates of the last sample.
#[derive(Debug, Clone, Copy, Default)]
struct Rates {
    cpu_percent: Option<f64>,
    /// `(receive, send)` bytes per second.
    net: Option<(f64, f64)>,
}

/// Samples the node at each scrape.
#[derive(Debug, Default)]
pub(crate) struct NodeSampler {
    last: Option<Reading>,
    rates: Rates,
}

impl NodeSampler {
    /// Takes a new sample when the last is at least half a second old, and returns its rates.
    fn rates(&mut self) -> Rates {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|r| now.duration_since(r.at).as_secs_f64() < 0.5)
        {
            return self.rates;
        }
        let reading = Reading {
            at: now,
            cpu: read("/proc/stat").as_deref().and_then(cpu_times),
            net: read("/proc/net/dev").as_deref().and_then(network),
        };
        let before = self.last.replace(reading);
        // CPU: since the previous sample, or since boot at the first.
        self.rates.cpu_percent = reading.cpu.and_then(|(busy, total)| {
            let (busy, total) = match before.and_then(|b| b.cpu) {
                Some((b, t)) if total > t => (busy.saturating_sub(b), total - t),
                _ => (busy, total),
            };
            (total > 0).then(|| (busy as f64 / total as f64 * 100.0).clamp(0.0, 100.0))
        });
        // Network: a speed needs two samples.
        self.rates.net = match (before, reading.net) {
            (
                Some(Reading {
                    at,
                    net: Some((rx0, tx0)),
                    ..
                }),
                Some((rx, tx)),
            ) => {
                let secs = now.duration_since(at).as_secs_f64().max(1e-3);
                Some((
                    rx.saturating_sub(rx0) as f64 / secs,
                    tx.saturating_sub(tx0) as f64 / secs,
                ))
            }
            _ => None,
        };
        self.rates
    }

    /// The node gauges now.
    pub(crate) fn families(&mut self) -> Vec<Family> {
        let mut out = Vec::new();
        let mut gauge = |name, help, value: f64| {
            let mut family = Family::new(name, Kind::Gauge, help);
            family.number(vec![], value);
            out.push(family);
        };
        let rates = self.rates();
        if let Some(cpu) = rates.cpu_percent {
            gauge(
                "ray_node_cpu_utilization",
                "CPU utilization of the node, in percent of all its CPUs",
                cpu,
            );
        }
        if let Some((total, available)) = read("/proc/meminfo").as_deref().and_then(memory) {
            gauge(
                "ray_node_mem_used",
                "Memory used on the node (total minus available), in bytes",
                total.saturating_sub(available) as f64,
            );
            gauge(
                "ray_node_mem_total",
                "Memory of the node, in bytes",
                total as f64,
            );
        }
        if let Some((used, free)) = disk() {
            gauge(
                "ray_node_disk_usage",
                "Bytes used on the node's root file system",
                used as f64,
            );
            gauge(
                "ray_node_disk_free",
                "Bytes free for users on the node's root file system",
                free as f64,
            );
        }
        if let Some((rx, tx)) = rates.net {
            gauge(
                "ray_node_network_receive_speed",
                "Bytes per second the node received over its interfaces",
                rx,
            );
            gauge(
                "ray_node_network_send_speed",
                "Bytes per second the node sent over its interfaces",
                tx,
            );
        }
        out
    }
}

fn read(path: &str) -> Option<String> {
    if cfg!(target_os = "linux") {
        std::fs::read_to_string(path).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_busy_and_total_cpu_ticks() {
        let stat = "cpu  10 2 3 80 5 0 0 0 0 0\ncpu0 1 1 1 1 1 1 1 1 1 1\n";
        assert_eq!(cpu_times(stat), Some((15, 100)));
        assert_eq!(cpu_times("intr 1 2 3"), None);
        assert_eq!(cpu_times(""), None);
    }

    #[test]
    fn reads_total_and_available_memory() {
        let meminfo = "MemTotal:       16000 kB\nMemFree:  100 kB\nMemAvailable:    4000 kB\n";
        assert_eq!(memory(meminfo), Some((16000 * 1024, 4000 * 1024)));
        assert_eq!(memory("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn sums_every_interface() {
        let dev = "Inter-|   Receive  |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets\n    lo: 100 1 0 0 0 0 0 0 200 2 0 0 0 0 0 0\n  eth0: 1000 1 0 0 0 0 0 0 50 2 0 0 0 0 0 0\n";
        assert_eq!(network(dev), Some((1100, 250)));
        assert_eq!(network("header\nheader\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn samples_this_node() {
        let mut sampler = NodeSampler::default();
        let names = |f: Vec<Family>| f.iter().map(|f| f.name).collect::<Vec<_>>();
        let first = names(sampler.families());
        for name in [
            "ray_node_cpu_utilization",
            "ray_node_mem_used",
            "ray_node_mem_total",
            "ray_node_disk_usage",
            "ray_node_disk_free",
        ] {
            assert!(first.contains(&name), "{name} missing from {first:?}");
        }
        // A speed needs a second sample, at least half a second later.
        assert!(!first.contains(&"ray_node_network_receive_speed"));
        sampler.last.as_mut().expect("sampled").at -= std::time::Duration::from_secs(1);
        let second = names(sampler.families());
        assert!(
            second.contains(&"ray_node_network_receive_speed"),
            "{second:?}"
        );
        assert!(
            second.contains(&"ray_node_network_send_speed"),
            "{second:?}"
        );
    }
}
