//! `EndpointSlices` against a scripted Kubernetes API server: what `resolve` answers as the
//! slices change, and how the watch lives through ended watches, `410 Gone` and failed lists.

#[path = "support/api_server.rs"]
mod api_server;

use std::time::{Duration, Instant};

use api_server::{ApiServer, slice};
use kube::runtime::utils::Backoff;
use rayai_core::remote::Discovery;
use rayai_k8s::discovery::EndpointSlices;
use serde_json::json;

/// The program the tests watch.
const PROGRAM: &str = "shop";

/// The longest a test waits for `resolve` to give what it expects.
const WAIT: Duration = Duration::from_secs(5);

/// A backoff of 20 ms after every error, so that a relist comes at once.
struct Quick;

impl Iterator for Quick {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::from_millis(20))
    }
}

impl Backoff for Quick {
    fn reset(&mut self) {}
}

/// A kube client of `server`.
fn client(server: &ApiServer) -> kube::Client {
    let mut config = kube::Config::new(server.url().parse().expect("a URL"));
    config.default_namespace = server.namespace();
    kube::Client::try_from(config).expect("a client")
}

/// The slice `shop-echo-a` of the program's `echo` deployment (port 8000) with `endpoints`.
fn echo_a(endpoints: &[(&str, bool)]) -> serde_json::Value {
    slice(PROGRAM, "shop-echo-a", "shop-echo", 8000, endpoints)
}

/// The discovery of [`PROGRAM`] in the namespace of `server`, retrying after 20 ms.
fn discovery(server: &ApiServer) -> EndpointSlices {
    EndpointSlices::with_backoff(client(server), &server.namespace(), PROGRAM, Quick)
}

