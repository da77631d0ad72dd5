//! The gRPC listener with tonic's client, over a real socket: routing by the `application`
//! metadata, a stream cut by its deadline, a cancelled call freeing its replica at once, client
//! and bidirectional streaming (each request reaching the replica as it is sent), health through
//! the drain, and the listener's address. (The Python client covers the rest:
//! `tests/python.rs`.)

use std::time::{Duration, Instant};

use grpc::pb::greeter_client::GreeterClient;
use grpc::pb::sleeper_client::SleeperClient;
use grpc::pb::{HelloReply, HelloRequest, SleepRequest};
use rayai::{HttpOptions, Server};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A server with the example's applications, gRPC on a free port.
async fn server(drain_delay_s: f64) -> Server {
    // A node (a controller) of its own per test server: the tests run in parallel in one
    // process, and with the process's controller they would share (and shut down) each other's
    // deployments, and each other's replica metrics.
    let controller = rayai::Controller::new(rayai::NodeResources::new(64.0, 64 << 30));
    let server = Server::start_with(
        HttpOptions {
            port: 0,
            grpc_port: Some(0),
            metrics_export_port: Some(0),
            dashboard_port: None,
            drain_delay_s,
            // The health watch of a test stays open through the drain: it is ended after this.
            graceful_shutdown_timeout_s: 1.0,
            ..HttpOptions::default()
        },
        controller,
    )
    .await
    .expect("starts");
    server
        .deploy(grpc::greeter_app(), "/greeter")
        .await
        .expect("greeter");
    server
        .deploy(grpc::sleeper_app(), "/sleeper")
        .await
        .expect("sleeper");
    server
}

async fn channel(server: &Server) -> Channel {
    let addr = server.grpc_addr().expect("gRPC listens");
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connects")
}

/// The server's `/metrics` (its metrics export port), over HTTP/1.0.
async fn get_metrics(server: &Server) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = server.metrics_export_addr().expect("metrics listen");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}

/// The sum of the samples of the metric `name` whose lines contain `containing`.
fn sum_of(metrics: &str, name: &str, containing: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
                && line.contains(containing)
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A request greeting `name`.
fn hello(name: &str) -> HelloRequest {
    HelloRequest {
        name: name.to_owned(),
        ..Default::default()
    }
}

/// The next message of a stream, within 5 s.
async fn next_reply(
    stream: &mut tonic::Streaming<HelloReply>,
) -> Result<Option<HelloReply>, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the next message within 5 s")
}

/// `message` with the `application` metadata.
fn to<T>(application: &str, message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut()
        .insert("application", application.parse().unwrap());
    req
}

