//! A small HTTP/1.1 client for the commands that talk to a running server's dashboard: one
//! request, one whole answer, bounded in time.

use std::error::Error;
use std::io::ErrorKind;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long to wait for a TCP connection, to each of the address's IPs.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `method {address}{path}` with a JSON `body` and `Authorization: Bearer {token}` if there is
/// one: the status code and the whole answer's body, within `timeout` once connected.
pub(crate) async fn send(
    method: Method,
    address: &str,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
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
    let uri: Uri = format!("{}{path}", base.trim_end_matches('/'))
        .parse()
        .map_err(|e| invalid(&e))?;
    let host = HeaderValue::from_str(authority).map_err(|e| invalid(&e))?;
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, host)
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the token is not a valid header value".to_owned())?;
        request = request.header(header::AUTHORIZATION, bearer);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
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
                 `rayai serve`, or pass its dashboard with --dashboard-port PORT or --address URL"
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
