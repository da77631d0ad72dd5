//! The node's own gauges, as Ray's node metrics name them: CPU utilization over the time since
//! the last scrape (`/proc/stat`), memory used and total (`/proc/meminfo`). Linux only; other
//! systems export none of them.

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

/// Samples the node's CPU and memory at each scrape.
#[derive(Debug, Default)]
pub(crate) struct NodeSampler {
    /// `(busy, total)` ticks at the previous scrape.
    last: Option<(u64, u64)>,
}

impl NodeSampler {
    /// The node gauges now: CPU utilization in percent since the previous scrape (since boot at
    /// the first), memory used (total minus available) and total, in bytes.
    pub(crate) fn families(&mut self) -> Vec<Family> {
        let mut out = Vec::new();
        if let Some(now) = read("/proc/stat").as_deref().and_then(cpu_times) {
            let (busy, total) = match self.last {
                Some((b, t)) if now.1 > t => (now.0.saturating_sub(b), now.1 - t),
                _ => now,
            };
            self.last = Some(now);
            if total > 0 {
                let mut cpu = Family::new(
                    "ray_node_cpu_utilization",
                    Kind::Gauge,
                    "CPU utilization of the node, in percent of all its CPUs",
                );
                cpu.number(
                    vec![],
                    (busy as f64 / total as f64 * 100.0).clamp(0.0, 100.0),
                );
                out.push(cpu);
            }
        }
        if let Some((total, available)) = read("/proc/meminfo").as_deref().and_then(memory) {
            let mut used = Family::new(
                "ray_node_mem_used",
                Kind::Gauge,
                "Memory used on the node (total minus available), in bytes",
            );
            used.number(vec![], total.saturating_sub(available) as f64);
            let mut all = Family::new(
                "ray_node_mem_total",
                Kind::Gauge,
                "Memory of the node, in bytes",
            );
            all.number(vec![], total as f64);
            out.push(used);
            out.push(all);
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

    #[cfg(target_os = "linux")]
    #[test]
    fn samples_this_node() {
        let mut sampler = NodeSampler::default();
        let names: Vec<_> = sampler.families().iter().map(|f| f.name).collect();
        assert_eq!(
            names,
            [
                "ray_node_cpu_utilization",
                "ray_node_mem_used",
                "ray_node_mem_total"
            ]
        );
    }
}