#[tokio::test]
async fn calls_reach_the_application_the_metadata_names() {
    let server = server(0.0).await;
    let mut greeter = GreeterClient::new(channel(&server).await);
    let reply = greeter
        .say_hello(to(
            "greeter",
            HelloRequest {
                name: "Ray".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("answered");
    assert_eq!(reply.get_ref().message, "Hello, Ray!");
    assert!(reply.get_ref().replica.starts_with("greeter#"));
    assert!(reply.metadata().get("x-request-id").is_some());
    // Two applications: without the metadata, or with an unknown one, NOT_FOUND names both.
    for req in [
        tonic::Request::new(HelloRequest::default()),
        to("nope", HelloRequest::default()),
    ] {
        let status = greeter.say_hello(req).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert!(
            status.message().contains("'greeter', 'sleeper'"),
            "{status:?}"
        );
    }
    // Labels name only what the server has: the unknown application is `<unknown>`.
    let metrics = get_metrics(&server).await;
    assert!(
        metrics.contains(
            "ray_serve_num_grpc_requests_total{application=\"greeter\",method=\"/greeter.v1.Greeter/SayHello\",status_code=\"0\"} 1"
        ),
        "{metrics}"
    );
    assert!(!metrics.contains("nope"), "{metrics}");
    assert!(metrics.contains("application=\"<unknown>\""), "{metrics}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_deadline_ends_a_stream_that_outlives_it() {
    let server = server(0.0).await;
    let mut greeter = GreeterClient::new(channel(&server).await);
    let mut req = to(
        "greeter",
        HelloRequest {
            name: "x".into(),
            count: 50,
            delay_ms: 100,
        },
    );
    req.set_timeout(Duration::from_millis(550));
    let started = Instant::now();
    let mut stream = greeter
        .say_hello_stream(req)
        .await
        .expect("opens")
        .into_inner();
    let mut received = 0;
    let status = loop {
        match stream.message().await {
            Ok(Some(_)) => received += 1,
            Ok(None) => panic!("the stream ended without its deadline"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!((2..50).contains(&received), "{received} messages");
    assert!(started.elapsed() < Duration::from_secs(3));
    server.shutdown().await;
}

#[tokio::test]
async fn a_cancelled_call_frees_its_replica_at_once() {
    let server = server(0.0).await;
    let channel = channel(&server).await;
    let mut sleeper = SleeperClient::new(channel.clone());
    // The sleeper takes one call at a time: a long one, abandoned after 200 ms...
    let long = tokio::spawn({
        let mut sleeper = sleeper.clone();
        async move {
            sleeper
                .sleep(to("sleeper", SleepRequest { ms: 5_000 }))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    long.abort();
    // ...must not hold the replica: the next call runs at once.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let reply = sleeper
        .sleep(to("sleeper", SleepRequest { ms: 10 }))
        .await
        .expect("answered");
    assert_eq!(reply.get_ref().slept_ms, 10);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the cancelled call still held the replica: {:?}",
        started.elapsed()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn client_streaming_greets_every_name_from_one_replica() {
    let server = server(0.0).await;
    let mut greeter = GreeterClient::new(channel(&server).await);
    let names = ["a", "b", "c"].map(hello);
    let reply = greeter
        .say_hello_to_all(to("greeter", futures::stream::iter(names)))
        .await
        .expect("answered")
        .into_inner();
    assert_eq!(reply.message, "Hello, a, b and c!");
    assert!(reply.replica.starts_with("greeter#"), "{reply:?}");
    // None: the world; one name too long: INVALID_ARGUMENT, for the whole call.
    let none = greeter
        .say_hello_to_all(to("greeter", futures::stream::iter(Vec::new())))
        .await
        .expect("answered");
    assert_eq!(none.get_ref().message, "Hello, world!");
    let long = greeter
        .say_hello_to_all(to(
            "greeter",
            futures::stream::iter([hello("a"), hello(&"x".repeat(1001))]),
        ))
        .await
        .unwrap_err();
    assert_eq!(long.code(), Code::InvalidArgument, "{long:?}");
    // One request past the bound: RESOURCE_EXHAUSTED.
    let requests = (0..=grpc::MAX_MESSAGES).map(|_| hello("a"));
    let many = greeter
        .say_hello_to_all(to("greeter", futures::stream::iter(requests)))
        .await
        .unwrap_err();
    assert_eq!(many.code(), Code::ResourceExhausted, "{many:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn bidirectional_streaming_answers_each_request_as_it_comes() {
    let server = server(0.0).await;
    let mut greeter = GreeterClient::new(channel(&server).await);
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let mut replies = greeter
        .chat(to("greeter", rx))
        .await
        .expect("opens")
        .into_inner();
    // Each request is sent only once the previous one's reply is in: nothing between the client
    // and the replica may wait for the request stream to end.
    let mut replicas = Vec::new();
    for name in ["a", "b", "c"] {
        tx.unbounded_send(hello(name)).expect("sent");
        let reply = next_reply(&mut replies)
            .await
            .expect("a reply")
            .expect("before the end");
        assert_eq!(reply.message, format!("Hello, {name}!"));
        replicas.push(reply.replica);
    }
    assert!(replicas.iter().all(|r| *r == replicas[0]), "{replicas:?}");
    assert!(replicas[0].starts_with("greeter#"), "{replicas:?}");
    // The client closes its side: the stream ends, OK.
    drop(tx);
    assert!(next_reply(&mut replies).await.expect("OK").is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_request_ends_a_bidirectional_stream() {
    let server = server(0.0).await;
    let mut greeter = GreeterClient::new(channel(&server).await);
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let mut replies = greeter
        .chat(to("greeter", rx))
        .await
        .expect("opens")
        .into_inner();
    tx.unbounded_send(hello("a")).expect("sent");
    let first = next_reply(&mut replies).await.expect("a reply");
    assert_eq!(first.expect("a message").message, "Hello, a!");
    tx.unbounded_send(hello(&"x".repeat(1001))).expect("sent");
    let status = next_reply(&mut replies).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(status.message(), "name: at most 1000 bytes");
    server.shutdown().await;
}

#[tokio::test]
async fn a_cancelled_bidirectional_call_frees_its_replica_slot() {
    const PROCESSING: &str = "ray_serve_replica_processing_queries";
    const ONGOING: &str = "ray_serve_num_ongoing_grpc_requests";
    let server = server(0.0).await;
    let mut greeter = GreeterClient::new(channel(&server).await);
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let mut replies = greeter
        .chat(to("greeter", rx))
        .await
        .expect("opens")
        .into_inner();
    tx.unbounded_send(hello("a")).expect("sent");
    assert!(next_reply(&mut replies).await.expect("a reply").is_some());
    // The open call holds one slot of a greeter replica...
    let metrics = get_metrics(&server).await;
    assert_eq!(
        sum_of(&metrics, PROCESSING, "application=\"greeter\""),
        1.0,
        "{metrics}"
    );
    // ...until the client drops the call: its response stream, then its request stream. (tonic's
    // client, hyper's, resets an answered stream only once it has no use for either half: while
    // the request stream is open, a dropped response stream alone reaches no server. grpcio's
    // `cancel()` resets it at once: `tests/client.py`.)
    drop(replies);
    drop(tx);
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = get_metrics(&server).await;
        let (processing, ongoing) = (
            sum_of(&metrics, PROCESSING, "application=\"greeter\""),
            sum_of(&metrics, ONGOING, ""),
        );
        let cancelled = metrics.contains(
            "ray_serve_num_grpc_requests_total{application=\"greeter\",method=\"/greeter.v1.Greeter/Chat\",status_code=\"1\"} 1",
        );
        if processing == 0.0 && ongoing == 0.0 && cancelled {
            break;
        }
        assert!(
            Instant::now() < until,
            "5 s after the cancel: {PROCESSING} {processing}, {ONGOING} {ongoing}, \
             CANCELLED counted {cancelled}:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn health_is_serving_until_the_drain() {
    let server = server(1.0).await;
    let channel = channel(&server).await;
    let mut health = HealthClient::new(channel.clone());
    let check = |service: &str| HealthCheckRequest {
        service: service.to_owned(),
    };
    for service in ["", "rayai.v1.Agents", "greeter.v1.Greeter"] {
        let status = health.check(check(service)).await.expect("checked");
        assert_eq!(
            status.get_ref().status,
            ServingStatus::Serving as i32,
            "{service}"
        );
    }
    let unknown = health.check(check("nope")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let mut watch = health.watch(check("")).await.expect("watches").into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    // The drain (1 s): health turns NOT_SERVING and new calls are refused as UNAVAILABLE.
    let stopping = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown().await }
    });
    let next = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("the watch sees the drain")
        .unwrap()
        .unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    let mut greeter = GreeterClient::new(channel);
    let refused = greeter
        .say_hello(to("greeter", HelloRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    stopping.await.unwrap();
}

/// Answers the multiplexed model id of its request.
#[rayai::agent(num_cpus = 0.1, memory = "32MB")]
#[derive(Default)]
struct WhichModel;

impl rayai::Agent for WhichModel {
    async fn run(&self, _data: rayai::Value) -> Result<rayai::Value, rayai::AgentError> {
        let ctx = rayai::RequestContext::current().expect("inside a request");
        Ok(rayai::json!({ "model": ctx.multiplexed_model_id() }))
    }
}

#[tokio::test]
async fn the_multiplexed_model_id_metadata_reaches_the_agent() {
    use rayai::grpc::pb::ChatRequest;
    use rayai::grpc::pb::agents_client::AgentsClient;

    let server = server(0.0).await;
    server
        .deploy(rayai::App::named("which").agent::<WhichModel>(), "/which")
        .await
        .expect("deploys");
    let mut agents = AgentsClient::new(channel(&server).await);
    let call = |model: Option<&str>| {
        let mut req = tonic::Request::new(ChatRequest {
            agent: "which_model".to_owned(),
            data_json: "{}".to_owned(),
            ..ChatRequest::default()
        });
        if let Some(model) = model {
            req.metadata_mut()
                .insert("multiplexed_model_id", model.parse().expect("ASCII"));
        }
        req
    };
    let reply = agents
        .chat(call(Some("adapter-9")))
        .await
        .expect("answers")
        .into_inner();
    assert_eq!(reply.result_json, r#"{"model":"adapter-9"}"#);
    let reply = agents.chat(call(None)).await.expect("answers").into_inner();
    assert_eq!(reply.result_json, r#"{"model":""}"#);
    let long = "m".repeat(600);
    let refused = agents.chat(call(Some(&long))).await.expect_err("too long");
    assert_eq!(refused.code(), Code::InvalidArgument);
    server.shutdown().await;
}