/// Waits until `resolve(deployment)` answers `want`; panics with the last answer after
/// [`WAIT`].
async fn expect(d: &EndpointSlices, deployment: &str, want: &[&str]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = d.resolve(deployment).await;
        if got.as_deref().is_ok_and(|got| got == want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "resolve({deployment:?}) is {got:?} after {WAIT:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn endpoints_appear_from_the_list_then_the_watch() {
    let server = ApiServer::start().await;
    server.apply(echo_a(&[("10.0.0.2", true), ("10.0.0.1", true)]));
    let d = discovery(&server);
    expect(&d, "echo", &["10.0.0.1:8000", "10.0.0.2:8000"]).await;
    assert_eq!(d.resolve("chat").await, Ok(vec![]));

    // A second slice of the same Service, then one of another deployment: ADDED.
    server.apply(slice(
        PROGRAM,
        "shop-echo-b",
        "shop-echo",
        8000,
        &[("10.0.0.3", true), ("10.0.0.1", true)],
    ));
    expect(
        &d,
        "echo",
        &["10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"],
    )
    .await;
    server.apply(slice(
        PROGRAM,
        "shop-chat-a",
        "shop-chat",
        8000,
        &[("10.0.1.1", true)],
    ));
    expect(&d, "chat", &["10.0.1.1:8000"]).await;

    // One list, of the namespace, with both labels; then a watch from its version.
    let lists = server.lists();
    assert_eq!(lists.len(), 1, "{lists:#?}");
    assert_eq!(
        lists[0].path,
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
    );
    let selector = lists[0].label_selector().expect("a label selector");
    let mut requirements: Vec<&str> = selector.split(',').collect();
    requirements.sort_unstable();
    assert_eq!(
        requirements,
        [
            "app.kubernetes.io/component=replica",
            "app.kubernetes.io/name=shop"
        ]
    );
    let watches = server.watches();
    assert_eq!(watches[0].label_selector(), Some(selector));
    assert_eq!(watches[0].resource_version(), Some("2"));
    assert_eq!(watches[0].param("allowWatchBookmarks"), Some("true"));
}

#[tokio::test]
async fn an_endpoint_that_is_not_ready_leaves_the_set_until_it_is_again() {
    let server = ApiServer::start().await;
    let ready = |second: bool| echo_a(&[("10.0.0.1", true), ("10.0.0.2", second)]);
    server.apply(ready(true));
    let d = discovery(&server);
    expect(&d, "echo", &["10.0.0.1:8000", "10.0.0.2:8000"]).await;
    server.apply(ready(false));
    expect(&d, "echo", &["10.0.0.1:8000"]).await;
    server.apply(ready(true));
    expect(&d, "echo", &["10.0.0.1:8000", "10.0.0.2:8000"]).await;

    // Terminating, still ready: out; no conditions at all: in.
    let mut s = ready(true);
    s["endpoints"][1]["conditions"] = json!({"ready": true, "terminating": true});
    server.apply(s.clone());
    expect(&d, "echo", &["10.0.0.1:8000"]).await;
    s["endpoints"][1]
        .as_object_mut()
        .expect("an endpoint")
        .remove("conditions");
    server.apply(s);
    expect(&d, "echo", &["10.0.0.1:8000", "10.0.0.2:8000"]).await;
}

#[tokio::test]
async fn a_deleted_slice_empties_the_set() {
    let server = ApiServer::start().await;
    server.apply(echo_a(&[("10.0.0.1", true)]));
    server.apply(slice(
        PROGRAM,
        "shop-echo-b",
        "shop-echo",
        8000,
        &[("10.0.0.2", true)],
    ));
    let d = discovery(&server);
    expect(&d, "echo", &["10.0.0.1:8000", "10.0.0.2:8000"]).await;
    assert!(server.delete("shop-echo-a"));
    expect(&d, "echo", &["10.0.0.2:8000"]).await;
    assert!(server.delete("shop-echo-b"));
    expect(&d, "echo", &[]).await;
}

#[tokio::test]
async fn an_ended_watch_is_watched_again_from_the_last_version() {
    let server = ApiServer::start().await;
    server.apply(echo_a(&[("10.0.0.1", true)]));
    let d = discovery(&server);
    expect(&d, "echo", &["10.0.0.1:8000"]).await;
    let seen = server.apply(echo_a(&[("10.0.0.1", true), ("10.0.0.2", true)]));
    expect(&d, "echo", &["10.0.0.1:8000", "10.0.0.2:8000"]).await;

    server.wait_watching().await;
    assert_eq!(server.end_watch(), 1);
    // Made while no watch may be open: the next watch, from the last version seen, gets it.
    server.apply(echo_a(&[("10.0.0.3", true)]));
    expect(&d, "echo", &["10.0.0.3:8000"]).await;
    server.wait_watching().await;

    // Watched again, not listed again.
    assert_eq!(server.lists().len(), 1, "{:#?}", server.requests());
    let watches = server.watches();
    assert_eq!(watches.len(), 2, "{watches:#?}");
    assert_eq!(
        watches[1].resource_version(),
        Some(seen.to_string().as_str())
    );

    // Again, ending it twice in a row.
    for _ in 0..2 {
        server.wait_watching().await;
        server.end_watch();
    }
    server.apply(echo_a(&[("10.0.0.4", true)]));
    expect(&d, "echo", &["10.0.0.4:8000"]).await;
    assert_eq!(server.lists().len(), 1);
}

#[tokio::test]
async fn a_bookmark_moves_the_version_watched_from() {
    let server = ApiServer::start().await;
    server.apply(echo_a(&[("10.0.0.1", true)]));
    let d = discovery(&server);
    expect(&d, "echo", &["10.0.0.1:8000"]).await;
    server.wait_watching().await;
    // A change the watch's selector does not see, then a bookmark of its version.
    let unseen = server.apply(slice("other", "other-echo-a", "other-echo", 8000, &[]));
    server.bookmark();
    // The response ends after the bookmark, which the client reads first.
    server.end_watch();
    server
        .wait_for("a second watch", || server.watches().len() == 2)
        .await;
    assert_eq!(
        server.watches()[1].resource_version(),
        Some(unseen.to_string().as_str())
    );
    server.apply(echo_a(&[("10.0.0.2", true)]));
    expect(&d, "echo", &["10.0.0.2:8000"]).await;
}

#[tokio::test]
async fn a_gone_watch_lists_again_and_keeps_the_set_meanwhile() {
    let server = ApiServer::start().await;
    server.apply(echo_a(&[("10.0.0.1", true)]));
    server.apply(slice(
        PROGRAM,
        "shop-chat-a",
        "shop-chat",
        8000,
        &[("10.0.1.1", true)],
    ));
    let d = discovery(&server);
    expect(&d, "echo", &["10.0.0.1:8000"]).await;
    server.wait_watching().await;

    // The next list waits; the watch gets a 410; changes are made while expired.
    server.hold_lists();
    let started = Instant::now();
    let oldest = server.expire();
    server.apply(echo_a(&[("10.0.0.2", true)]));
    assert!(server.delete("shop-chat-a"));
    server
        .wait_for("a second list", || server.lists().len() == 2)
        .await;
    let relisted = started.elapsed();
    // Until the list is answered, the set is what it was.
    assert_eq!(
        d.resolve("echo").await,
        Ok(vec!["10.0.0.1:8000".to_owned()])
    );
    assert_eq!(
        d.resolve("chat").await,
        Ok(vec!["10.0.1.1:8000".to_owned()])
    );

    server.release_lists();
    expect(&d, "echo", &["10.0.0.2:8000"]).await;
    // Gone from the new list: gone from the store.
    expect(&d, "chat", &[]).await;
    assert!(
        relisted < Duration::from_secs(1),
        "relisted after {relisted:?}"
    );

    // The new watch starts from the new list's version, which is not too old.
    server.wait_watching().await;
    let watches = server.watches();
    let last = watches.last().expect("a watch");
    let from: u64 = last
        .resource_version()
        .expect("a version")
        .parse()
        .expect("a number");
    assert!(from >= oldest, "{watches:#?}");
    server.apply(echo_a(&[("10.0.0.3", true)]));
    expect(&d, "echo", &["10.0.0.3:8000"]).await;
    assert_eq!(server.lists().len(), 2);
}

#[tokio::test]
async fn only_the_deployment_s_service_of_the_program_counts() {
    let server = ApiServer::start().await;
    server.apply(echo_a(&[("10.0.0.1", true)]));
    // Another deployment of the program.
    server.apply(slice(
        PROGRAM,
        "shop-chat-a",
        "shop-chat",
        8000,
        &[("10.0.1.1", true)],
    ));
    // Another program's slice, even one claiming the same Service name: the selector leaves it
    // out.
    server.apply(slice(
        "other",
        "other-x",
        "shop-echo",
        8000,
        &[("10.9.0.1", true)],
    ));
    // The program's proxy Service: another component.
    let mut proxy = slice(
        PROGRAM,
        "shop-proxy",
        "shop-echo",
        8000,
        &[("10.9.0.2", true)],
    );
    proxy["metadata"]["labels"]["app.kubernetes.io/component"] = json!("proxy");
    server.apply(proxy);
    let d = discovery(&server);
    expect(&d, "echo", &["10.0.0.1:8000"]).await;
    expect(&d, "chat", &["10.0.1.1:8000"]).await;

    // Nor through the watch.
    server.apply(slice(
        "other",
        "other-y",
        "shop-echo",
        8000,
        &[("10.9.0.3", true)],
    ));
    server.apply(slice(
        PROGRAM,
        "shop-echo-b",
        "shop-echo",
        8000,
        &[("10.0.0.2", true)],
    ));
    expect(&d, "echo", &["10.0.0.1:8000", "10.0.0.2:8000"]).await;
    // A slice that stops matching the selector is deleted from the watch's view.
    let mut moved = slice(
        PROGRAM,
        "shop-echo-b",
        "shop-echo",
        8000,
        &[("10.0.0.2", true)],
    );
    moved["metadata"]["labels"]["app.kubernetes.io/name"] = json!("other");
    server.apply(moved);
    expect(&d, "echo", &["10.0.0.1:8000"]).await;
}

#[tokio::test]
async fn another_namespace_sees_nothing() {
    let server = ApiServer::start_in("shop").await;
    server.apply(echo_a(&[("10.0.0.1", true)]));
    let elsewhere = EndpointSlices::with_backoff(client(&server), "default", PROGRAM, Quick);
    let here = discovery(&server);
    expect(&here, "echo", &["10.0.0.1:8000"]).await;
    expect(&elsewhere, "echo", &[]).await;
    assert!(
        server
            .lists()
            .iter()
            .any(|r| r.path == "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices")
    );
}

#[tokio::test]
async fn resolve_is_an_error_until_the_first_list() {
    let server = ApiServer::start().await;
    server.apply(echo_a(&[("10.0.0.1", true)]));
    server.hold_lists();
    let d = discovery(&server);
    assert_eq!(
        d.describe(),
        "kubernetes: EndpointSlices in namespace default labelled \
         app.kubernetes.io/name=shop,app.kubernetes.io/component=replica"
    );
    assert_eq!(d.period(), Duration::from_millis(500));
    let err = d.resolve("echo").await.unwrap_err();
    assert!(err.contains("not listed yet"), "{err}");
    server
        .wait_for("a list", || server.lists().len() == 1)
        .await;
    let err = d.resolve("chat").await.unwrap_err();
    assert!(err.contains("not listed yet"), "{err}");
    assert!(err.contains("namespace default"), "{err}");
    server.release_lists();
    expect(&d, "echo", &["10.0.0.1:8000"]).await;
    expect(&d, "chat", &[]).await;
}

#[tokio::test]
async fn failed_lists_are_tried_again() {
    let server = ApiServer::start().await;
    server.apply(echo_a(&[("10.0.0.1", true)]));
    server.fail_lists(Some(500));
    let d = discovery(&server);
    server
        .wait_for("three lists", || server.lists().len() >= 3)
        .await;
    assert!(d.resolve("echo").await.is_err());
    server.fail_lists(None);
    expect(&d, "echo", &["10.0.0.1:8000"]).await;
}

#[tokio::test]
async fn a_backoff_that_gives_up_stops_the_watch() {
    /// No retry at all.
    struct GiveUp;
    impl Iterator for GiveUp {
        type Item = Duration;
        fn next(&mut self) -> Option<Duration> {
            None
        }
    }
    impl Backoff for GiveUp {
        fn reset(&mut self) {}
    }

    let server = ApiServer::start().await;
    server.fail_lists(Some(500));
    let d = EndpointSlices::with_backoff(client(&server), "default", PROGRAM, GiveUp);
    let deadline = Instant::now() + WAIT;
    loop {
        let err = d.resolve("echo").await.unwrap_err();
        if err.contains("stopped watching") {
            break;
        }
        assert!(err.contains("not listed yet"), "{err}");
        assert!(Instant::now() < deadline, "still {err}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.lists().len(), 1);
}

#[tokio::test]
async fn an_unreachable_api_server_is_an_error_not_a_panic() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().expect("a URL"));
    let client = kube::Client::try_from(config).expect("a client");
    let d = EndpointSlices::with_backoff(client, "default", PROGRAM, Quick);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let err = d.resolve("echo").await.unwrap_err();
    assert!(err.contains("not listed yet"), "{err}");
}

#[tokio::test]
async fn ipv6_addresses_and_the_http_port() {
    let server = ApiServer::start().await;
    server.apply(slice(
        PROGRAM,
        "shop-echo-v6",
        "shop-echo",
        8000,
        &[("fd00::2", true), ("fd00::1", true), ("fd00::3", false)],
    ));
    let mut ports = slice(
        PROGRAM,
        "shop-echo-v4",
        "shop-echo",
        0,
        &[("10.0.0.1", true)],
    );
    ports["ports"] = json!([
        {"name": "metrics", "port": 9090, "protocol": "TCP"},
        {"name": "http", "port": 8001, "protocol": "TCP"},
    ]);
    server.apply(ports);
    let d = discovery(&server);
    expect(
        &d,
        "echo",
        &["10.0.0.1:8001", "[fd00::1]:8000", "[fd00::2]:8000"],
    )
    .await;
}

#[tokio::test]
async fn deployment_names_map_to_service_names() {
    let server = ApiServer::start().await;
    let service = rayai_k8s::names::object_name(PROGRAM, "Chat_v2");
    server.apply(slice(
        PROGRAM,
        "chat-a",
        &service,
        8000,
        &[("10.0.0.1", true)],
    ));
    let d = discovery(&server);
    expect(&d, "Chat_v2", &["10.0.0.1:8000"]).await;
    expect(&d, "chat-v2", &[]).await;
}

#[tokio::test]
async fn dropping_it_stops_the_watch() {
    let server = ApiServer::start().await;
    server.apply(echo_a(&[("10.0.0.1", true)]));
    let d = discovery(&server);
    expect(&d, "echo", &["10.0.0.1:8000"]).await;
    server.wait_watching().await;
    drop(d);
    server.end_watch();
    server.expire();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.lists().len(), 1, "{:#?}", server.requests());
    assert_eq!(server.watches().len(), 1, "{:#?}", server.requests());
}

#[tokio::test]
async fn from_environment_without_credentials_says_what_it_tried() {
    // Only when this machine has no credentials (no kubeconfig, not in a pod): otherwise the
    // environment is not the test's to change.
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let has_kubeconfig = std::env::var_os("KUBECONFIG").is_some()
        || home.is_some_and(|h| h.join(".kube/config").exists());
    if has_kubeconfig || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return;
    }
    let err = EndpointSlices::from_environment(PROGRAM, None)
        .await
        .unwrap_err();
    assert!(err.contains("could not find its credentials"), "{err}");
    assert!(err.contains("service account"), "{err}");
}
