//! The status API (`GET /api/serve/applications/`, Ray's `ServeInstanceDetails`) and the
//! process's own CPU and memory use.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rayai_core::{
    Controller, DeploymentConfig, DeploymentHandle, DeploymentState, DeploymentStatus as Status,
    ReplicaState, Snapshot,
};
use serde_json::{Map, Value, json};

use super::schema::{
    ActorDetails, ApplicationDetails, ApplicationStatus, AutoscalingSchema, ControllerInfo,
    DeploymentDetails, DeploymentSchema, DeploymentStatus, GrpcOptionsSchema, HttpOptionsSchema,
    ProxyDetails, ProxyStatus, RayActorOptions, ReplicaDetails, ServeInstanceDetails,
    StatusTrigger, Target, TargetGroup,
};
use crate::HttpOptions;

/// Ray's name for the controller actor.
const CONTROLLER_NAME: &str = "SERVE_CONTROLLER_ACTOR";
/// Ray's default gRPC port (no gRPC server runs without servicer functions).
const DEFAULT_GRPC_PORT: u16 = 9000;

/// Which server this is and where it runs, as the status API reports it.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// `RAYAI_PROJECT`, which `rayai serve` sets to the project's directory.
    project: Option<String>,
    pid: u32,
    address: SocketAddr,
    started_at_s: f64,
    node_id: String,
    node_ip: String,
    http: HttpOptionsSchema,
}

impl Identity {
    /// This process, serving at `address` with `options`.
    pub(crate) fn of_this_process(address: SocketAddr, options: &HttpOptions) -> Self {
        let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
        Identity {
            project: std::env::var("RAYAI_PROJECT")
                .ok()
                .filter(|p| !p.is_empty()),
            pid: std::process::id(),
            address,
            started_at_s: unix_seconds(SystemTime::now()),
            node_id: node_id().to_owned(),
            node_ip: node_ip(address.ip()).to_string(),
            http: HttpOptionsSchema {
                host: options.host.clone(),
                port: address.port(),
                root_path: options.root_path.clone(),
                request_timeout_s: options.request_timeout().map(|t| t.as_secs_f64()),
                keep_alive_timeout_s: whole_seconds(options.keep_alive_timeout_s),
                ssl_keyfile: path(&options.tls_key_path),
                ssl_certfile: path(&options.tls_cert_path),
            },
        }
    }

    /// Ray's details of a Serve actor named `actor_name` running in this process.
    fn actor(&self, actor_name: String) -> ActorDetails {
        ActorDetails {
            node_id: self.node_id.clone(),
            node_ip: self.node_ip.clone(),
            node_instance_id: None,
            actor_id: None,
            actor_name,
            worker_id: None,
            log_file_path: None,
        }
    }

    /// Ray's name of the proxy of this node.
    fn proxy_name(&self) -> String {
        format!("SERVE_PROXY_ACTOR-{}", self.node_id)
    }
}

/// This node's id: 56 hex digits as Ray's, drawn once per process.
fn node_id() -> &'static str {
    static NODE_ID: OnceLock<String> = OnceLock::new();
    NODE_ID.get_or_init(|| {
        let mut id = uuid::Uuid::new_v4().simple().to_string();
        id.push_str(&uuid::Uuid::new_v4().simple().to_string());
        id.truncate(56);
        id
    })
}

