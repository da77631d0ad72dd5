//! Starting up: a port in use is one error that names the address and the option that changes
//! it, for the serving port and the dashboard's alike.

use rayai::{Controller, HttpOptions, NodeResources, Server};

fn options(port: u16, dashboard_port: Option<u16>) -> HttpOptions {
    HttpOptions {
        host: "127.0.0.1".to_owned(),
        port,
        dashboard_port,
        ..HttpOptions::default()
    }
}

fn node() -> Controller {
    Controller::new(NodeResources::new(1.0, 1 << 30))
}

#[tokio::test]
async fn a_serving_port_in_use_names_the_address_and_the_option() {
    let first = Server::start_with(options(0, None), node())
        .await
        .expect("the first server starts");
    let port = first.local_addr().port();
    let err = Server::start_with(options(port, None), node())
        .await
        .expect_err("the port is taken");
    assert!(matches!(err, rayai::Error::Bind { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("--port or RAYAI_PORT"), "{text}");
    // `main` prints the cause under the message.
    assert!(format!("{err:?}").contains("Caused by:"), "{err:?}");
    first.shutdown().await;
}

#[tokio::test]
async fn a_dashboard_port_in_use_is_an_error_unless_asked_for_best_effort() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("its address").port();
    let err = Server::start_with(options(0, Some(port)), node())
        .await
        .expect_err("the dashboard's port is taken");
    let text = err.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{port} (the dashboard)")),
        "{text}"
    );
    assert!(
        text.contains("--dashboard-port or RAYAI_DASHBOARD_PORT"),
        "{text}"
    );

    let best_effort = HttpOptions {
        dashboard_best_effort: true,
        ..options(0, Some(port))
    };
    let server = Server::start_with(best_effort, node())
        .await
        .expect("serves without the dashboard");
    assert_eq!(server.dashboard_addr(), None);
    server.shutdown().await;
}
