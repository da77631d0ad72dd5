//! HTTPS: the server speaks TLS from a certificate and key file, HTTP/1.1 and h2 by ALPN.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rayai::handler::full;
use rayai::prelude::*;
use rayai::{Controller, HttpOptions, NodeResources, Request, Response, Server};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// Answers `hello over tls`.
#[deployment(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
#[derive(Default)]
struct Hello;

impl Handler for Hello {
    async fn call(&self, _req: Request) -> Response {
        Response::new(full("hello over tls"))
    }
}

/// A self-signed certificate for `localhost`, written as PEM files; the DER for the client.
fn certificate(
    dir: &std::path::Path,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    CertificateDer<'static>,
) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    (cert, key, generated.cert.der().clone())
}

/// A server on a free port speaking TLS with `cert` and `key`, serving [`Hello`] at `/`.
async fn tls_server(cert: std::path::PathBuf, key: std::path::PathBuf) -> Server {
    let options = HttpOptions {
        port: 0,
        dashboard_port: None,
        tls_cert_path: Some(cert),
        tls_key_path: Some(key),
        ..HttpOptions::default()
    };
    let server = Server::start_with(options, Controller::new(NodeResources::new(8.0, 8 << 30)))
        .await
        .unwrap();
    server.deploy(Hello::deployment(), "/").await.unwrap();
    server
}

/// A TLS client that trusts `ca` and offers `alpn`.
fn connector(ca: CertificateDer<'static>, alpn: &[u8]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A fresh directory of this process for the test `name`.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rayai-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_http1_and_h2_by_alpn() {
    let dir = temp_dir("alpn");
    let (cert, key, der) = certificate(&dir);
    let server = tls_server(cert, key).await;
    let addr = server.local_addr();

    // HTTP/1.1
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connector(der.clone(), b"http/1.1")
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "hello over tls"
    );

    // h2
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connector(der, b"h2")
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://localhost/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "hello over tls"
    );
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_tls_port_is_refused_and_the_server_keeps_serving() {
    let dir = temp_dir("plain");
    let (cert, key, der) = certificate(&dir);
    let server = tls_server(cert, key).await;
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(read.is_ok(), "the connection is closed, not left hanging");
    assert!(!text.contains("hello over tls"), "{text}");
    // A TLS client still gets its answer.
    let tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    let tls = connector(der, b"http/1.1")
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(send.send_request(req).await.unwrap().status(), 200);
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn missing_or_unreadable_tls_files_fail_at_start_with_the_path() {
    let missing = HttpOptions {
        port: 0,
        dashboard_port: None,
        tls_cert_path: Some("/nonexistent/cert.pem".into()),
        tls_key_path: Some("/nonexistent/key.pem".into()),
        ..HttpOptions::default()
    };
    let err = Server::start_with(missing, Controller::new(NodeResources::new(1.0, 1 << 30)))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    let half = HttpOptions {
        port: 0,
        dashboard_port: None,
        tls_cert_path: Some("/tmp/cert.pem".into()),
        ..HttpOptions::default()
    };
    let err = Server::start_with(half, Controller::new(NodeResources::new(1.0, 1 << 30)))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("tls_key_path"), "{err}");
}
