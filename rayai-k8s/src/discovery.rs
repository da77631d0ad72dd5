//! `RAYAI_DISCOVERY=kubernetes` ([`EndpointSlices`]): a proxy finds the replica processes of
//! each deployment in the EndpointSlices of the deployment's Service, which it watches through
//! the Kubernetes API.
//!
//! Kubernetes keeps one or more EndpointSlices per Service, listing the addresses of the pods
//! the Service selects and whether each is ready, and copies the Service's labels to them. The
//! replica Services of a program carry [`NAME_LABEL`]`=<program>` and
//! [`COMPONENT_LABEL`]`=`[`REPLICA`], so one watch of the slices with both labels, in the
//! program's namespace, follows every deployment of the program; the slices of one deployment
//! are those whose [`SERVICE_NAME_LABEL`] is the deployment's [`object_name`].
//!
//! The watch is kube-rs's [`watcher`](kube::runtime::watcher()) feeding a
//! [`reflector`](kube::runtime::reflector()): it lists the slices, then watches for changes from
//! the list's resource version, watches again from the last version seen when a watch ends, and
//! lists again when the API server says that version is too old (`410 Gone`). The slices are
//! kept in memory, so [`Discovery::resolve`] reads no more than that memory.

use std::borrow::Borrow;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, DefaultBackoff, Event};
use kube::{Api, Client};
use rayai_core::remote::Discovery;
use tokio::task::AbortHandle;

use crate::names::{
    COMPONENT_LABEL, NAME_LABEL, REPLICA, SERVICE_NAME_LABEL, object_name, program_name,
};

/// How often the sets are read again from the slices in memory: reading them costs little, so
/// a change reaches the router soon after the watch brings it.
pub const PERIOD: Duration = Duration::from_millis(500);

/// The name of the port a replica process serves on, which a slice's port list is searched for
/// first.
pub const HTTP_PORT: &str = "http";

/// `RAYAI_DISCOVERY=kubernetes`: the ready endpoints of each deployment's replica Service, from
/// the EndpointSlices of the program in one namespace, which a task watches from the moment the
/// value is made until it is dropped.
///
/// Until the first complete list of the slices has arrived, [`Discovery::resolve`] is an error
/// (so the router keeps the sets it had); after it, the sets are what the slices held the last
/// time the watch heard of them. While the API server cannot be reached, they stay as they were,
/// and the watch tries again, waiting longer after each failure (see
/// [`EndpointSlices::with_backoff`]).
pub struct EndpointSlices {
    /// The namespace watched.
    namespace: String,
    /// The program's name as Kubernetes has it, which starts the Services' names.
    program: String,
    /// The label selector of the watch (`app.kubernetes.io/name=<program>,...`).
    selector: String,
    /// The slices the watch has seen, kept up to date by the watch task.
    store: Store<EndpointSlice>,
    /// The watch task, stopped when this is dropped.
    task: AbortHandle,
}

impl std::fmt::Debug for EndpointSlices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointSlices")
            .field("namespace", &self.namespace)
            .field("selector", &self.selector)
            .finish_non_exhaustive()
    }
}

impl EndpointSlices {
    /// Watches, through `client`, the EndpointSlices of the replica Services of `program` (its
    /// Kubernetes name, [`program_name`]) in `namespace`. After an error the watch waits as
    /// kube-rs's [`DefaultBackoff`] says (client-go's parameters: 0.8 s, doubled after each
    /// failure up to 30 s, with jitter; back to the start once something is received).
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime: the watch is a task spawned on it.
    pub fn new(client: Client, namespace: &str, program: &str) -> EndpointSlices {
        EndpointSlices::with_backoff(client, namespace, program, DefaultBackoff::default())
    }