/// The node's IP address: the one bound, or for an unspecified address (`0.0.0.0`, `::`) the
/// one its outgoing traffic would leave from (no packet is sent), else loopback.
fn node_ip(bound: IpAddr) -> IpAddr {
    if !bound.is_unspecified() {
        return bound;
    }
    let probe = || {
        let socket = UdpSocket::bind((bound, 0)).ok()?;
        let remote: SocketAddr = if bound.is_ipv4() {
            ([192, 0, 2, 1], 9).into()
        } else {
            "[2001:db8::1]:9".parse().ok()?
        };
        socket.connect(remote).ok()?;
        socket.local_addr().ok().map(|a| a.ip())
    };
    probe()
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Seconds since the Unix epoch.
fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A non-negative number of seconds rounded to whole seconds (Ray's integer fields).
fn whole_seconds(secs: f64) -> u64 {
    if secs.is_finite() && secs > 0.0 {
        secs.round() as u64
    } else {
        0
    }
}

/// A deployment's status and its trigger in Ray's terms, from what the deployment is now.
///
/// rayai records no history of scaling decisions, so a healthy autoscaling deployment's last
/// scaling is read from where its target stands against the replicas it started with.
pub(crate) fn ray_status(
    status: &Status,
    config: &DeploymentConfig,
) -> (DeploymentStatus, StatusTrigger) {
    use DeploymentStatus as S;
    use StatusTrigger as T;
    let running = status
        .replicas
        .iter()
        .filter(|r| r.state == ReplicaState::Running)
        .count() as u32;
    let autoscales = config.autoscaling().is_some();
    match status.status {
        DeploymentState::DeployFailed => (S::DeployFailed, T::ReplicaStartupFailed),
        DeploymentState::Unhealthy => (S::Unhealthy, T::ReplicaStartupFailed),
        DeploymentState::Healthy => {
            let initial = config.initial_replicas();
            let trigger = match status.target_replicas.cmp(&initial) {
                std::cmp::Ordering::Greater if autoscales => T::UpscaleCompleted,
                std::cmp::Ordering::Less if autoscales => T::DownscaleCompleted,
                _ => T::ConfigUpdateCompleted,
            };
            (S::Healthy, trigger)
        }
        // Updating, and any state added later: replicas are on their way.
        _ if running < status.replicas.len() as u32 => (S::Unhealthy, T::HealthCheckFailed),
        _ if autoscales && running < status.target_replicas => (S::Upscaling, T::Autoscaling),
        _ if autoscales && running > status.target_replicas => (S::Downscaling, T::Autoscaling),
        _ => (S::Updating, T::ConfigUpdateStarted),
    }
}

/// An application's status and message from its deployments' (Ray's rules: a failed deploy
/// first, then unhealthy deployments, then ones still updating).
pub(crate) fn app_status<'a>(
    deployments: impl IntoIterator<Item = (&'a str, DeploymentStatus, StatusTrigger)>,
) -> (ApplicationStatus, String) {
    let (mut failed, mut unhealthy, mut updating) = (Vec::new(), Vec::new(), false);
    for (name, status, trigger) in deployments {
        match status {
            DeploymentStatus::DeployFailed => failed.push(name),
            DeploymentStatus::Unhealthy => unhealthy.push(name),
            DeploymentStatus::Updating => updating = true,
            DeploymentStatus::Upscaling | DeploymentStatus::Downscaling => {
                updating |= trigger == StatusTrigger::ConfigUpdateStarted;
            }
            DeploymentStatus::Healthy => {}
        }
    }
    // As Python prints a list of names.
    let names = |names: &[&str]| {
        let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
        format!("[{}]", quoted.join(", "))
    };
    if !failed.is_empty() {
        let message = format!("Failed to update the deployments {}.", names(&failed));
        (ApplicationStatus::DeployFailed, message)
    } else if !unhealthy.is_empty() {
        let message = format!("The deployments {} are UNHEALTHY.", names(&unhealthy));
        (ApplicationStatus::Unhealthy, message)
    } else if updating {
        (ApplicationStatus::Deploying, String::new())
    } else {
        (ApplicationStatus::Running, String::new())
    }
}

/// Ray's details of one deployment of the application `app`.
fn deployment(identity: &Identity, app: &str, handle: &DeploymentHandle) -> DeploymentDetails {
    let status = handle.status();
    let config = handle.config();
    let served = handle.served_name().into_owned();
    let (ray, trigger) = ray_status(&status, &config);
    let resources = config.resources();
    let mut required = Map::new();
    required.insert("CPU".to_owned(), json!(resources.num_cpus));
    if resources.num_gpus > 0.0 {
        required.insert("GPU".to_owned(), json!(resources.num_gpus));
    }
    if resources.memory_bytes > 0 {
        required.insert("memory".to_owned(), json!(resources.memory_bytes));
    }
    let replicas = status
        .replicas
        .iter()
        .map(|r| {
            let unique = r.replica_id.rsplit('#').next().unwrap_or(&r.replica_id);
            ReplicaDetails {
                actor: identity.actor(format!("SERVE_REPLICA::{app}#{served}#{unique}")),
                replica_id: r.replica_id.clone(),
                state: r.state,
                pid: identity.pid,
                start_time_s: unix_seconds(r.start_time),
                ongoing_requests: r.ongoing_requests,
                served: r.served,
                gpu_ids: r.gpu_ids.clone(),
                starts: r.starts,
                address: r.address.clone(),
                last_error: r.last_error.clone(),
            }
        })
        .collect();
    DeploymentDetails {
        name: served.clone(),
        status: ray,
        status_trigger: trigger,
        message: status.message.clone(),
        deployment_config: deployment_schema(served, &config),
        target_num_replicas: status.target_replicas,
        required_resources: required,
        replicas,
    }
}

/// Ray's `DeploymentSchema` of `config`, named `name`.
fn deployment_schema(name: String, config: &DeploymentConfig) -> DeploymentSchema {
    let resources = config.resources();
    let autoscaling = config.autoscaling().map(|a| AutoscalingSchema {
        min_replicas: a.min_replicas,
        initial_replicas: a.initial_replicas,
        max_replicas: a.max_replicas,
        target_ongoing_requests: a.target_ongoing_requests,
        upscale_delay_s: a.upscale_delay.as_secs_f64(),
        downscale_delay_s: a.downscale_delay.as_secs_f64(),
        downscale_to_zero_delay_s: a.downscale_to_zero_delay.as_secs_f64(),
    });
    DeploymentSchema {
        name,
        num_replicas: autoscaling.is_none().then(|| config.num_replicas()),
        autoscaling_config: autoscaling,
        max_ongoing_requests: config.max_ongoing_requests(),
        max_queued_requests: config.max_queued_requests().map_or(-1, i64::from),
        user_config: config.user_config().cloned(),
        graceful_shutdown_timeout_s: config.graceful_shutdown_timeout().as_secs_f64(),
        health_check_period_s: config.health_check_period().as_secs_f64(),
        health_check_timeout_s: config.health_check_timeout().as_secs_f64(),
        ray_actor_options: RayActorOptions {
            num_cpus: resources.num_cpus,
            num_gpus: resources.num_gpus,
            memory: resources.memory_bytes,
        },
    }
}

/// The body of `GET /api/serve/applications/`: Ray's `ServeInstanceDetails` of every
/// application of the controller's snapshot, each with every deployment it runs (found by
/// identity, not by name), this process as the controller and the node's one proxy.
pub(crate) fn details(
    snapshot: &Snapshot,
    identity: &Identity,
    draining: bool,
) -> ServeInstanceDetails {
    let mut applications = BTreeMap::new();
    for app in snapshot.applications() {
        let deployments: BTreeMap<String, DeploymentDetails> = app
            .deployments()
            .iter()
            .map(|handle| {
                let details = deployment(identity, app.name(), handle);
                (details.name.clone(), details)
            })
            .collect();
        let (status, message) = app_status(
            deployments
                .values()
                .map(|d| (d.name.as_str(), d.status, d.status_trigger)),
        );
        applications.insert(
            app.name().to_owned(),
            ApplicationDetails {
                name: app.name().to_owned(),
                route_prefix: app.ingress().map(|_| app.route_prefix().to_owned()),
                docs_path: None,
                status,
                message,
                last_deployed_time_s: unix_seconds(app.deployed_at()),
                deployed_app_config: app.deployed_config().cloned(),
                source: app.source().as_str(),
                deployments,
            },
        );
    }
    let proxy = ProxyDetails {
        actor: identity.actor(identity.proxy_name()),
        status: if draining {
            ProxyStatus::Draining
        } else {
            ProxyStatus::Healthy
        },
    };
    let target = Target {
        ip: identity.node_ip.clone(),
        port: identity.http.port,
        instance_id: String::new(),
        name: identity.proxy_name(),
    };
    ServeInstanceDetails {
        controller_info: ControllerInfo {
            actor: identity.actor(CONTROLLER_NAME.to_owned()),
            project: identity.project.clone(),
            pid: identity.pid,
            address: identity.address.to_string(),
            started_at_s: identity.started_at_s,
        },
        proxy_location: "EveryNode",
        http_options: identity.http.clone(),
        grpc_options: GrpcOptionsSchema {
            port: DEFAULT_GRPC_PORT,
            grpc_servicer_functions: Vec::new(),
        },
        proxies: BTreeMap::from([(identity.node_id.clone(), proxy)]),
        deploy_mode: "MULTI_APP",
        applications,
        target_capacity: None,
        target_groups: vec![TargetGroup {
            targets: vec![target],
            route_prefix: "/".to_owned(),
            protocol: "HTTP",
        }],
    }
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

    fn status(state: DeploymentState, target: u32, replicas: &[ReplicaState]) -> Status {
        Status {
            name: "d".to_owned(),
            served_name: "d".to_owned(),
            status: state,
            message: String::new(),
            target_replicas: target,
            running_replicas: replicas.len() as u32,
            pending_replicas: 0,
            queued_requests: 0,
            replicas_started: replicas.len() as u64,
            replicas: replicas
                .iter()
                .enumerate()
                .map(|(i, &state)| rayai_core::ReplicaStatus {
                    replica_id: format!("d#{i}"),
                    state,
                    ongoing_requests: 0,
                    served: 0,
                    gpu_ids: vec![],
                    starts: 1,
                    last_error: None,
                    start_time: UNIX_EPOCH,
                    address: None,
                })
                .collect(),
        }
    }

    #[test]
    fn deployment_states_read_as_rays_status_and_trigger() {
        use DeploymentState::*;
        use DeploymentStatus as S;
        use ReplicaState::{Running, Stopping};
        use StatusTrigger as T;
        let fixed = DeploymentConfig::new("d").with_num_replicas(2);
        let scaling = DeploymentConfig::new("d")
            .with_autoscaling(rayai_core::AutoscalingConfig::new(1, 4, 2.0));
        let ray = |s: Status, c: &DeploymentConfig| ray_status(&s, c);
        let cases = [
            (
                status(Healthy, 2, &[Running; 2]),
                &fixed,
                (S::Healthy, T::ConfigUpdateCompleted),
            ),
            (
                status(Updating, 2, &[Running]),
                &fixed,
                (S::Updating, T::ConfigUpdateStarted),
            ),
            (
                status(Updating, 2, &[Running, Stopping]),
                &fixed,
                (S::Unhealthy, T::HealthCheckFailed),
            ),
            (
                status(Unhealthy, 2, &[Running]),
                &fixed,
                (S::Unhealthy, T::ReplicaStartupFailed),
            ),
            (
                status(DeployFailed, 2, &[]),
                &fixed,
                (S::DeployFailed, T::ReplicaStartupFailed),
            ),
            (
                status(Updating, 3, &[Running]),
                &scaling,
                (S::Upscaling, T::Autoscaling),
            ),
            (
                status(Updating, 1, &[Running; 2]),
                &scaling,
                (S::Downscaling, T::Autoscaling),
            ),
            (
                status(Healthy, 3, &[Running; 3]),
                &scaling,
                (S::Healthy, T::UpscaleCompleted),
            ),
            (
                status(Healthy, 1, &[Running]),
                &scaling,
                (S::Healthy, T::ConfigUpdateCompleted),
            ),
        ];
        for (i, (s, config, want)) in cases.into_iter().enumerate() {
            assert_eq!(ray(s, config), want, "case {i}");
        }
    }

    #[test]
    fn app_status_follows_rays_rules() {
        use DeploymentStatus as S;
        use StatusTrigger as T;
        let app = |ds: &[(&'static str, S, T)]| app_status(ds.iter().copied());
        let healthy = ("a", S::Healthy, T::ConfigUpdateCompleted);
        assert_eq!(app(&[healthy]), (ApplicationStatus::Running, String::new()));
        let scaling = ("b", S::Upscaling, T::Autoscaling);
        assert_eq!(app(&[healthy, scaling]).0, ApplicationStatus::Running);
        let updating = ("b", S::Updating, T::ConfigUpdateStarted);
        assert_eq!(app(&[healthy, updating]).0, ApplicationStatus::Deploying);
        let sick = ("c", S::Unhealthy, T::HealthCheckFailed);
        assert_eq!(
            app(&[healthy, updating, sick]),
            (
                ApplicationStatus::Unhealthy,
                "The deployments ['c'] are UNHEALTHY.".to_owned()
            )
        );
        let failed = ("d", S::DeployFailed, T::ReplicaStartupFailed);
        let other = ("e", S::DeployFailed, T::ReplicaStartupFailed);
        assert_eq!(
            app(&[sick, failed, other]),
            (
                ApplicationStatus::DeployFailed,
                "Failed to update the deployments ['d', 'e'].".to_owned()
            )
        );
    }

    #[test]
    fn the_node_is_named_once_and_located_where_it_listens() {
        assert_eq!(node_id().len(), 56);
        assert!(node_id().chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(node_id(), node_id());
        let bound: IpAddr = [10, 1, 2, 3].into();
        assert_eq!(node_ip(bound), bound);
        assert!(!node_ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED)).is_unspecified());
        assert_eq!(whole_seconds(90.0), 90);
        assert_eq!(whole_seconds(-1.0), 0);
        assert_eq!(whole_seconds(f64::NAN), 0);
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
