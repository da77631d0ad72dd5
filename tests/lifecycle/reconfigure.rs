//! `user_config` and `reconfigure`, and in-place updates of a running application
//! (`Controller::apply_app`): a replica is reconfigured before its first request; a new
//! `user_config` reaches running replicas without a restart; replicas scale in place under load
//! with every request answered; a change of resources rolls a new version out, again with every
//! request answered; a `reconfigure` that fails on an update turns the deployment `UNHEALTHY`.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use conformance::agents::Greeter;
use http::{Request, Response, StatusCode};
use rayai::prelude::*;
use rayai::{AppSource, Deployment, DeploymentConfig, DeploymentState, HttpBody, Server};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::common::{get, post, serve_on, start_post, within};
use crate::{POLL, chat, error_text, handle, ms, node, status_of, until_status};

/// Holds the requests of `tagged` that ask for it (`data.gate`) until the test lets them go:
/// only `new_limits_apply_to_the_requests_that_arrive_after_an_update` asks.
static GATE: Semaphore = Semaphore::const_new(0);

/// Answers `{"replica", "greeting"}` after sleeping `data.ms` (or waiting at the [`GATE`] when
/// `data.gate`); its greeting comes from the `user_config` (`"unset"` until `reconfigure` runs);
/// `reconfigure` fails with `user_config.fail` when given.
#[agent(name = "tagged", num_cpus = 0.1, memory = "16MB")]
struct Tagged {
    replica: String,
    greeting: RwLock<String>,
}

impl Construct for Tagged {
    async fn construct(ctx: ReplicaContext) -> Result<Self, AgentError> {
        Ok(Tagged {
            replica: ctx.replica_id().to_owned(),
            greeting: RwLock::new("unset".to_owned()),
        })
    }
}

impl Agent for Tagged {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        if let Some(n) = data.get("ms").and_then(Value::as_u64) {
            tokio::time::sleep(ms(n)).await;
        }
        if data.get("gate").and_then(Value::as_bool) == Some(true) {
            GATE.acquire()
                .await
                .map_err(|e| AgentError::new(e.to_string()))?
                .forget();
        }
        let greeting = self
            .greeting
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Ok(json!({ "replica": self.replica, "greeting": greeting }))
    }

    async fn reconfigure(&self, user_config: &Value) -> Result<(), AgentError> {
        if let Some(message) = user_config.get("fail").and_then(Value::as_str) {
            return Err(AgentError::new(message));
        }
        let greeting = user_config["greeting"]
            .as_str()
            .ok_or_else(|| AgentError::new("user_config.greeting is missing"))?;
        *self
            .greeting
            .write()
            .unwrap_or_else(PoisonError::into_inner) = greeting.to_owned();
        Ok(())
    }
}

/// The application of `tagged` alone (served as `tagged-service`), configured by `config`.
fn tagged(config: impl FnOnce(DeploymentConfig) -> DeploymentConfig) -> App {
    App::named("tagged").deployment(Deployment::agent::<Tagged>().map_config(config))
}

