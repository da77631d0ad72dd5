//! `rayai status`: a running server's deployments and replicas, from its status API
//! (`GET /api/serve/applications` on the dashboard port).

use std::error::Error;
use std::io::ErrorKind;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use super::CliResult;

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The server's dashboard address.
    #[arg(long, default_value = "http://127.0.0.1:8265")]
    address: String,
    /// The dashboard's bearer token, if it asks for one [default: $RAYAI_DASHBOARD_TOKEN].
    #[arg(long)]
    token: Option<String>,
}

/// How long to wait for a TCP connection, to each of the address's IPs.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the whole answer once connected.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn status(args: &StatusArgs) -> CliResult {
    let address = args.address.trim_end_matches('/');
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var("RAYAI_DASHBOARD_TOKEN").ok())
        .filter(|t| !t.is_empty());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start tokio: {e}"))?;
    let json = runtime.block_on(applications(address, token.as_deref()))?;
    print!("{}", render(&json));
    Ok(ExitCode::SUCCESS)
}

/// `GET {address}/api/serve/applications`, as JSON.
async fn applications(address: &str, token: Option<&str>) -> Result<Value, String> {
    let (status, body) = get(address, "/api/serve/applications", token, RESPONSE_TIMEOUT).await?;
    if status == 404 {
        return Err(format!(
            "{address} answers, but has no status API (/api/serve/applications is a 404): is it a rayai dashboard?"
        ));
    }
    if status == 401 {
        return Err(match token {
            None => format!(
                "{address} asks for a dashboard token: pass --token or set RAYAI_DASHBOARD_TOKEN"
            ),
            Some(_) => format!("{address} does not accept this dashboard token (401)"),
        });
    }
    if status != 200 {
        return Err(format!(
            "{address}/api/serve/applications answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    serde_json::from_slice(&body)
        .map_err(|e| format!("{address}/api/serve/applications is not JSON: {e}"))
}

/// The deployments table, then one table of replicas per deployment.
fn render(json: &Value) -> String {
    let empty = serde_json::Map::new();
    let apps = json["applications"].as_object().unwrap_or(&empty);
    if apps.is_empty() {
        return "No applications are running.\n".to_owned();
    }
    let s = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut deployments = vec![row(&[
        "APPLICATION",
        "ROUTE",
        "DEPLOYMENT",
        "STATUS",
        "REPLICAS",
        "QUEUED",
        "MESSAGE",
    ])];
    let mut replicas = vec![row(&[
        "DEPLOYMENT",
        "REPLICA",
        "STATE",
        "ONGOING",
        "SERVED",
        "GPUS",
        "STARTS",
        "LAST ERROR",
    ])];
    for (app_name, app) in apps {
        let empty = serde_json::Map::new();
        for (name, d) in app["deployments"].as_object().unwrap_or(&empty) {
            deployments.push(vec![
                app_name.clone(),
                s(&app["route_prefix"]),
                name.clone(),
                s(&d["status"]),
                format!("{}/{}", s(&d["running_replicas"]), s(&d["target_replicas"])),
                s(&d["queued_requests"]),
                s(&d["message"]),
            ]);
            for r in d["replicas"].as_array().into_iter().flatten() {
                let gpus = match r["gpu_ids"].as_array() {
                    Some(ids) if !ids.is_empty() => {
                        ids.iter().map(&s).collect::<Vec<_>>().join(",")
                    }
                    _ => "-".to_owned(),
                };
                replicas.push(vec![
                    name.clone(),
                    s(&r["replica_id"]),
                    s(&r["state"]),
                    s(&r["ongoing_requests"]),
                    s(&r["served"]),
                    gpus,
                    s(&r["starts"]),
                    s(&r["last_error"]),
                ]);
            }
        }
    }
    let mut out = table(&deployments);
    if replicas.len() > 1 {
        out.push('\n');
        out += &table(&replicas);
    }
    out
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out += line.join("  ").trim_end();
        out.push('\n');
    }
    out
}

/// `GET {address}{path}` over HTTP/1.1, with `Authorization: Bearer {token}` if there is one: the
/// status code and the whole body, within `CONNECT_TIMEOUT` per address and then `timeout`.
async fn get(
    address: &str,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let Some(authority) = address.strip_prefix("http://") else {
        return Err(format!(
            "{address} is not an http:// address (e.g. http://127.0.0.1:8265)"
        ));
    };
    let (authority, base) = match authority.find('/') {
        Some(i) => authority.split_at(i),
        None => (authority, ""),
    };
    let host_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let invalid = |e: &dyn std::fmt::Display| format!("{address} is not a valid address: {e}");
    let uri: Uri = format!("{base}{path}").parse().map_err(|e| invalid(&e))?;
    let host = HeaderValue::from_str(authority).map_err(|e| invalid(&e))?;
    let mut request = Request::get(uri)
        .header(header::HOST, host)
        .header(header::ACCEPT, "application/json");
    if let Some(token) = token {
        let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the dashboard token is not a valid header value".to_owned())?;
        request = request.header(header::AUTHORIZATION, bearer);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| invalid(&e))?;

    let addrs: Vec<_> = tokio::net::lookup_host(&host_port)
        .await
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .collect();
    let mut stream = None;
    let mut last_err = None;
    for addr in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                stream = Some(s);
                break;
            }
            Ok(Err(e)) => last_err = Some(e),
            Err(_) => {
                last_err = Some(std::io::Error::new(
                    ErrorKind::TimedOut,
                    format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
                ));
            }
        }
    }
    let stream = match (stream, last_err) {
        (Some(s), _) => s,
        (None, Some(e)) if e.kind() == ErrorKind::ConnectionRefused => {
            return Err(format!(
                "nothing is running at {address} (connection refused); start a server with \
                 `rayai serve`, or pass its dashboard address with --address"
            ));
        }
        (None, Some(e)) => return Err(format!("cannot connect to {address}: {e}")),
        (None, None) => return Err(format!("{authority} resolves to no address")),
    };

    let talking = |e: hyper::Error| {
        if e.is_parse() {
            format!("{address} did not answer with HTTP")
        } else {
            format!("talking to {address}: {}", with_sources(&e))
        }
    };
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(talking)?;
    let connection = tokio::spawn(connection);
    let exchange = async {
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body.to_vec()))
    };
    let answer = tokio::time::timeout(timeout, exchange).await;
    connection.abort();
    match answer {
        Ok(answer) => answer.map_err(talking),
        Err(_) => Err(format!(
            "talking to {address}: no whole answer within {} s",
            timeout.as_secs_f64()
        )),
    }
}

