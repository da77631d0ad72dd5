//! The dashboard in a real headless browser: Debian's chromium, driven through its DevTools
//! protocol, loads the conformance example's dashboard, sees its deployments and replicas, sees
//! the request counts rise, and saves a screenshot to `target/dashboard.png`.
//!
//! Without chromium the test fails when `CI` is set (`.ci/run` installs it) and is skipped,
//! saying why, otherwise.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use conformance::agents;
use rayai::{HttpOptions, Value, json};
use tracing_subscriber::prelude::*;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

const CHROMIUM: &str = "/usr/bin/chromium";
/// How long the page may take to show what the test waits for.
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Chromium, killed (and its profile removed) when dropped.
struct Browser {
    child: Child,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Starts headless chromium and returns it with its DevTools websocket URL.
fn launch(binary: &Path) -> (Browser, String) {
    let profile = std::env::temp_dir().join(format!("rayai-chromium-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    let mut child = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {}: {e}", binary.display()));
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.split_whitespace().find(|w| w.starts_with("ws://"))
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let browser = Browser { child, profile };
    let url = rx
        .recv_timeout(PAGE_TIMEOUT)
        .expect("chromium printed its DevTools websocket URL");
    (browser, url)
}

/// A DevTools protocol client: one command at a time, events skipped.
struct Cdp {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Cdp {
    fn connect(url: &str) -> Cdp {
        let (ws, _) = tungstenite::connect(url).expect("the DevTools websocket connects");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(PAGE_TIMEOUT))
                .expect("a read timeout");
        }
        Cdp { ws, next_id: 0 }
    }

    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .expect("a DevTools command is sent");
        loop {
            let reply = self.ws.read().expect("a DevTools reply");
            let Ok(text) = reply.to_text() else { continue };
            let Ok(v) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if v["id"] == json!(id) {
                if let Some(e) = v.get("error") {
                    panic!("{method} failed: {e}");
                }
                return v["result"].clone();
            }
        }
    }

    fn eval(&mut self, session: &str, expression: &str) -> Value {
        let r = self.call(
            Some(session),
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        r["result"]["value"].clone()
    }

    /// Evaluates `expression` until `done` accepts its value; panics (naming `what`) on timeout.
    fn wait_for(
        &mut self,
        session: &str,
        what: &str,
        expression: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        loop {
            let v = self.eval(session, expression);
            if done(&v) {
                return v;
            }
            if Instant::now() > deadline {
                let text = self.eval(session, "document.body ? document.body.innerText : ''");
                panic!("timed out waiting for {what}; last value {v}; page text:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Decodes standard base64 (the screenshot's encoding).
fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// The browser to use, or `None` (after saying why) when the test should be skipped.
fn chromium() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_owned()));
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} is missing: the dashboard browser test needs Debian's chromium \
             (`apt-get install -y chromium`; .ci/run installs it)",
            path.display()
        );
    }
    eprintln!(
        "skipping the dashboard browser test: {} is not installed (apt-get install -y chromium)",
        path.display()
    );
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_deployments_and_rising_counts() {
    let Some(binary) = chromium() else { return };
    let _ = tracing_subscriber::registry()
        .with(
            rayai_http::LogLayer::new().with_filter(tracing_subscriber::filter::LevelFilter::INFO),
        )
        .try_init();
    let server = serve(
        agents::app(),
        HttpOptions {
            dashboard_port: Some(0),
            ..HttpOptions::default()
        },
    )
    .await;
    let dash = server.dashboard_addr().expect("the dashboard runs");
    let addr = server.local_addr();

    let (_browser, ws_url) = launch(&binary);
    let mut cdp = tokio::task::block_in_place(|| Cdp::connect(&ws_url));
    let session = tokio::task::block_in_place(|| {
        let target = cdp.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let attached = cdp.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        let session = attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_owned();
        cdp.call(
            Some(&session),
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1280, "height": 1700, "deviceScaleFactor": 1, "mobile": false }),
        );
        cdp.call(
            Some(&session),
            "Page.navigate",
            json!({ "url": format!("http://{dash}/") }),
        );
        session
    });

    // Every deployment and the counter's two replicas are listed.
    let served_sum = "[...document.querySelectorAll('td.served')]\
        .reduce((s, e) => s + Number(e.textContent), 0)";
    let before = tokio::task::block_in_place(|| {
        cdp.wait_for(
            &session,
            "the deployments and replicas on the page",
            "document.body ? document.body.innerText : ''",
            |v| {
                let text = v.as_str().unwrap_or("");
                [
                    "echo",
                    "plain",
                    "counter",
                    "slow",
                    "panicky",
                    "blocking",
                    "counter#0",
                    "counter#1",
                    "RUNNING",
                ]
                .iter()
                .all(|w| text.contains(w))
            },
        );
        cdp.eval(&session, served_sum).as_f64().unwrap_or(0.0)
    });

    for i in 0..20 {
        let r = post(
            addr,
            "/agents/echo/chat",
            &format!(r#"{{"data": {{"n": {i}}}}}"#),
        )
        .await;
        assert_eq!(r.status, http::StatusCode::OK);
    }
    post(
        addr,
        "/agents/echo/chat",
        r#"{"data": {"fail": "on purpose"}}"#,
    )
    .await;

    tokio::task::block_in_place(|| {
        cdp.wait_for(
            &session,
            "the served count to rise by 21",
            served_sum,
            |v| v.as_f64().unwrap_or(0.0) >= before + 21.0,
        );
        cdp.wait_for(
            &session,
            "echo's traffic chart",
            "(document.querySelector('[data-d=\"echo\"] .now') || {}).textContent || ''",
            |v| v.as_str().is_some_and(|t| t.contains("req/s")),
        );
        cdp.wait_for(
            &session,
            "the access log on the page",
            "document.getElementById('logs').innerText",
            |v| v.as_str().is_some_and(|t| t.contains("/agents/echo")),
        );
        let shot = cdp.call(
            Some(&session),
            "Page.captureScreenshot",
            json!({ "format": "png" }),
        );
        let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        std::fs::create_dir_all(&out).expect("target/ exists");
        std::fs::write(out.join("dashboard.png"), &png).expect("the screenshot is saved");
        eprintln!("screenshot: {}", out.join("dashboard.png").display());
    });
    server.shutdown().await;
}
