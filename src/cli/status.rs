//! `rayai status`: a running server's deployments and replicas, from its status API
//! (`GET /api/serve/applications` on the dashboard port).

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use super::CliResult;

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The server's dashboard address.
    #[arg(long, default_value = "http://127.0.0.1:8265")]
    address: String,
}

pub(crate) fn status(args: &StatusArgs) -> CliResult {
    let address = args.address.trim_end_matches('/');
    let (status, body) = get(address, "/api/serve/applications")?;
    if status == 404 {
        return Err(format!(
            "{address} answers, but has no status API (/api/serve/applications is a 404): is it a rayai dashboard?"
        ));
    }
    if status != 200 {
        return Err(format!(
            "{address}/api/serve/applications answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    let json: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("{address}/api/serve/applications is not JSON: {e}"))?;
    print!("{}", render(&json));
    Ok(ExitCode::SUCCESS)
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

/// `GET {address}{path}` over HTTP/1.1: the status code and the body.
fn get(address: &str, path: &str) -> Result<(u16, Vec<u8>), String> {
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
    let not_running = || {
        format!(
            "nothing is running at {address} (connection refused); start a server with `rayai serve`, \
             or pass its dashboard address with --address"
        )
    };
    let addrs: Vec<_> = host_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .collect();
    let mut stream = None;
    let mut last_err = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let mut stream = match (stream, last_err) {
        (Some(s), _) => s,
        (None, Some(e)) if e.kind() == ErrorKind::ConnectionRefused => return Err(not_running()),
        (None, Some(e)) => return Err(format!("cannot connect to {address}: {e}")),
        (None, None) => return Err(format!("{authority} resolves to no address")),
    };
    let io = |e: std::io::Error| format!("talking to {address}: {e}");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    let request = format!(
        "GET {base}{path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(io)?;
    parse_response(&raw).ok_or_else(|| format!("{address} did not answer with HTTP"))
}

/// The status code and body of a whole HTTP/1.1 response (plain, or chunked).
fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    if !chunked {
        return Some((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_line = std::str::from_utf8(&rest[..end]).ok()?;
        let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Some((status, out));
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain), Some((200, b"{}".to_vec())));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked), Some((200, b"{\"a\":1}".to_vec())));
    }

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

    #[test]
    fn refused_connection_says_nothing_is_running() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = get(
            &format!("http://127.0.0.1:{port}"),
            "/api/serve/applications",
        )
        .unwrap_err();
        assert!(err.contains("nothing is running"), "{err}");
    }
}