    /// [`EndpointSlices::new`] with another wait after the watch's errors: `backoff` gives the
    /// time to wait after each error of a row (none: the watch stops), and is reset when
    /// something is received. Tests use short constant waits, so that a relist after a
    /// `410 Gone` comes at once.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime: the watch is a task spawned on it.
    pub fn with_backoff<B: Backoff + 'static>(
        client: Client,
        namespace: &str,
        program: &str,
        backoff: B,
    ) -> EndpointSlices {
        let program = program_name(program);
        let selector = format!("{NAME_LABEL}={program},{COMPONENT_LABEL}={REPLICA}");
        let api: Api<EndpointSlice> = Api::namespaced(client, namespace);
        let config = watcher::Config::default().labels(&selector);
        let (store, writer) = reflector::store();
        let events = reflector::reflector(writer, watcher::watcher(api, config).backoff(backoff));
        let what = format!("the EndpointSlices in namespace {namespace} labelled {selector}");
        let task = tokio::spawn(follow(events, what)).abort_handle();
        EndpointSlices {
            namespace: namespace.to_owned(),
            program,
            selector,
            store,
            task,
        }
    }

    /// Watches the EndpointSlices of `program` with the credentials found as kube-rs's
    /// [`Client::try_default`] finds them: the kubeconfig file (`KUBECONFIG`, else
    /// `~/.kube/config`), else the pod's service account (in a cluster), in `namespace`, else
    /// the namespace those credentials name (the pod's own namespace, in a cluster).
    ///
    /// # Errors
    ///
    /// When neither has usable credentials: the message says what was tried and why each
    /// failed.
    pub async fn from_environment(
        program: &str,
        namespace: Option<&str>,
    ) -> Result<EndpointSlices, String> {
        let client = Client::try_default().await.map_err(|e| {
            format!(
                "Kubernetes discovery could not find its credentials (it tried the kubeconfig \
                 file, KUBECONFIG or ~/.kube/config, then the pod's service account): {e}"
            )
        })?;
        let namespace = namespace.unwrap_or(client.default_namespace()).to_owned();
        Ok(EndpointSlices::new(client, &namespace, program))
    }

    /// The namespace watched.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The label selector of the watch: `app.kubernetes.io/name=<program>,`
    /// `app.kubernetes.io/component=replica`.
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// The ready addresses of `deployment`'s replicas now (what [`Discovery::resolve`] answers),
    /// or, before the slices have been listed once (or once the watch has stopped, which only a
    /// backoff that gives up does), the error saying so.
    pub fn addresses(&self, deployment: &str) -> Result<Vec<String>, String> {
        if self.task.is_finished() {
            // Only when a backoff given to `with_backoff` gave up: what the store holds is
            // no longer kept up to date.
            return Err(format!(
                "kubernetes discovery stopped watching {}",
                self.what()
            ));
        }
        match self.store.wait_until_ready().now_or_never() {
            Some(Ok(())) => {}
            Some(Err(_)) => {
                return Err(format!(
                    "kubernetes discovery stopped before {} were listed",
                    self.what()
                ));
            }
            None => return Err(format!("{} are not listed yet", self.what())),
        }
        let service = object_name(&self.program, deployment);
        Ok(ready_addresses(&self.store.state(), &service))
    }

    /// What is watched, for messages.
    fn what(&self) -> String {
        format!(
            "the EndpointSlices in namespace {} labelled {}",
            self.namespace, self.selector
        )
    }
}

impl Drop for EndpointSlices {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Discovery for EndpointSlices {
    fn describe(&self) -> String {
        format!(
            "kubernetes: EndpointSlices in namespace {} labelled {}",
            self.namespace, self.selector
        )
    }

    fn resolve<'a>(&'a self, deployment: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>> {
        Box::pin(std::future::ready(self.addresses(deployment)))
    }

    fn period(&self) -> Duration {
        PERIOD
    }
}

/// Drives the watch, whose events the reflector has already put in the store, and logs how it
/// goes: the first error of a row at `warn` (later ones at `debug`, as the watch retries), a
/// `410 Gone` at `info` (the API server no longer has the changes since the last version seen,
/// so the slices are listed again: normal after a long disconnection), and the recovery after
/// errors at `info`. The stream ends only when the backoff gives up.
async fn follow<S>(events: S, what: String)
where
    S: futures::Stream<Item = watcher::Result<Event<EndpointSlice>>>,
{
    let mut events = std::pin::pin!(events);
    let mut failing = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                if failing {
                    tracing::info!("kubernetes discovery: watching {what} again");
                    failing = false;
                }
                if matches!(event, Event::InitDone) {
                    tracing::debug!("kubernetes discovery: listed {what}");
                }
            }
            Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                tracing::info!(
                    "kubernetes discovery: the watch of {what} is too old ({}): listing them again",
                    status.message
                );
            }
            Err(e) if failing => {
                tracing::debug!("kubernetes discovery: cannot watch {what} yet: {e}");
            }
            Err(e) => {
                tracing::warn!(
                    "kubernetes discovery: cannot watch {what}: {e} (retrying; the addresses \
                     known stay in use meanwhile)"
                );
                failing = true;
            }
        }
    }
    tracing::warn!("kubernetes discovery: stopped watching {what}: the backoff gave up");
}

