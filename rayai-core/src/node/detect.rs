//! Detecting the node: CPUs and memory from the OS and cgroups, GPUs from `nvidia-smi -L`.
//!
//! Every step is a small parsing function fed with text (a cgroup file, `/proc/meminfo`, the
//! output of `nvidia-smi -L`), so the logic is tested without real files; only
//! [`NodeResources::detect`] touches the system. It is async: the one external command runs as
//! a child process awaited with a timeout, so detection never blocks a runtime thread.

use std::path::Path;
use std::time::Duration;

use super::resources::{Gpu, NodeResources, parse_gpu_count};

/// How long `nvidia-smi -L` may take before detection gives up on it and assumes no GPUs.
const NVIDIA_SMI_TIMEOUT: Duration = Duration::from_secs(5);

/// Limits at or above this many bytes mean "no limit" (cgroup v1 writes `9223372036854771712`).
const ABSURD_MEMORY: u64 = 1 << 60;

/// Where cgroup file systems are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

impl NodeResources {
    /// Detects the machine this process runs on, then applies the environment's overrides.
    ///
    /// - CPUs: [`std::thread::available_parallelism`], or the cgroup CPU quota (v2 `cpu.max`,
    ///   v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`) if smaller; 1 if neither is known.
    /// - Memory: `MemTotal` of `/proc/meminfo`, or the cgroup limit (v2 `memory.max`, v1
    ///   `memory.limit_in_bytes`) if smaller; `u64::MAX` if neither is known.
    /// - GPUs: the lines of `nvidia-smi -L` (none if the command is missing, fails, or takes
    ///   longer than a few seconds), filtered and renumbered by `CUDA_VISIBLE_DEVICES`.
    /// - Then `RAYAI_NUM_CPUS`, `RAYAI_NUM_GPUS` and `RAYAI_MEMORY`, as
    ///   [`with_env_overrides`](NodeResources::with_env_overrides) describes.
    ///
    /// It never panics: whatever cannot be read is logged at debug level and left out.
    pub async fn detect() -> Self {
        let env = |name: &str| std::env::var(name).ok();
        let proc_cgroup = read("/proc/self/cgroup").unwrap_or_default();
        let paths = CgroupPaths::parse(&proc_cgroup);

        let parallelism = match std::thread::available_parallelism() {
            Ok(n) => Some(n.get() as f64),
            Err(error) => {
                tracing::debug!(%error, "available_parallelism failed");
                None
            }
        };
        let num_cpus = min_known(parallelism, cgroup_cpu_quota(&paths)).unwrap_or_else(|| {
            tracing::warn!("could not detect the number of CPUs; assuming 1 (set RAYAI_NUM_CPUS)");
            1.0
        });

        let mem_total = read("/proc/meminfo").and_then(|text| parse_meminfo_total(&text));
        let memory_bytes = min_known(mem_total, cgroup_memory_limit(&paths)).unwrap_or_else(|| {
            tracing::warn!(
                "could not detect the node's memory; not limiting it (set RAYAI_MEMORY)"
            );
            u64::MAX
        });

        // Skip nvidia-smi when its answer would be thrown away anyway.
        let cuda_visible = env("CUDA_VISIBLE_DEVICES");
        let gpus_overridden = env("RAYAI_NUM_GPUS").is_some_and(|v| parse_gpu_count(&v).is_ok());
        let hidden = cuda_visible.as_deref().is_some_and(|v| v.trim().is_empty());
        let gpus = if gpus_overridden || hidden {
            Vec::new()
        } else {
            let listed = run_with_timeout("nvidia-smi", &["-L"], NVIDIA_SMI_TIMEOUT)
                .await
                .map(|out| parse_nvidia_smi(&out))
                .unwrap_or_default();
            visible_gpus(listed, cuda_visible.as_deref())
        };

        NodeResources {
            num_cpus,
            memory_bytes,
            gpus,
        }
        .with_env_overrides(env)
    }
}

/// The smaller of two values where either may be unknown.
fn min_known<T: PartialOrd>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b < a { b } else { a }),
        (a, b) => a.or(b),
    }
}

fn read(path: impl AsRef<Path>) -> Option<String> {
    let path = path.as_ref();
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(error) => {
            tracing::trace!(path = %path.display(), %error, "not readable");
            None
        }
    }
}

