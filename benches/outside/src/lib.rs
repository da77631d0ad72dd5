//! What the benchmark's bare servers (`baseline`, `hop-floor`, `grpc-baseline`) share: a
//! listener on loopback that says where it serves, an accept loop, and the signal that stops
//! them.

use std::future::Future;

use tokio::net::{TcpListener, TcpStream};

/// Binds `127.0.0.1:<port>` (0 picks a free one) and prints `<name> on http://<addr> (pid
/// <pid>)`, the line the benchmark and its tests wait for.
///
/// # Panics
///
/// When the port cannot be bound.
pub async fn listen(name: &str, port: u16) -> TcpListener {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("binding 127.0.0.1:{port}: {e}"));
    let addr = listener.local_addr().expect("a local address");
    println!("{name} on http://{addr} (pid {})", std::process::id());
    listener
}

/// Accepts connections (`TCP_NODELAY`) and serves each with `serve` in a task of its own,
/// until SIGTERM or Ctrl-C.
pub async fn serve_until_stopped<F, Fut>(listener: TcpListener, serve: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let accept = async {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve(stream));
        }
    };
    tokio::select! {
        () = accept => {}
        () = stop_signal() => {}
    }
}

/// Resolves on SIGTERM or Ctrl-C.
///
/// # Panics
///
/// When the SIGTERM handler cannot be installed.
pub async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