/// `(replica, greeting)` of a 200 from `tagged`.
async fn answer(addr: SocketAddr) -> (String, String) {
    let r = post(addr, &chat("tagged"), r#"{"data": {}}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let result = &r.json()["result"];
    (
        result["replica"].as_str().unwrap_or_default().to_owned(),
        result["greeting"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Asks `tagged` until `replicas` distinct replicas have answered; every answer's greeting.
async fn greetings_of(addr: SocketAddr, replicas: usize) -> Vec<(String, String)> {
    let mut seen = BTreeSet::new();
    let mut answers = Vec::new();
    let deadline = Instant::now() + POLL;
    while seen.len() < replicas {
        assert!(
            Instant::now() < deadline,
            "only {seen:?} of {replicas} replicas answered within {POLL:?}"
        );
        let (replica, greeting) = answer(addr).await;
        seen.insert(replica.clone());
        answers.push((replica, greeting));
    }
    answers
}

/// The replica ids of `name`'s status, sorted.
fn replica_ids(server: &Server, name: &str) -> Vec<String> {
    let mut ids: Vec<String> = status_of(server, name)
        .replicas
        .into_iter()
        .map(|r| r.replica_id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_config_reaches_each_new_replica_before_its_first_request() {
    let app = tagged(|c| {
        c.with_num_replicas(2)
            .with_user_config(json!({"greeting": "Bonjour"}))
    });
    let server = serve_on(node(), app).await;
    for (replica, greeting) in greetings_of(server.local_addr(), 2).await {
        assert_eq!(
            greeting, "Bonjour",
            "replica {replica} answered unconfigured"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_greeter_takes_its_greeting_from_user_config_and_changes_it_in_place() {
    fn greeter(user_config: Option<Value>) -> App {
        let deployment = Deployment::agent::<Greeter>();
        let deployment = match user_config {
            Some(c) => deployment.map_config(|config| config.with_user_config(c)),
            None => deployment,
        };
        App::named("greeter").deployment(deployment)
    }
    let greet = |addr| async move {
        let r = post(addr, &chat("greeter"), r#"{"data": {"name": "Ada"}}"#).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.json()["result"].clone()
    };
    let server = serve_on(node(), greeter(None)).await;
    let addr = server.local_addr();
    assert_eq!(greet(addr).await, json!({"greeting": "Hello, Ada!"}));

    let controller = server.controller();
    let config = json!({"greeting": "Bonjour"});
    controller
        .apply_app(greeter(Some(config.clone())), "/")
        .await
        .expect("an in-place update");
    assert_eq!(greet(addr).await, json!({"greeting": "Bonjour, Ada!"}));
    assert_eq!(status_of(&server, "greeter").replicas_started, 1);

    // A greeting that is not a string fails `reconfigure`: UNHEALTHY, the old greeting stays.
    controller
        .apply_app(greeter(Some(json!({"greeting": 7}))), "/")
        .await
        .expect("the update is applied; its failure is in the status");
    let s = status_of(&server, "greeter");
    assert_eq!(s.status, DeploymentState::Unhealthy, "{s:#?}");
    assert!(s.message.contains("must be a string"), "{s:#?}");
    assert_eq!(greet(addr).await, json!({"greeting": "Bonjour, Ada!"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_app_gives_running_replicas_a_new_user_config_without_a_restart() {
    let server = serve_on(
        node(),
        tagged(|c| {
            c.with_num_replicas(2)
                .with_user_config(json!({"greeting": "a"}))
        }),
    )
    .await;
    let addr = server.local_addr();
    greetings_of(addr, 2).await;
    let before = handle(&server, "tagged");
    let ids = replica_ids(&server, "tagged");
    assert_eq!(status_of(&server, "tagged").replicas_started, 2);

    server
        .controller()
        .apply_app(
            tagged(|c| {
                c.with_num_replicas(2)
                    .with_user_config(json!({"greeting": "b"}))
            }),
            "/",
        )
        .await
        .expect("an in-place update");
    // Every replica was reconfigured before `apply_app` returned.
    for (replica, greeting) in greetings_of(addr, 2).await {
        assert_eq!(greeting, "b", "replica {replica}");
    }
    assert_eq!(
        handle(&server, "tagged"),
        before,
        "the same running deployment"
    );
    assert_eq!(replica_ids(&server, "tagged"), ids, "no replica restarted");
    let s = status_of(&server, "tagged");
    assert_eq!(s.replicas_started, 2, "{s:#?}");
    assert_eq!(s.status, DeploymentState::Healthy, "{s:#?}");
    assert_eq!(
        before.config().user_config(),
        Some(&json!({"greeting": "b"}))
    );

    // A replica started later gets the new value before its first request.
    server
        .controller()
        .apply_app(
            tagged(|c| {
                c.with_num_replicas(3)
                    .with_user_config(json!({"greeting": "b"}))
            }),
            "/",
        )
        .await
        .expect("an in-place update");
    until_status(&server, "tagged", "3 running replicas", |s| {
        s.running_replicas == 3
    })
    .await;
    for (replica, greeting) in greetings_of(addr, 3).await {
        assert_eq!(greeting, "b", "replica {replica}");
    }
    assert_eq!(handle(&server, "tagged"), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_records_where_it_came_from_and_its_config() {
    let server = serve_on(
        node(),
        tagged(|c| c.with_user_config(json!({"greeting": "a"}))),
    )
    .await;
    let controller = server.controller();
    let app = controller.snapshot().application("tagged-service").cloned();
    let app = app.expect("the agent's application");
    assert_eq!(app.source(), AppSource::Imperative);
    assert_eq!(app.deployed_config(), None);
    assert!(controller.declared_application_names().is_empty());

    let config = json!({
        "name": "tagged",
        "route_prefix": "/",
        "import_path": "tests:tagged",
        "deployments": [{"name": "tagged", "user_config": {"greeting": "c"}}],
    });
    let declared = tagged(|c| c.with_user_config(json!({"greeting": "c"})));
    assert_eq!(
        rayai::Controller::published_names(&declared),
        ["tagged-service"]
    );
    let before = handle(&server, "tagged");
    controller
        .apply_app_declared(declared, "/", Default::default(), config.clone())
        .await
        .expect("an in-place update");
    let app = controller.snapshot().application("tagged-service").cloned();
    let app = app.expect("the agent's application");
    assert_eq!(app.source(), AppSource::Declarative);
    assert_eq!(app.deployed_config(), Some(&config));
    assert_eq!(controller.declared_application_names(), ["tagged-service"]);
    assert_eq!(controller.application_names(), ["tagged-service"]);
    assert_eq!(handle(&server, "tagged"), before, "updated in place");
    assert_eq!(answer(server.local_addr()).await.1, "c");
}

/// Clients sending requests to `tagged` until told to stop (each at most `MAX_REQUESTS`), and
/// what they saw.
struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    replicas: Arc<Mutex<BTreeSet<String>>>,
    clients: Vec<tokio::task::JoinHandle<Vec<(StatusCode, String)>>>,
}

/// The most requests one load client sends.
const MAX_REQUESTS: usize = 2000;

impl Load {
    /// Starts `n` clients, each sending one request at a time.
    fn start(addr: SocketAddr, n: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let replicas = Arc::new(Mutex::new(BTreeSet::new()));
        let clients = (0..n)
            .map(|_| {
                let (stop, answered, replicas) = (stop.clone(), answered.clone(), replicas.clone());
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    while seen.len() < MAX_REQUESTS && !stop.load(Ordering::SeqCst) {
                        let r = post(addr, &chat("tagged"), r#"{"data": {"ms": 2}}"#).await;
                        if r.status == StatusCode::OK {
                            let replica = r.json()["result"]["replica"].as_str().map(str::to_owned);
                            if let Some(replica) = replica {
                                replicas
                                    .lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .insert(replica);
                            }
                        }
                        answered.fetch_add(1, Ordering::SeqCst);
                        seen.push((r.status, r.body));
                    }
                    seen
                })
            })
            .collect();
        Load {
            stop,
            answered,
            replicas,
            clients,
        }
    }

    /// Waits until `more` further requests have been answered.
    async fn wait_for(&self, more: usize) {
        let target = self.answered.load(Ordering::SeqCst) + more;
        let deadline = Instant::now() + POLL;
        while self.answered.load(Ordering::SeqCst) < target {
            assert!(
                Instant::now() < deadline,
                "the load clients answered {} of {target} requests within {POLL:?}",
                self.answered.load(Ordering::SeqCst)
            );
            tokio::time::sleep(ms(5)).await;
        }
    }

    /// The replicas that answered so far.
    fn replicas(&self) -> BTreeSet<String> {
        self.replicas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops the clients; every reply they got.
    async fn finish(self) -> Vec<(StatusCode, String)> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for client in self.clients {
            all.extend(
                within(POLL, "a load client to stop", client)
                    .await
                    .expect("a client"),
            );
        }
        all
    }
}

/// Asserts that every reply was a 200, showing the first that was not.
fn assert_all_answered(replies: &[(StatusCode, String)]) {
    assert!(!replies.is_empty());
    if let Some((status, body)) = replies.iter().find(|(s, _)| *s != StatusCode::OK) {
        let failed = replies.iter().filter(|(s, _)| *s != StatusCode::OK).count();
        panic!(
            "{failed} of {} requests failed; the first: {status} {body}",
            replies.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_app_scales_in_place_under_load_and_answers_every_request() {
    let app = |n: u32| {
        tagged(move |c| {
            c.with_num_replicas(n)
                .with_user_config(json!({"greeting": "x"}))
        })
    };
    let server = serve_on(node(), app(1)).await;
    let controller = server.controller();
    let before = handle(&server, "tagged");
    let load = Load::start(server.local_addr(), 4);
    load.wait_for(20).await;

    controller
        .apply_app(app(3), "/")
        .await
        .expect("scale up in place");
    until_status(&server, "tagged", "3 running replicas", |s| {
        s.running_replicas == 3 && s.status == DeploymentState::Healthy
    })
    .await;
    let deadline = Instant::now() + POLL;
    while load.replicas().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the new replicas took no request: {:?}",
            load.replicas()
        );
        load.wait_for(4).await;
    }

    controller
        .apply_app(app(1), "/")
        .await
        .expect("scale down in place");
    until_status(&server, "tagged", "1 running replica", |s| {
        s.running_replicas == 1 && s.replicas.len() == 1
    })
    .await;
    load.wait_for(20).await;
    let replies = load.finish().await;
    assert_all_answered(&replies);

    assert_eq!(
        handle(&server, "tagged"),
        before,
        "the same running deployment"
    );
    let s = status_of(&server, "tagged");
    assert_eq!(
        s.replicas_started, 3,
        "two replicas started, none restarted: {s:#?}"
    );
    assert_eq!(s.target_replicas, 1);
    // The node got back what the stopped replicas held.
    let deadline = Instant::now() + POLL;
    while (controller.reserved().0 - 0.1).abs() > 1e-9 {
        assert!(
            Instant::now() < deadline,
            "reserved {:?}",
            controller.reserved()
        );
        tokio::time::sleep(ms(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_resources_rolls_out_a_new_version_and_answers_every_request() {
    let app = |cpus: f64| {
        tagged(move |c| {
            c.with_num_replicas(2)
                .with_num_cpus(cpus)
                .with_user_config(json!({"greeting": "x"}))
                .with_graceful_shutdown_timeout(POLL)
        })
    };
    let server = serve_on(node(), app(0.1)).await;
    let controller = server.controller();
    let before = handle(&server, "tagged");
    let load = Load::start(server.local_addr(), 4);
    load.wait_for(20).await;

    controller
        .apply_app(app(0.2), "/")
        .await
        .expect("a rolling redeploy");
    let after = handle(&server, "tagged");
    assert_ne!(after, before, "a new version");
    assert_eq!(after.config().resources().num_cpus, 0.2);
    load.wait_for(40).await;
    let replies = load.finish().await;
    assert_all_answered(&replies);
    // The old version drained and gave its resources back.
    let deadline = Instant::now() + POLL;
    while (controller.reserved().0 - 0.4).abs() > 1e-9 {
        assert!(
            Instant::now() < deadline,
            "reserved {:?}",
            controller.reserved()
        );
        tokio::time::sleep(ms(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfigure_that_fails_on_an_update_marks_the_deployment_unhealthy() {
    let app =
        |user_config: Value| tagged(move |c| c.with_num_replicas(2).with_user_config(user_config));
    let server = serve_on(node(), app(json!({"greeting": "a"}))).await;
    let addr = server.local_addr();
    let controller = server.controller();

    controller
        .apply_app(
            app(json!({"fail": "the model cannot use this prompt"})),
            "/",
        )
        .await
        .expect("the update is applied; its failure is in the status");
    let s = status_of(&server, "tagged");
    assert_eq!(s.status, DeploymentState::Unhealthy, "{s:#?}");
    assert!(
        s.message.contains("the model cannot use this prompt"),
        "{s:#?}"
    );
    assert_eq!(s.replicas_started, 2, "no replica restarted: {s:#?}");
    // The replicas keep serving with what they had, and the status stays (the control loop
    // does not clear it).
    for (_, greeting) in greetings_of(addr, 2).await {
        assert_eq!(greeting, "a");
    }
    tokio::time::sleep(ms(1100)).await;
    assert_eq!(
        status_of(&server, "tagged").status,
        DeploymentState::Unhealthy
    );

    // A good config heals it.
    controller
        .apply_app(app(json!({"greeting": "b"})), "/")
        .await
        .expect("an in-place update");
    until_status(&server, "tagged", "HEALTHY again", |s| {
        s.status == DeploymentState::Healthy && s.message.is_empty()
    })
    .await;
    for (_, greeting) in greetings_of(addr, 2).await {
        assert_eq!(greeting, "b");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfigure_that_fails_at_start_fails_the_deploy() {
    let server = crate::common::start_on(node()).await;
    let err = server
        .deploy(
            tagged(|c| c.with_user_config(json!({"fail": "no such prompt"}))),
            "/",
        )
        .await
        .expect_err("reconfigure fails at every start");
    let text = error_text(&err);
    assert!(text.contains("no such prompt"), "{text}");
    assert!(text.contains("tagged"), "{text}");
    assert!(server.status().is_empty());
    assert_eq!(server.controller().reserved().0, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_is_reconfigured_through_its_hook() {
    /// An ingress answering its message of the day, which its `user_config` sets.
    fn motd_app(motd: &str) -> App {
        let text = Arc::new(RwLock::new(String::from("unset")));
        let read = text.clone();
        let config = DeploymentConfig::new("motd")
            .with_num_cpus(0.1)
            .with_memory_bytes(16 << 20)
            .with_user_config(json!({ "motd": motd }));
        let ingress = Deployment::ingress(config, move |_ctx| {
            let read = read.clone();
            tower::service_fn(move |_req: Request<HttpBody>| {
                let text = read.read().map(|t| t.clone()).unwrap_or_default();
                async move { Ok::<_, Infallible>(Response::new(rayai::handler::full(text))) }
            })
        })
        .with_reconfigure(move |user_config| {
            let text = text.clone();
            async move {
                let motd = user_config["motd"]
                    .as_str()
                    .ok_or_else(|| AgentError::new("user_config.motd is missing"))?;
                *text.write().unwrap_or_else(PoisonError::into_inner) = motd.to_owned();
                Ok(())
            }
        });
        App::named("motd").deployment(ingress)
    }
    let server = serve_on(node(), motd_app("hello")).await;
    let addr = server.local_addr();
    assert_eq!(get(addr, "/").await.body, "hello");
    let before = handle(&server, "motd");

    server
        .controller()
        .apply_app(motd_app("goodbye"), "/")
        .await
        .expect("an in-place update");
    assert_eq!(get(addr, "/").await.body, "goodbye");
    assert_eq!(handle(&server, "motd"), before, "updated in place");

    // A new route prefix is not lightweight: a new version, served at the new prefix.
    server
        .controller()
        .apply_app(motd_app("moved"), "/motd")
        .await
        .expect("a redeploy");
    assert_ne!(handle(&server, "motd"), before);
    assert_eq!(get(addr, "/motd").await.body, "moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_limits_apply_to_the_requests_that_arrive_after_an_update() {
    let app = |ongoing: u32| {
        tagged(move |c| {
            c.with_max_ongoing_requests(ongoing)
                .with_max_queued_requests(1)
                .with_user_config(json!({"greeting": "x"}))
        })
    };
    let server = serve_on(node(), app(1)).await;
    let addr = server.local_addr();
    let before = handle(&server, "tagged");
    let gated = r#"{"data": {"gate": true}}"#;

    let first = start_post(addr, &chat("tagged"), gated);
    until_status(&server, "tagged", "1 ongoing request", |s| {
        s.replicas.iter().map(|r| r.ongoing_requests).sum::<u32>() == 1
    })
    .await;
    let second = start_post(addr, &chat("tagged"), gated);
    until_status(&server, "tagged", "1 queued request", |s| {
        s.queued_requests == 1
    })
    .await;
    let refused = post(addr, &chat("tagged"), gated).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.body
    );

    // Two at a time now: the queued request takes the new place, and the queue has room again.
    server
        .controller()
        .apply_app(app(2), "/")
        .await
        .expect("an in-place update");
    until_status(&server, "tagged", "2 ongoing requests, none queued", |s| {
        s.replicas.iter().map(|r| r.ongoing_requests).sum::<u32>() == 2 && s.queued_requests == 0
    })
    .await;
    let third = start_post(addr, &chat("tagged"), gated);
    until_status(&server, "tagged", "1 queued request", |s| {
        s.queued_requests == 1
    })
    .await;
    assert_eq!(handle(&server, "tagged"), before, "updated in place");

    GATE.add_permits(3);
    for reply in [first, second, third] {
        let reply = reply.reply().await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
}

/// Prefixes a text with the `prefix` of its `user_config`: a typed deployment.
#[deployment(num_cpus = 0.1, memory = "16MB")]
#[derive(Default)]
struct Prefixer {
    prefix: RwLock<String>,
}

impl Callable for Prefixer {
    type Request = String;
    type Response = String;

    async fn call(&self, text: String) -> Result<String, AgentError> {
        let prefix = self.prefix.read().unwrap_or_else(PoisonError::into_inner);
        Ok(format!("{prefix}{text}"))
    }

    async fn reconfigure(&self, user_config: &Value) -> Result<(), AgentError> {
        let prefix = user_config["prefix"].as_str().unwrap_or_default();
        *self.prefix.write().unwrap_or_else(PoisonError::into_inner) = prefix.to_owned();
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_deployment_is_reconfigured_in_place() {
    let app = |prefix: &str| {
        let user_config = json!({ "prefix": prefix });
        App::named("prefixing").deployment(
            Deployment::callable::<Prefixer>().map_config(|c| c.with_user_config(user_config)),
        )
    };
    let server = serve_on(node(), app("> ")).await;
    let prefixer = rayai::TypedHandle::<Prefixer>::new(handle(&server, "prefixer"));
    assert_eq!(prefixer.call("hi".to_owned()).await.unwrap(), "> hi");

    server
        .controller()
        .apply_app(app(">> "), "/")
        .await
        .expect("an in-place update");
    assert_eq!(prefixer.call("hi".to_owned()).await.unwrap(), ">> hi");
    assert_eq!(handle(&server, "prefixer"), *prefixer.handle());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_bounds_are_a_lightweight_change() {
    let server = serve_on(
        node(),
        tagged(|c| c.with_user_config(json!({"greeting": "x"}))),
    )
    .await;
    let before = handle(&server, "tagged");
    let bounds = rayai::AutoscalingConfig::new(2, 3, 2.0);
    server
        .controller()
        .apply_app(
            tagged(|c| {
                c.with_autoscaling(bounds)
                    .with_user_config(json!({"greeting": "x"}))
            }),
            "/",
        )
        .await
        .expect("an in-place update");
    until_status(&server, "tagged", "the autoscaling minimum of 2", |s| {
        s.running_replicas == 2 && s.target_replicas == 2
    })
    .await;
    assert_eq!(handle(&server, "tagged"), before, "updated in place");

    // Back to a fixed number.
    server
        .controller()
        .apply_app(
            tagged(|c| c.with_user_config(json!({"greeting": "x"}))),
            "/",
        )
        .await
        .expect("an in-place update");
    until_status(&server, "tagged", "1 replica again", |s| {
        s.running_replicas == 1 && s.target_replicas == 1
    })
    .await;
    assert_eq!(handle(&server, "tagged"), before);
    assert!(handle(&server, "tagged").config().autoscaling().is_none());
}