/// CPUs from a cgroup v2 `cpu.max`: `"150000 100000"` is 1.5; `"max 100000"` is no limit.
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut fields = text.split_whitespace();
    let quota = fields.next()?;
    let period = fields.next().unwrap_or("100000");
    if quota == "max" {
        return None;
    }
    cpu_ratio(quota, period)
}

/// CPUs from the cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us`; a quota of -1 is no limit.
fn parse_cfs_quota(quota: &str, period: &str) -> Option<f64> {
    cpu_ratio(quota.trim(), period.trim())
}

fn cpu_ratio(quota: &str, period: &str) -> Option<f64> {
    let quota: i64 = quota.parse().ok()?;
    let period: i64 = period.parse().ok()?;
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

/// Bytes of the `MemTotal:` line of `/proc/meminfo` (given in kB).
fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut fields = line["MemTotal:".len()..].split_whitespace();
    let amount: u64 = fields.next()?.parse().ok()?;
    let unit = match fields.next() {
        None => 1,
        Some(u) if u.eq_ignore_ascii_case("kb") => 1024,
        Some(_) => return None,
    };
    amount.checked_mul(unit)
}

/// Bytes of a cgroup v2 `memory.max` or v1 `memory.limit_in_bytes`; `max` and absurdly large
/// values (v1's way of saying unlimited) are no limit.
fn parse_memory_limit(text: &str) -> Option<u64> {
    let bytes: u64 = text.trim().parse().ok()?;
    (bytes < ABSURD_MEMORY).then_some(bytes)
}

/// Where this process sits in the cgroup hierarchies, from `/proc/self/cgroup`.
#[derive(Debug, Default, PartialEq)]
struct CgroupPaths {
    /// The unified (v2) hierarchy: the `0::<path>` line.
    v2: Option<String>,
    /// The v1 hierarchy holding the `cpu` controller.
    cpu_v1: Option<String>,
    /// The v1 hierarchy holding the `memory` controller.
    memory_v1: Option<String>,
}

impl CgroupPaths {
    fn parse(text: &str) -> Self {
        let mut paths = CgroupPaths::default();
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let path = Some(path.trim().to_owned());
            if id == "0" && controllers.is_empty() {
                paths.v2 = path;
            } else {
                for controller in controllers.split(',') {
                    match controller {
                        "cpu" => paths.cpu_v1 = path.clone(),
                        "memory" => paths.memory_v1 = path.clone(),
                        _ => {}
                    }
                }
            }
        }
        paths
    }
}

/// A cgroup path and each of its parents, up to `/`: limits are hierarchical, and inside a
/// container the mount's root may already be the process's own cgroup.
fn with_ancestors(path: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut current = path.trim_end_matches('/');
    while !current.is_empty() {
        out.push(current);
        current = &current[..current.rfind('/').unwrap_or(0)];
    }
    out.push("/");
    out
}

