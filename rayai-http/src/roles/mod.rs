//! The roles of a rayai program beyond one process, chosen at start by the environment:
//!
//! | `RAYAI_ROLE` | what the process runs |
//! |---|---|
//! | `all` (default) | everything: the proxy and every replica |
//! | `proxy` | no replica: the applications' routes, every request sent to replica processes found by `RAYAI_DISCOVERY` |
//! | `replica` | the replicas of the deployments `RAYAI_DEPLOYMENT` names (comma-separated), `RAYAI_NUM_REPLICAS` of each if set, served to proxies and handles over HTTP/2 on the serving port |
//!
//! `RAYAI_DISCOVERY` is `static:<file>` (a TOML file, `[deployments]` then
//! `echo = ["127.0.0.1:9001"]`, read again when it changes), `dns` (`<deployment>.<RAYAI_DNS_SUFFIX>`
//! A/AAAA records, port `RAYAI_DNS_PORT`, default 8000) or, with rayai's `kubernetes` feature,
//! `kubernetes` (the ready endpoints of the EndpointSlices of each deployment's Service, in
//! `RAYAI_NAMESPACE` or the service account's namespace, for the program `RAYAI_NAME`, default the
//! executable's name). A replica process needs it only to reach other deployments through
//! handles.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rayai_core::remote::{Discovery, Roles};

use crate::Error;

pub(crate) mod discovery;
mod pool;
pub(crate) mod wire;

/// The role a process plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    All,
    Proxy,
    Replica(Vec<String>),
}

/// What the environment asks for: the role, and the roles' settings for the controller
/// (`None` in the `all` role).
pub(crate) async fn from_env() -> Result<(Role, Option<Roles>), Error> {
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let role = match var("RAYAI_ROLE")
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("all") => return Ok((Role::All, None)),
        Some("proxy") => Role::Proxy,
        Some("replica") => {
            let Some(names) = var("RAYAI_DEPLOYMENT") else {
                let agents: Vec<String> = rayai_core::App::discover()
                    .deployments()
                    .iter()
                    .map(|d| d.config().name().to_owned())
                    .collect();
                return Err(Error::Role(format!(
                    "RAYAI_ROLE=replica needs RAYAI_DEPLOYMENT: the name of the deployment (or \
                     several, comma-separated) whose replicas run in this process{}",
                    if agents.is_empty() {
                        String::new()
                    } else {
                        format!(" (this program's agents: {})", agents.join(", "))
                    }
                )));
            };
            let names: Vec<String> = names
                .split(',')
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect();
            Role::Replica(names)
        }
        Some(_) => {
            return Err(Error::Env {
                variable: "RAYAI_ROLE",
                value: var("RAYAI_ROLE").unwrap_or_default(),
                expected: "one of all, proxy, replica",
            });
        }
    };
    let num_replicas = match var("RAYAI_NUM_REPLICAS") {
        None => None,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n >= 1 && role != Role::Proxy => Some(n),
            _ => {
                return Err(Error::Env {
                    variable: "RAYAI_NUM_REPLICAS",
                    value: v,
                    expected: "a whole number of replicas, 1 or more, in the replica role",
                });
            }
        },
    };
    let seconds = |name: &'static str, default: f64| -> Result<Duration, Error> {
        match var(name) {
            None => Ok(Duration::from_secs_f64(default)),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
                .map(Duration::from_secs_f64)
                .ok_or(Error::Env {
                    variable: name,
                    value: v,
                    expected: "a number of seconds above 0",
                }),
        }
    };
    let discovery: Arc<dyn Discovery> = match var("RAYAI_DISCOVERY") {
        Some(value) if value.eq_ignore_ascii_case("kubernetes") => {
            kubernetes(var("RAYAI_NAME"), var("RAYAI_NAMESPACE")).await?
        }
        Some(value) => {
            let port = match var("RAYAI_DNS_PORT") {
                None => 8000,
                Some(p) => p.parse::<u16>().map_err(|_| Error::Env {
                    variable: "RAYAI_DNS_PORT",
                    value: p,
                    expected: "a port number",
                })?,
            };
            discovery::from_env_value(&value, var("RAYAI_DNS_SUFFIX"), port).map_err(Error::Role)?
        }
        None if role == Role::Proxy => {
            return Err(Error::Role(
                "RAYAI_ROLE=proxy needs RAYAI_DISCOVERY: static:<file> (a TOML file listing each \
                 deployment's replica addresses), dns (with RAYAI_DNS_SUFFIX) or kubernetes \
                 (EndpointSlices, with rayai's `kubernetes` feature)"
                    .to_owned(),
            ));
        }
        None => Arc::new(Nowhere),
    };
    let local = match &role {
        Role::Replica(names) => names.clone(),
        _ => Vec::new(),
    };
    let roles = Roles {
        local,
        num_replicas,
        discovery,
        transport: wire::WireClient::new(match var("RAYAI_WIRE").as_deref() {
            None | Some("h1" | "http1") => false,
            Some("h2" | "http2") => true,
            Some(other) => {
                return Err(Error::Env {
                    variable: "RAYAI_WIRE",
                    value: other.to_owned(),
                    expected: "h1 or h2",
                });
            }
        }),
        probe_period: seconds("RAYAI_PROBE_PERIOD_S", 1.0)?,
        wait_for_replica: seconds("RAYAI_REPLICA_WAIT_S", 5.0)?,
    };
    Ok((role, Some(roles)))
}