/// The addresses (`ip:port`, `[ipv6]:port`) of the ready endpoints of the slices among `slices`
/// that belong to the Service `service` (their `kubernetes.io/service-name` label), sorted,
/// without duplicates.
///
/// An endpoint counts unless its conditions say it is not ready (`ready: false`) or is
/// terminating (`terminating: true`): unknown conditions count as ready, as Kubernetes asks of
/// the slices' readers. The port is the slice's port named `http`, else its first port with a
/// number; a slice with no port number gives nothing. Addresses that are not IP addresses (the
/// deprecated `FQDN` address type) are left out.
///
/// ```
/// use k8s_openapi::api::discovery::v1::EndpointSlice;
/// use rayai_k8s::discovery::ready_addresses;
///
/// let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
///     "metadata": {"name": "shop-echo-x1", "labels": {"kubernetes.io/service-name": "shop-echo"}},
///     "addressType": "IPv4",
///     "ports": [{"name": "http", "port": 8000}],
///     "endpoints": [
///         {"addresses": ["10.0.0.2"], "conditions": {"ready": true}},
///         {"addresses": ["10.0.0.3"], "conditions": {"ready": false}},
///     ],
/// }))
/// .unwrap();
/// assert_eq!(ready_addresses(&[slice], "shop-echo"), ["10.0.0.2:8000"]);
/// ```
pub fn ready_addresses<S: Borrow<EndpointSlice>>(slices: &[S], service: &str) -> Vec<String> {
    let mut found: Vec<SocketAddr> = Vec::new();
    for slice in slices {
        let slice = slice.borrow();
        let of_service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(SERVICE_NAME_LABEL))
            .is_some_and(|name| name == service);
        if !of_service {
            continue;
        }
        let Some(port) = serving_port(slice) else {
            continue;
        };
        found.extend(
            slice
                .endpoints
                .iter()
                .filter(|endpoint| is_ready(endpoint))
                .flat_map(|endpoint| &endpoint.addresses)
                .filter_map(|address| address.parse::<IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, port)),
        );
    }
    found.sort_unstable();
    found.dedup();
    found.iter().map(SocketAddr::to_string).collect()
}

/// The port of `slice` the replicas serve on: the one named `http`, else the first with a
/// number (none: no port has a number from 1 to 65535).
fn serving_port(slice: &EndpointSlice) -> Option<u16> {
    let ports = slice.ports.as_deref().unwrap_or_default();
    let number = |port: &k8s_openapi::api::discovery::v1::EndpointPort| {
        port.port
            .and_then(|n| u16::try_from(n).ok())
            .filter(|&n| n != 0)
    };
    ports
        .iter()
        .filter(|port| port.name.as_deref() == Some(HTTP_PORT))
        .find_map(number)
        .or_else(|| ports.iter().find_map(number))
}