/// The smallest limit found in `file` under any of `mounts`, along the cgroup `path`.
fn smallest_limit<T: PartialOrd>(
    mounts: &[&str],
    path: Option<&str>,
    file: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Option<T> {
    let mut best = None;
    for mount in mounts {
        if !Path::new(mount).is_dir() {
            continue;
        }
        for dir in with_ancestors(path.unwrap_or("/")) {
            let dir = format!("{mount}{dir}");
            let limit =
                read(format!("{}/{file}", dir.trim_end_matches('/'))).and_then(|text| parse(&text));
            best = min_known(best, limit);
        }
    }
    best
}

fn cgroup_cpu_quota(paths: &CgroupPaths) -> Option<f64> {
    let v2 = smallest_limit(
        &[CGROUP_ROOT],
        paths.v2.as_deref(),
        "cpu.max",
        parse_cpu_max,
    );
    let v1 = cfs_quota_v1(paths.cpu_v1.as_deref());
    min_known(v2, v1)
}

/// The smallest cgroup v1 CPU quota along `path`: each directory's quota over its own period.
fn cfs_quota_v1(path: Option<&str>) -> Option<f64> {
    let mut best = None;
    for mount in ["cpu", "cpu,cpuacct"] {
        let mount = format!("{CGROUP_ROOT}/{mount}");
        if !Path::new(&mount).is_dir() {
            continue;
        }
        for dir in with_ancestors(path.unwrap_or("/")) {
            let dir = format!("{mount}{dir}");
            let dir = dir.trim_end_matches('/');
            let quota = read(format!("{dir}/cpu.cfs_quota_us"));
            let period = read(format!("{dir}/cpu.cfs_period_us"));
            if let (Some(q), Some(p)) = (quota, period) {
                best = min_known(best, parse_cfs_quota(&q, &p));
            }
        }
    }
    best
}

fn cgroup_memory_limit(paths: &CgroupPaths) -> Option<u64> {
    let v2 = smallest_limit(
        &[CGROUP_ROOT],
        paths.v2.as_deref(),
        "memory.max",
        parse_memory_limit,
    );
    let v1 = smallest_limit(
        &[&format!("{CGROUP_ROOT}/memory")[..]],
        paths.memory_v1.as_deref(),
        "memory.limit_in_bytes",
        parse_memory_limit,
    );
    min_known(v2, v1)
}

/// A GPU as `nvidia-smi -L` lists it, before `CUDA_VISIBLE_DEVICES`.
#[derive(Debug, Clone, PartialEq)]
struct ListedGpu {
    index: u32,
    name: String,
    uuid: Option<String>,
}

/// The GPUs of `nvidia-smi -L`: lines such as
/// `GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5b2c...)`. Other lines (MIG devices, messages) are
/// skipped.
fn parse_nvidia_smi(text: &str) -> Vec<ListedGpu> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("GPU ")?;
            let (index, rest) = rest.split_once(':')?;
            let index = index.trim().parse().ok()?;
            let rest = rest.trim();
            let (name, uuid) = match rest.rsplit_once("(UUID:") {
                Some((name, uuid)) => (
                    name.trim(),
                    Some(uuid.trim().trim_end_matches(')').trim().to_owned()),
                ),
                None => (rest, None),
            };
            Some(ListedGpu {
                index,
                name: name.to_owned(),
                uuid,
            })
        })
        .collect()
}

/// The GPUs CUDA lets this process see, renumbered `0..` in the order `CUDA_VISIBLE_DEVICES`
/// lists them.
///
/// Unset: all, as listed. Blank: none. Entries are indices or `GPU-` UUIDs (a unique prefix is
/// enough); as in CUDA, the list stops at the first entry that matches no device or repeats one.
fn visible_gpus(listed: Vec<ListedGpu>, cuda_visible_devices: Option<&str>) -> Vec<Gpu> {
    let Some(spec) = cuda_visible_devices else {
        return listed
            .into_iter()
            .map(|gpu| Gpu::new(gpu.index, gpu.name))
            .collect();
    };
    let mut chosen: Vec<&ListedGpu> = Vec::new();
    for entry in spec.split(',').map(str::trim) {
        let found = if let Ok(index) = entry.parse::<u32>() {
            listed.iter().find(|gpu| gpu.index == index)
        } else if entry.starts_with("GPU-") {
            let mut matching = listed.iter().filter(|gpu| {
                gpu.uuid
                    .as_deref()
                    .is_some_and(|uuid| uuid.starts_with(entry))
            });
            match (matching.next(), matching.next()) {
                (Some(gpu), None) => Some(gpu),
                _ => None,
            }
        } else {
            None
        };
        match found {
            Some(gpu) if !chosen.iter().any(|c| c.index == gpu.index) => chosen.push(gpu),
            _ => break,
        }
    }
    chosen
        .into_iter()
        .zip(0..)
        .map(|(gpu, id)| Gpu::new(id, gpu.name.clone()))
        .collect()
}