/// `RAYAI_DISCOVERY=kubernetes`: the EndpointSlices of the program's replica Services, watched
/// with the pod's service account (or a kubeconfig outside a cluster).
#[cfg(feature = "kubernetes")]
async fn kubernetes(
    name: Option<String>,
    namespace: Option<String>,
) -> Result<Arc<dyn Discovery>, Error> {
    let program = rayai_k8s::names::program_name(&name.unwrap_or_else(program_name));
    let slices =
        rayai_k8s::discovery::EndpointSlices::from_environment(&program, namespace.as_deref())
            .await
            .map_err(Error::Role)?;
    Ok(Arc::new(slices))
}

/// `RAYAI_DISCOVERY=kubernetes` without the feature: refused.
#[cfg(not(feature = "kubernetes"))]
async fn kubernetes(_: Option<String>, _: Option<String>) -> Result<Arc<dyn Discovery>, Error> {
    Err(Error::Role(
        "RAYAI_DISCOVERY=kubernetes: this program was built without rayai's `kubernetes` \
         feature; add it to watch EndpointSlices, or use static:<file> or dns"
            .to_owned(),
    ))
}

/// The program's name: its executable's, without directories or extension (`conformance`).
#[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
pub(crate) fn program_name() -> String {
    std::env::current_exe()
        .ok()
        .or_else(|| std::env::args_os().next().map(std::path::PathBuf::from))
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "rayai".to_owned())
}

/// The discovery of a replica process given none: other deployments have no replicas.
struct Nowhere;

impl Discovery for Nowhere {
    fn describe(&self) -> String {
        "none (set RAYAI_DISCOVERY)".to_owned()
    }

    fn resolve<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn period(&self) -> Duration {
        Duration::from_secs(3600)
    }
}

/// The deployments of the replica role that no application deployed so far has, and the names
/// that would be valid: every `#[agent]` of the program and every deployment deployed.
pub(crate) fn unknown_deployments(
    local: &[String],
    deployed: &[String],
) -> Option<(Vec<String>, Vec<String>)> {
    let mut valid: Vec<String> = rayai_core::App::discover()
        .deployments()
        .iter()
        .map(|d| d.config().name().to_owned())
        .chain(deployed.iter().cloned())
        .collect();
    valid.sort();
    valid.dedup();
    let unknown: Vec<String> = local
        .iter()
        .filter(|n| !deployed.contains(n))
        .cloned()
        .collect();
    (!unknown.is_empty()).then_some((unknown, valid))
}

/// The message for deployments of the replica role that the program does not have.
pub(crate) fn unknown_message(unknown: &[String], valid: &[String]) -> String {
    format!(
        "RAYAI_DEPLOYMENT names {} that this program does not deploy; valid names: {}",
        unknown
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", "),
        if valid.is_empty() {
            "none".to_owned()
        } else {
            valid.join(", ")
        }
    )
}