/// Whether `endpoint` takes requests: not said to be not ready, nor terminating.
fn is_ready(endpoint: &Endpoint) -> bool {
    endpoint.conditions.as_ref().is_none_or(|conditions| {
        conditions.ready != Some(false) && conditions.terminating != Some(true)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// A slice of the Service `service` from its JSON parts.
    fn slice(service: &str, ports: Value, endpoints: Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {
                "name": format!("{service}-abcde"),
                "labels": {SERVICE_NAME_LABEL: service},
            },
            "addressType": "IPv4",
            "ports": ports,
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    /// One port named `http`.
    fn http(port: u16) -> Value {
        json!([{"name": "http", "port": port, "protocol": "TCP"}])
    }

    #[test]
    fn ready_and_unknown_endpoints_count() {
        let s = slice(
            "shop-echo",
            http(8000),
            json!([
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.3"], "conditions": {}},
                {"addresses": ["10.0.0.4"]},
                {"addresses": ["10.0.0.5"], "conditions": {"ready": true, "terminating": true}},
                {"addresses": ["10.0.0.6"], "conditions": {"ready": false, "serving": true}},
                {"addresses": ["10.0.0.7"], "conditions": {"ready": true, "terminating": false}},
            ]),
        );
        assert_eq!(
            ready_addresses(&[s], "shop-echo"),
            [
                "10.0.0.1:8000",
                "10.0.0.3:8000",
                "10.0.0.4:8000",
                "10.0.0.7:8000"
            ]
        );
    }

    #[test]
    fn only_the_service_s_slices() {
        let mine = slice(
            "shop-echo",
            http(8000),
            json!([{"addresses": ["10.0.0.1"]}]),
        );
        let other = slice(
            "shop-chat",
            http(8000),
            json!([{"addresses": ["10.0.0.2"]}]),
        );
        let mut unlabelled = mine.clone();
        unlabelled.metadata.labels = None;
        unlabelled.endpoints[0].addresses = vec!["10.0.0.3".to_owned()];
        let slices = [mine, other, unlabelled];
        assert_eq!(ready_addresses(&slices, "shop-echo"), ["10.0.0.1:8000"]);
        assert_eq!(ready_addresses(&slices, "shop-chat"), ["10.0.0.2:8000"]);
        assert!(ready_addresses(&slices, "shop-none").is_empty());
        assert!(ready_addresses::<EndpointSlice>(&[], "shop-echo").is_empty());
    }

    #[test]
    fn sorted_without_duplicates_across_slices() {
        let a = slice(
            "s",
            http(8000),
            json!([{"addresses": ["10.0.0.10", "10.0.0.9"]}, {"addresses": ["10.0.0.9"]}]),
        );
        let b = slice(
            "s",
            http(8000),
            json!([{"addresses": ["10.0.0.10"]}, {"addresses": ["10.0.0.1"]}]),
        );
        // Arcs, as the store holds them.
        let slices = [std::sync::Arc::new(a), std::sync::Arc::new(b)];
        assert_eq!(
            ready_addresses(&slices, "s"),
            ["10.0.0.1:8000", "10.0.0.9:8000", "10.0.0.10:8000"]
        );
    }

    #[test]
    fn ipv6_in_brackets() {
        let mut s = slice(
            "s",
            http(8000),
            json!([{"addresses": ["fd00::2"]}, {"addresses": ["::1"]}]),
        );
        s.address_type = "IPv6".to_owned();
        assert_eq!(ready_addresses(&[s], "s"), ["[::1]:8000", "[fd00::2]:8000"]);
    }

    #[test]
    fn addresses_that_are_not_ips_are_left_out() {
        let mut s = slice(
            "s",
            http(8000),
            json!([{"addresses": ["replica-0.example.com"]}, {"addresses": ["10.0.0.1"]}]),
        );
        s.address_type = "FQDN".to_owned();
        assert_eq!(ready_addresses(&[s], "s"), ["10.0.0.1:8000"]);
    }

    #[test]
    fn the_http_port_else_the_first_numbered_one() {
        let endpoints = json!([{"addresses": ["10.0.0.1"]}]);
        let named = slice(
            "s",
            json!([
                {"name": "metrics", "port": 9090},
                {"name": "http", "port": 8000},
                {"name": "grpc", "port": 50051},
            ]),
            endpoints.clone(),
        );
        assert_eq!(ready_addresses(&[named], "s"), ["10.0.0.1:8000"]);

        let unnamed = slice(
            "s",
            json!([{"name": "metrics"}, {"name": "web", "port": 8080}, {"port": 9000}]),
            endpoints.clone(),
        );
        assert_eq!(ready_addresses(&[unnamed], "s"), ["10.0.0.1:8080"]);

        // An `http` port without a number: the first numbered one.
        let http_without_number = slice(
            "s",
            json!([{"name": "http"}, {"name": "alt", "port": 8001}]),
            endpoints.clone(),
        );
        assert_eq!(
            ready_addresses(&[http_without_number], "s"),
            ["10.0.0.1:8001"]
        );

        for ports in [
            json!(null),
            json!([]),
            json!([{"name": "http"}]),
            json!([{"port": 0}, {"port": 70000}]),
        ] {
            let none = slice("s", ports.clone(), endpoints.clone());
            assert!(ready_addresses(&[none], "s").is_empty(), "{ports}");
        }
    }

    #[test]
    fn a_slice_without_a_port_does_not_hide_the_others() {
        let without = slice("s", json!([]), json!([{"addresses": ["10.0.0.1"]}]));
        let with = slice("s", http(8000), json!([{"addresses": ["10.0.0.2"]}]));
        assert_eq!(ready_addresses(&[without, with], "s"), ["10.0.0.2:8000"]);
    }
}