/// Runs a command and returns its standard output if it succeeds within `timeout`; kills it
/// otherwise. The child is awaited, never waited for on a runtime thread.
async fn run_with_timeout(program: &str, args: &[&str], timeout: Duration) -> Option<String> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(error) => {
            tracing::debug!(program, %error, "could not run");
            return None;
        }
    };
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) if output.status.success() => String::from_utf8(output.stdout).ok(),
        Ok(Ok(output)) => {
            tracing::debug!(program, status = ?output.status, "failed");
            None
        }
        Ok(Err(error)) => {
            tracing::debug!(program, %error, "could not wait for it");
            None
        }
        Err(_) => {
            // Dropping the future drops the child, which `kill_on_drop` kills.
            tracing::debug!(program, ?timeout, "timed out; killing it");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMI: &str = "\
GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5b2c1a00-aaaa-bbbb-cccc-000000000000)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-7e9d2b11-aaaa-bbbb-cccc-111111111111)
  MIG 1g.5gb      Device  0: (UUID: MIG-0c7f0e33-aaaa-bbbb-cccc-222222222222)
GPU 2: Tesla T4 (UUID: GPU-90ab3c22-aaaa-bbbb-cccc-222222222222)
";

    fn ids_and_names(gpus: &[Gpu]) -> Vec<(u32, &str)> {
        gpus.iter().map(|g| (g.id, g.name.as_str())).collect()
    }

    #[test]
    fn cpu_max_is_quota_over_period() {
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(parse_cpu_max("200000 100000"), Some(2.0));
        assert_eq!(parse_cpu_max("50000"), Some(0.5));
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("max"), None);
        assert_eq!(parse_cpu_max(""), None);
        assert_eq!(parse_cpu_max("100000 0"), None);
        assert_eq!(parse_cpu_max("lots 100000"), None);
    }

    #[test]
    fn cfs_quota_minus_one_is_no_limit() {
        assert_eq!(parse_cfs_quota("-1\n", "100000\n"), None);
        assert_eq!(parse_cfs_quota("250000\n", "100000\n"), Some(2.5));
        assert_eq!(parse_cfs_quota("50000", "100000"), Some(0.5));
        assert_eq!(parse_cfs_quota("50000", "0"), None);
        assert_eq!(parse_cfs_quota("x", "100000"), None);
    }

    #[test]
    fn meminfo_total_is_in_kibibytes() {
        let text = "MemTotal:       24684092 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_meminfo_total(text), Some(24684092 * 1024));
        assert_eq!(parse_meminfo_total("MemFree: 1000 kB\n"), None);
        assert_eq!(parse_meminfo_total("MemTotal: lots kB\n"), None);
        assert_eq!(parse_meminfo_total(""), None);
    }

    #[test]
    fn memory_limit_ignores_max_and_absurd_values() {
        assert_eq!(parse_memory_limit("4294967296\n"), Some(4 << 30));
        assert_eq!(parse_memory_limit("max\n"), None);
        assert_eq!(parse_memory_limit("9223372036854771712\n"), None);
        assert_eq!(parse_memory_limit(&(1u64 << 60).to_string()), None);
        assert_eq!(
            parse_memory_limit(&((1u64 << 60) - 1).to_string()),
            Some((1 << 60) - 1)
        );
        assert_eq!(parse_memory_limit(""), None);
    }

    #[test]
    fn smaller_known_value_wins() {
        assert_eq!(min_known(Some(8.0), Some(1.5)), Some(1.5));
        assert_eq!(min_known(Some(1.0), Some(1.5)), Some(1.0));
        assert_eq!(min_known(None, Some(3u64)), Some(3));
        assert_eq!(min_known(Some(3u64), None), Some(3));
        assert_eq!(min_known::<u64>(None, None), None);
    }

    #[test]
    fn finds_cgroup_paths_of_both_versions() {
        let text = "9:name=systemd:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/docker/x\n0::/\n";
        assert_eq!(
            CgroupPaths::parse(text),
            CgroupPaths {
                v2: Some("/".to_owned()),
                cpu_v1: Some("/docker/x".to_owned()),
                memory_v1: Some("/process_api/abc".to_owned()),
            }
        );
        let v2_only = CgroupPaths::parse("0::/system.slice/app.service\n");
        assert_eq!(v2_only.v2.as_deref(), Some("/system.slice/app.service"));
        assert_eq!(v2_only.cpu_v1, None);
        assert_eq!(CgroupPaths::parse(""), CgroupPaths::default());
    }

    #[test]
    fn walks_cgroup_ancestors_up_to_the_root() {
        assert_eq!(with_ancestors("/a/b"), ["/a/b", "/a", "/"]);
        assert_eq!(with_ancestors("/a/"), ["/a", "/"]);
        assert_eq!(with_ancestors("/"), ["/"]);
        assert_eq!(with_ancestors(""), ["/"]);
    }

    #[test]
    fn parses_nvidia_smi_list() {
        let listed = parse_nvidia_smi(SMI);
        assert_eq!(listed.len(), 3, "the MIG line is skipped: {listed:?}");
        assert_eq!(listed[0].index, 0);
        assert_eq!(listed[0].name, "NVIDIA A100-SXM4-40GB");
        assert_eq!(
            listed[0].uuid.as_deref(),
            Some("GPU-5b2c1a00-aaaa-bbbb-cccc-000000000000")
        );
        assert_eq!(listed[2].index, 2);
        assert_eq!(listed[2].name, "Tesla T4");
        assert!(parse_nvidia_smi("No devices were found\n").is_empty());
        assert!(parse_nvidia_smi("").is_empty());
        let no_uuid = parse_nvidia_smi("GPU 3: Some Card\n");
        assert_eq!(no_uuid[0].name, "Some Card");
        assert_eq!(no_uuid[0].uuid, None);
    }

    #[test]
    fn all_gpus_are_visible_without_cuda_visible_devices() {
        let gpus = visible_gpus(parse_nvidia_smi(SMI), None);
        assert_eq!(
            ids_and_names(&gpus),
            [
                (0, "NVIDIA A100-SXM4-40GB"),
                (1, "NVIDIA A100-SXM4-40GB"),
                (2, "Tesla T4")
            ]
        );
    }

    #[test]
    fn cuda_visible_devices_indices_renumber_in_listed_order() {
        let gpus = visible_gpus(parse_nvidia_smi(SMI), Some("2, 0"));
        assert_eq!(
            ids_and_names(&gpus),
            [(0, "Tesla T4"), (1, "NVIDIA A100-SXM4-40GB")]
        );
    }

    #[test]
    fn cuda_visible_devices_accepts_uuids_and_unique_prefixes() {
        let gpus = visible_gpus(
            parse_nvidia_smi(SMI),
            Some("GPU-90ab3c22-aaaa-bbbb-cccc-222222222222,GPU-7e9d"),
        );
        assert_eq!(
            ids_and_names(&gpus),
            [(0, "Tesla T4"), (1, "NVIDIA A100-SXM4-40GB")]
        );
        // "GPU-" alone matches every device: ambiguous, so nothing from there on.
        assert!(visible_gpus(parse_nvidia_smi(SMI), Some("GPU-")).is_empty());
    }

    #[test]
    fn cuda_visible_devices_empty_hides_every_gpu() {
        assert!(visible_gpus(parse_nvidia_smi(SMI), Some("")).is_empty());
        assert!(visible_gpus(parse_nvidia_smi(SMI), Some(" ")).is_empty());
    }

    #[test]
    fn cuda_visible_devices_stops_at_an_unknown_or_repeated_entry() {
        let gpus = visible_gpus(parse_nvidia_smi(SMI), Some("1,7,0"));
        assert_eq!(ids_and_names(&gpus), [(0, "NVIDIA A100-SXM4-40GB")]);
        let gpus = visible_gpus(parse_nvidia_smi(SMI), Some("2,2,0"));
        assert_eq!(ids_and_names(&gpus), [(0, "Tesla T4")]);
        assert!(visible_gpus(parse_nvidia_smi(SMI), Some("none")).is_empty());
        assert!(visible_gpus(Vec::new(), Some("0")).is_empty());
    }

    #[tokio::test]
    async fn detect_never_panics_and_finds_something() {
        let node = NodeResources::detect().await;
        assert!(node.num_cpus > 0.0, "{node:?}");
        assert!(node.memory_bytes > 0, "{node:?}");
    }

    #[tokio::test]
    async fn missing_command_is_no_output() {
        assert_eq!(
            run_with_timeout("rayai-no-such-command", &[], Duration::from_secs(1)).await,
            None
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn slow_command_is_killed_at_the_timeout() {
        let started = std::time::Instant::now();
        assert_eq!(
            run_with_timeout("sleep", &["10"], Duration::from_millis(200)).await,
            None
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            run_with_timeout("echo", &["hi"], Duration::from_secs(5))
                .await
                .as_deref(),
            Some("hi\n")
        );
        assert_eq!(
            run_with_timeout("false", &[], Duration::from_secs(5)).await,
            None
        );
    }
}
