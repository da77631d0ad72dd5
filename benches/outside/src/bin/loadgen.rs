//! `loadgen`: rayai's own HTTP/1.1 load generator, a process of its own, like `wrk -t1`.
//!
//! One thread (a tokio `current_thread` runtime); `-c` workers, each on its own keep-alive
//! connection, sending one request after another: a POST of `--body` (JSON), or a GET without
//! it. It runs for `-d` seconds after `--warmup` seconds, or for exactly `-n` requests (with
//! `-c 1`, `-n` sequential requests on one connection), whichever ends first; every run is
//! bounded in time (at most 120 s, plus 10 s for the requests still running at the end).
//!
//! ```text
//! loadgen --url http://127.0.0.1:8000/agents/echo/chat --body '{"data":{}}' -c 16 -d 3 --warmup 1
//! loadgen --url http://127.0.0.1:8000/agents/echo/chat --body '{"data":{}}' -n 1000
//! loadgen --url ... --body '{"data":{"n":1000},"stream":"text"}' --sse -c 4 -d 3
//! ```
//!
//! It prints one JSON line: `requests` (answered, whatever the status, started after the
//! warmup), `errors` (connection or protocol failures, and with `--sse` streams that did not end
//! with the `done` frame), `non_2xx`, `seconds` (from the end of the warmup to the last answer
//! counted), `req_per_s`, `p50_us` and `p99_us` (each request from sending to the end of its
//! body), and with `--sse` the `data:` events of the streams (`frames`, without the `done`
//! frame) and `frames_per_s`.

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use futures::future::Either;
use http::header::{ACCEPT, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The longest run `-d` may ask for, and the longest a counted run (`-n`) may take.
const MAX_SECONDS: f64 = 120.0;
/// The longest warmup.
const MAX_WARMUP: f64 = 30.0;
/// How long the requests still running at the end of the run may take before they are dropped.
const GRACE: Duration = Duration::from_secs(10);
/// The most connections.
const MAX_CONNECTIONS: usize = 1024;
/// The frame that ends a text or event stream, byte for byte.
const DONE: &[u8] = b"data: {\"type\": \"done\"}\n\n";

/// The command line.
#[derive(Parser, Debug)]
#[command(name = "loadgen", about = "An HTTP/1.1 load generator on one thread")]
struct Args {
    /// The URL: `http://host:port/path`.
    #[arg(long)]
    url: String,
    /// The body to POST (sent as `application/json`); without it, GET.
    #[arg(long)]
    body: Option<String>,
    /// Concurrent workers, each on its own keep-alive connection.
    #[arg(short = 'c', long = "connections", default_value_t = 1)]
    connections: usize,
    /// Seconds to measure for, after the warmup (at most 120; 10 when neither `-d` nor `-n`).
    #[arg(short = 'd', long)]
    duration: Option<f64>,
    /// Stop after this many requests (counted after the warmup).
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// The answers are event streams: count their `data:` frames.
    #[arg(long)]
    sse: bool,
    /// Seconds of load before measuring (at most 30).
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
}

/// Where the requests go.
struct Target {
    /// `host:port`, to connect to.
    addr: String,
    /// The `Host` header.
    host: HeaderValue,
    /// The request target.
    path: Uri,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let uri: Uri = url.parse().map_err(|e| format!("bad --url {url:?}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("--url {url:?}: only http:// is supported"));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("--url {url:?} has no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let path = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|e| format!("bad path in --url {url:?}: {e}"))?;
        Ok(Target {
            addr: format!("{}:{port}", authority.host()),
            host: HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?,
            path,
        })
    }
}

/// What every worker shares.
struct Run {
    target: Target,
    body: Option<Bytes>,
    sse: bool,
    /// The end of the warmup: requests started from here on are counted.
    start: Instant,
    /// No request starts from here on.
    end: Instant,
    /// Requests still to send, when `-n` caps them.
    remaining: Cell<Option<u64>>,
}

impl Run {
    /// Whether a counted request may start (and takes it from the cap).
    fn take(&self) -> bool {
        match self.remaining.get() {
            None => true,
            Some(0) => false,
            Some(n) => {
                self.remaining.set(Some(n - 1));
                true
            }
        }
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let method = if self.body.is_some() {
            Method::POST
        } else {
            Method::GET
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(self.target.path.clone())
            .header(HOST, self.target.host.clone());
        if self.body.is_some() {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if self.sse {
            builder = builder.header(ACCEPT, HeaderValue::from_static("text/event-stream"));
        }
        builder
            .body(Full::new(self.body.clone().unwrap_or_default()))
            .expect("a valid request")
    }
}

/// What the workers counted.
#[derive(Default)]
struct Totals {
    latencies_us: Vec<u32>,
    requests: u64,
    errors: u64,
    non_2xx: u64,
    frames: u64,
    /// When the last counted answer ended.
    last: Option<Instant>,
}

/// Counts the events of a text/event-stream body across its chunks: an event ends at a blank
/// line. Remembers the last bytes to tell whether the stream ended with the `done` frame.
#[derive(Default)]
struct SseCounter {
    events: u64,
    newline: bool,
    tail: Vec<u8>,
}

impl SseCounter {
    fn feed(&mut self, data: &[u8]) {
        for &b in data {
            if b == b'\n' {
                if self.newline {
                    self.events += 1;
                    self.newline = false;
                } else {
                    self.newline = true;
                }
            } else if b != b'\r' {
                self.newline = false;
            }
        }
        self.tail.extend_from_slice(data);
        if self.tail.len() > DONE.len() {
            self.tail.drain(..self.tail.len() - DONE.len());
        }
    }

    /// The `data:` frames before `done`; `None` unless the stream ended with `done`.
    fn frames(&self) -> Option<u64> {
        (self.tail == DONE).then(|| self.events - 1)
    }
}

type Sender = SendRequest<Full<Bytes>>;
type Connection = hyper::client::conn::http1::Connection<TokioIo<TcpStream>, Full<Bytes>>;
type Error = Box<dyn std::error::Error>;

async fn connect(target: &Target) -> Result<(Sender, Connection), Error> {
    let stream = TcpStream::connect(&target.addr).await?;
    stream.set_nodelay(true)?;
    Ok(hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?)
}

/// Runs `f` while driving the connection in the same task (no hop to a task of its own); an
/// error when the connection ends first.
async fn with_conn<T>(
    conn: &mut Pin<Box<Connection>>,
    f: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let f = std::pin::pin!(f);
    match futures::future::select(f, conn.as_mut()).await {
        Either::Left((result, _)) => result,
        Either::Right((Ok(()), _)) => Err("the connection closed".into()),
        Either::Right((Err(e), _)) => Err(e.into()),
    }
}

/// Sends one request and reads its whole answer: the status and, for a stream, its frames.
async fn exchange(
    sender: &mut Sender,
    req: Request<Full<Bytes>>,
    sse: bool,
) -> Result<(StatusCode, u64), Error> {
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut counter = SseCounter::default();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data()
            && sse
        {
            counter.feed(&data);
        }
    }
    if sse && status.is_success() {
        let frames = counter
            .frames()
            .ok_or("the stream did not end with the done frame")?;
        return Ok((status, frames));
    }
    Ok((status, 0))
}

/// One worker: one connection (again after a failure), one request after another.
async fn worker(run: &Run, totals: &RefCell<Totals>) {
    let mut open: Option<(Sender, Pin<Box<Connection>>)> = None;
    loop {
        let now = Instant::now();
        if now >= run.end {
            break;
        }
        let (sender, conn) = match open.as_mut() {
            Some(open) => open,
            None => match connect(&run.target).await {
                Ok((sender, conn)) => open.insert((sender, Box::pin(conn))),
                Err(_) => {
                    if now >= run.start {
                        totals.borrow_mut().errors += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        if with_conn(conn, async { Ok(sender.ready().await?) })
            .await
            .is_err()
        {
            // The server closed the connection between two requests: open another.
            open = None;
            continue;
        }
        let counted = Instant::now() >= run.start;
        if counted && !run.take() {
            break;
        }
        let t0 = Instant::now();
        let result = with_conn(conn, exchange(sender, run.request(), run.sse)).await;
        let done = Instant::now();
        if result.is_err() {
            open = None;
        }
        if !counted {
            continue;
        }
        let mut t = totals.borrow_mut();
        match result {
            Ok((status, frames)) => {
                let us = (done - t0).as_micros();
                t.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                t.requests += 1;
                t.frames += frames;
                if !status.is_success() {
                    t.non_2xx += 1;
                }
                t.last = Some(t.last.map_or(done, |l| l.max(done)));
            }
            Err(_) => t.errors += 1,
        }
    }
}

/// The `p` quantile of sorted latencies, 0 for none.
fn quantile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn check(args: &Args) -> Result<(), String> {
    if !(1..=MAX_CONNECTIONS).contains(&args.connections) {
        return Err(format!("-c must be 1 to {MAX_CONNECTIONS}"));
    }
    if let Some(d) = args.duration
        && !(d > 0.0 && d <= MAX_SECONDS)
    {
        return Err(format!("-d must be more than 0 and at most {MAX_SECONDS}"));
    }
    if !(0.0..=MAX_WARMUP).contains(&args.warmup) {
        return Err(format!("--warmup must be 0 to {MAX_WARMUP}"));
    }
    Ok(())
}

fn main() {
    let args = Args::parse();
    let target = match check(&args).and_then(|()| Target::parse(&args.url)) {
        Ok(target) => target,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let seconds = match (args.duration, args.requests) {
        (Some(d), _) => d,
        (None, Some(_)) => MAX_SECONDS,
        (None, None) => 10.0,
    };
    let totals = RefCell::new(Totals::default());
    let start = runtime.block_on(async {
        let start = Instant::now() + Duration::from_secs_f64(args.warmup);
        let run = Run {
            target,
            body: args.body.map(Bytes::from),
            sse: args.sse,
            start,
            end: start + Duration::from_secs_f64(seconds),
            remaining: Cell::new(args.requests),
        };
        let workers =
            futures::future::join_all((0..args.connections).map(|_| worker(&run, &totals)));
        // Requests still running past the end get the grace period, then are dropped.
        let _ = tokio::time::timeout_at(run.end + GRACE, workers).await;
        start
    });
    let mut t = totals.into_inner();
    t.latencies_us.sort_unstable();
    let secs = t.last.map_or(0.0, |last| {
        last.saturating_duration_since(start).as_secs_f64()
    });
    let per_s = |count: u64| {
        if secs > 0.0 { count as f64 / secs } else { 0.0 }
    };
    let report = serde_json::json!({
        "requests": t.requests,
        "errors": t.errors,
        "non_2xx": t.non_2xx,
        "seconds": secs,
        "req_per_s": per_s(t.requests),
        "p50_us": quantile(&t.latencies_us, 0.50),
        "p99_us": quantile(&t.latencies_us, 0.99),
        "frames": t.frames,
        "frames_per_s": per_s(t.frames),
    });
    println!("{report}");
    drop(runtime);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_frames_are_counted_across_chunks() {
        let mut c = SseCounter::default();
        for chunk in [
            &b"data: tok\n"[..],
            b"\ndata: a\ndata: b\n\nda",
            b"ta: x\n\n",
            b"data: {\"type\": \"do",
            b"ne\"}\n\n",
        ] {
            c.feed(chunk);
        }
        assert_eq!(c.frames(), Some(3));
        let mut cut = SseCounter::default();
        cut.feed(b"data: tok\n\n");
        assert_eq!(cut.frames(), None);
    }

    #[test]
    fn urls_are_parsed() {
        let t = Target::parse("http://127.0.0.1:8123/agents/echo/chat?x=1").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8123");
        assert_eq!(t.host, "127.0.0.1:8123");
        assert_eq!(t.path, "/agents/echo/chat?x=1");
        assert!(Target::parse("https://x/").is_err());
    }

    #[test]
    fn quantiles_take_the_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&[7], 0.99), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }
}