/// An error and its sources, `: `-separated (hyper's own message leaves out the I/O error's).
fn with_sources(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out += &format!(": {s}");
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper::{Response, server};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    use super::*;

    #[test]
    fn renders_deployments_and_replicas() {
        let json = serde_json::json!({"applications": {"default": {"name": "default", "route_prefix": "/",
            "status": "RUNNING", "deployments": {"echo": {"name": "echo", "status": "HEALTHY", "message": "",
            "target_replicas": 2, "running_replicas": 2, "queued_requests": 0, "replicas_started": 2,
            "replicas": [{"replica_id": "echo#0", "state": "RUNNING", "ongoing_requests": 1, "served": 7,
            "gpu_ids": [], "starts": 1, "last_error": null}]}}}}});
        let out = render(&json);
        assert!(out.contains("DEPLOYMENT"), "{out}");
        let line = out.lines().find(|l| l.starts_with("default")).unwrap();
        assert!(
            line.contains("echo") && line.contains("HEALTHY") && line.contains("2/2"),
            "{out}"
        );
        assert!(
            out.lines()
                .any(|l| l.contains("echo#0") && l.contains("RUNNING")),
            "{out}"
        );
        assert_eq!(
            render(&serde_json::json!({"applications": {}})),
            "No applications are running.\n"
        );
    }

    /// Serves one connection on 127.0.0.1:0 with hyper, answering `status` and `body` (JSON);
    /// hands back the address and, once asked, the request's path and `Authorization` header.
    async fn serve_once(
        status: u16,
        body: &'static str,
    ) -> (String, oneshot::Receiver<(String, Option<String>)>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        let tx = Mutex::new(Some(tx));
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let service = service_fn(move |req: Request<Incoming>| {
                let auth = req.headers().get(header::AUTHORIZATION);
                let seen = (
                    req.uri().to_string(),
                    auth.map(|v| v.to_str().unwrap().to_owned()),
                );
                if let Some(tx) = tx.lock().unwrap().take() {
                    let _ = tx.send(seen);
                }
                async move {
                    Response::builder()
                        .status(status)
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Full::new(Bytes::from_static(body.as_bytes())))
                }
            });
            let _ = server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        (address, rx)
    }

    /// Serves one connection on 127.0.0.1:0 by writing `raw` once the request's head is in, then
    /// closing it, or holding it open a while if not `close`.
    async fn serve_raw(raw: &'static [u8], close: bool) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(raw).await;
            if !close {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        });
        address
    }

    #[tokio::test]
    async fn gets_json_with_the_token_from_a_hyper_server() {
        let (address, seen) = serve_once(200, r#"{"applications": {}}"#).await;
        let json = applications(&format!("{address}/base"), Some("s3cret"))
            .await
            .unwrap();
        assert_eq!(json, serde_json::json!({"applications": {}}));
        let (path, auth) = seen.await.unwrap();
        assert_eq!(path, "/base/api/serve/applications");
        assert_eq!(auth.as_deref(), Some("Bearer s3cret"));

        let (address, seen) = serve_once(200, "{}").await;
        applications(&address, None).await.unwrap();
        assert_eq!(seen.await.unwrap().1, None);
    }

    #[tokio::test]
    async fn reads_a_chunked_answer() {
        let address = serve_raw(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
            true,
        )
        .await;
        let answer = get(&address, "/x", None, RESPONSE_TIMEOUT).await;
        assert_eq!(answer, Ok((200, b"{\"a\":1}".to_vec())));
    }

    #[tokio::test]
    async fn explains_what_is_not_a_status_api() {
        let (address, _) = serve_once(404, "").await;
        let err = applications(&address, None).await.unwrap_err();
        assert!(err.contains("has no status API"), "{err}");

        let (address, _) = serve_once(401, r#"{"detail": "A dashboard token is required."}"#).await;
        let err = applications(&address, None).await.unwrap_err();
        assert!(
            err.contains("pass --token or set RAYAI_DASHBOARD_TOKEN"),
            "{err}"
        );
        let (address, _) = serve_once(401, "").await;
        let err = applications(&address, Some("wrong")).await.unwrap_err();
        assert!(
            err.contains("does not accept this dashboard token"),
            "{err}"
        );

        let (address, _) = serve_once(500, r#"{"detail": "boom"}"#).await;
        let err = applications(&address, None).await.unwrap_err();
        assert!(
            err.ends_with(r#"answered 500: {"detail": "boom"}"#),
            "{err}"
        );

        let (address, _) = serve_once(200, "<html>").await;
        let err = applications(&address, None).await.unwrap_err();
        assert!(err.contains("is not JSON"), "{err}");

        let address = serve_raw(b"SSH-2.0-OpenSSH_9.6\r\n", true).await;
        let err = applications(&address, None).await.unwrap_err();
        assert_eq!(err, format!("{address} did not answer with HTTP"));

        let err = applications("https://127.0.0.1:8265", None)
            .await
            .unwrap_err();
        assert!(err.contains("is not an http:// address"), "{err}");
    }

    #[tokio::test]
    async fn gives_up_on_a_server_that_does_not_answer() {
        // The head promises 10 bytes, 2 come, and the connection stays open.
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}";
        let address = serve_raw(raw, false).await;
        let err = get(&address, "/x", None, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            format!("talking to {address}: no whole answer within 0.2 s")
        );
        // Or closes: hyper tells.
        let address = serve_raw(raw, true).await;
        let err = get(&address, "/x", None, RESPONSE_TIMEOUT)
            .await
            .unwrap_err();
        assert!(err.starts_with(&format!("talking to {address}: ")), "{err}");
    }

    #[test]
    fn refused_connection_says_nothing_is_running() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let args = StatusArgs {
            address: format!("http://127.0.0.1:{port}/"),
            token: None,
        };
        let err = status(&args).unwrap_err();
        assert!(err.contains("nothing is running"), "{err}");
    }
}
