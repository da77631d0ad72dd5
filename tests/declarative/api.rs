//! The API's answers: what a config may say, what it may not (each a 400 naming the field), and
//! deleting applications.

use http::{Method, StatusCode};
use rayai::HttpOptions;
use rayai::prelude::*;

use crate::{Hello, assert_detail, call, delete, post, put, server, server_with};

#[tokio::test]
async fn an_unknown_import_path_is_a_400_listing_the_known_ones() {
    let server = server().await;
    server
        .deploy(App::named("greeter").agent::<Hello>(), "/")
        .await
        .expect("the code's app deploys");
    let reply = put(
        &server,
        &json!({"applications": [{"name": "shop", "import_path": "shop.main:app"}]}),
    )
    .await;
    assert_detail(
        &reply,
        StatusCode::BAD_REQUEST,
        &[
            "applications[0].import_path",
            "\"shop.main:app\"",
            // Registered, deployed in code, and the binary's agents.
            "composition:app",
            "greeter",
            "agents:hello",
        ],
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_field_is_a_400_with_its_path_and_nothing_changes() {
    let server = server().await;
    let app = |deployments: Value| {
        json!({"applications": [{"name": "hello", "import_path": "agents:hello",
            "deployments": deployments}]})
    };
    let cases = [
        (
            app(json!([{"name": "hello", "num_replicas": 0}])),
            vec!["applications[0].deployments[0].num_replicas", ">= 1"],
        ),
        (
            app(json!([{"name": "hello", "num_replica": 2}])),
            vec![
                "applications[0].deployments[0]",
                "unknown field `num_replica`",
            ],
        ),
        (
            app(json!([{"name": "hello", "ray_actor_options": {"num_cpus": 0}}])),
            vec![
                "applications[0].deployments[0].ray_actor_options.num_cpus",
                "greater than 0",
            ],
        ),
        (
            app(
                json!([{"name": "hello", "autoscaling_config": {"min_replicas": 3, "max_replicas": 2}}]),
            ),
            vec!["applications[0].deployments[0].autoscaling_config.max_replicas"],
        ),
        (
            app(json!([{"name": "hello", "user_config": [1, 2]}])),
            vec!["applications[0].deployments[0].user_config", "object"],
        ),
        (
            app(
                json!([{"name": "hello", "num_replicas": 2, "autoscaling_config": {"max_replicas": 2}}]),
            ),
            vec!["applications[0].deployments[0].num_replicas", "not allowed"],
        ),
        // A deployment the application does not have: the ones it has.
        (
            app(json!([{"name": "nope", "num_replicas": 2}])),
            vec![
                "applications[0].deployments[0].name",
                "`nope`",
                "its deployments are: hello",
            ],
        ),
        (
            json!({"applications": [{"import_path": "agents:hello", "route_prefix": "/x/"}]}),
            vec!["applications[0].route_prefix"],
        ),
        (
            json!({"applications": [{"import_path": "agents:hello"}, {"import_path": "agents:hello", "route_prefix": "/b"}]}),
            vec!["applications[1].name", "unique"],
        ),
        (
            json!({"applications": [{"import_path": "agents:hello", "port": 8000}]}),
            vec!["applications[0].port", "http_options"],
        ),
        (
            json!({"applications": [], "http_options": {"port": 1}}),
            vec!["http_options.port", "cannot change on a running server"],
        ),
        (json!({"apps": []}), vec!["missing field `applications`"]),
    ];
    for (config, needles) in cases {
        let reply = put(&server, &config).await;
        assert_detail(&reply, StatusCode::BAD_REQUEST, &needles);
    }
    let reply = call(
        &server,
        Method::PUT,
        "/api/serve/applications",
        "{not json",
        None,
    )
    .await;
    assert_detail(&reply, StatusCode::BAD_REQUEST, &["key must be a string"]);
    // Nothing was deployed by any of them.
    assert!(
        server
            .controller()
            .snapshot()
            .applications()
            .next()
            .is_none()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn http_options_equal_to_the_server_s_and_ray_s_other_keys_are_accepted() {
    let server = server().await;
    let port = server.local_addr().port();
    let config = json!({
        "proxy_location": "EveryNode",
        "http_options": {"host": "127.0.0.1", "port": port, "keep_alive_timeout_s": 90},
        "grpc_options": {"port": 9000, "grpc_servicer_functions": []},
        "logging_config": {"encoding": "TEXT", "log_level": "INFO"},
        "a_key_of_a_newer_ray": true,
        "applications": [{"name": "hello", "route_prefix": "/", "import_path": "agents:hello",
            "runtime_env": {}, "args": {},
            "deployments": [{"name": "hello-deployment", "max_ongoing_requests": 7,
                "ray_actor_options": {"num_cpus": 0.2, "memory": 33554432}}]}]
    });
    let reply = put(&server, &config).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.json()["applied"], json!(["hello"]), "{reply:?}");
    let hello = server.deployment("hello").expect("hello runs");
    assert_eq!(hello.config().max_ongoing_requests(), 7);
    assert_eq!(hello.config().resources().num_cpus, 0.2);
    assert_eq!(hello.config().resources().memory_bytes, 32 << 20);
    let reply = post(
        &server,
        "/agents/hello/chat",
        r#"{"data": {"name": "ray"}}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.json()["result"], json!({"hello": "ray"}));
    server.shutdown().await;
}

#[tokio::test]
async fn delete_removes_one_application_or_every_declarative_one() {
    let server = server().await;
    // Deployed in code: no config lists it, no DELETE of the whole set touches it.
    server
        .deploy(App::named("code").agent::<Hello>(), "/code")
        .await
        .expect("the code's app deploys");
    let config = json!({"applications": [
        {"name": "composition", "route_prefix": "/comp", "import_path": "composition:app"},
    ]});
    let reply = put(&server, &config).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let pipeline = r#"{"text": "a b c"}"#;
    assert_eq!(
        post(&server, "/comp/pipeline", pipeline).await.status,
        StatusCode::OK
    );
    let chat = r#"{"data": {"name": "x"}}"#;
    assert_eq!(
        post(&server, "/code/agents/hello/chat", chat).await.status,
        StatusCode::OK
    );

    // One application, by name (with or without the trailing slash): its routes are gone.
    let reply = delete(&server, "/api/serve/applications/composition/").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.json()["deleted"], json!(["composition"]), "{reply:?}");
    assert_eq!(
        post(&server, "/comp/pipeline", pipeline).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post(&server, "/code/agents/hello/chat", chat).await.status,
        StatusCode::OK
    );
    let reply = delete(&server, "/api/serve/applications/composition").await;
    assert_detail(
        &reply,
        StatusCode::NOT_FOUND,
        &["no application named `composition`"],
    );

    // The whole set: declarative ones only.
    let reply = put(&server, &config).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let reply = delete(&server, "/api/serve/applications").await;
    assert_eq!(reply.json()["deleted"], json!(["composition"]), "{reply:?}");
    assert_eq!(
        post(&server, "/comp/pipeline", pipeline).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post(&server, "/code/agents/hello/chat", chat).await.status,
        StatusCode::OK
    );

    // An application in code can be deleted by its name too (what `/-/routes` shows).
    let reply = delete(&server, "/api/serve/applications/hello-service").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(
        post(&server, "/code/agents/hello/chat", chat).await.status,
        StatusCode::NOT_FOUND
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_config_replaces_the_set_of_declarative_applications() {
    let server = server().await;
    let both = json!({"applications": [
        {"name": "hello", "import_path": "agents:hello"},
        {"name": "composition", "route_prefix": "/comp", "import_path": "composition:app"},
    ]});
    assert_eq!(put(&server, &both).await.status, StatusCode::OK);
    let chat = r#"{"data": {}}"#;
    assert_eq!(
        post(&server, "/agents/hello/chat", chat).await.status,
        StatusCode::OK
    );
    let only_hello = json!({"applications": [{"name": "hello", "import_path": "agents:hello"}]});
    let reply = put(&server, &only_hello).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.json()["deleted"], json!(["composition"]), "{reply:?}");
    let pipeline = r#"{"text": "a"}"#;
    assert_eq!(
        post(&server, "/comp/pipeline", pipeline).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post(&server, "/agents/hello/chat", chat).await.status,
        StatusCode::OK
    );
    // A route another application holds (hello's agent route): 409, and hello keeps serving.
    let conflict = json!({"applications": [
        {"name": "hello", "import_path": "agents:hello"},
        {"name": "composition", "route_prefix": "/agents/hello", "import_path": "composition:app"},
    ]});
    let reply = put(&server, &conflict).await;
    assert_detail(&reply, StatusCode::CONFLICT, &["composition"]);
    assert_eq!(
        post(&server, "/agents/hello/chat", chat).await.status,
        StatusCode::OK
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_api_is_guarded_bounded_and_answers_other_methods_with_405() {
    let server = server_with(HttpOptions {
        dashboard_token: Some("s3cret".to_owned()),
        max_body_bytes: 1024,
        ..HttpOptions::default()
    })
    .await;
    let config = json!({"applications": [{"name": "hello", "import_path": "agents:hello"}]});
    let body = config.to_string();
    let path = "/api/serve/applications/";
    let reply = call(&server, Method::PUT, path, &body, None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    let reply = call(&server, Method::DELETE, path, "", Some("wrong")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    assert!(
        server
            .controller()
            .snapshot()
            .applications()
            .next()
            .is_none()
    );

    let big = format!(
        "{{\"applications\": [], \"pad\": \"{}\"}}",
        "x".repeat(2048)
    );
    let reply = call(&server, Method::PUT, path, &big, Some("s3cret")).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{reply:?}");
    let reply = call(&server, Method::POST, path, &body, Some("s3cret")).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{reply:?}");

    let reply = call(&server, Method::PUT, path, &body, Some("s3cret")).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    server.shutdown().await;
}
