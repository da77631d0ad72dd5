//! `multiplex-loadgen`: requests for multiplexed models, a process of its own, to measure how
//! often a replica already holds the model a request asks for.
//!
//! One thread (a tokio `current_thread` runtime); `-c` workers, each on its own keep-alive
//! connection, POSTing OpenAI chat completions to `--url` one after another for the agent
//! `lora` (the openai example's multiplexed deployment). Each request asks for a model picked
//! uniformly at random among `adapter-1` to `adapter-<--models>`:
//!
//! - `--mode header`: in the `serve_multiplexed_model_id` header, which the router sees (it
//!   sends the request to a replica that holds the model);
//! - `--mode body`: as `"model_id"` in the body, which only the agent reads (the router cannot
//!   see it: the baseline without affinity).
//!
//! It runs for `-d` seconds (at most 120) after `--warmup` seconds (at most 30), then gives the
//! requests still running 10 s before dropping them.
//!
//! ```text
//! multiplex-loadgen --url http://127.0.0.1:8000/v1/chat/completions -c 16 -d 5 --mode header
//! multiplex-loadgen --url http://127.0.0.1:8000/v1/chat/completions -c 16 -d 5 --mode body --seed 7
//! ```
//!
//! It prints one JSON line: `requests` (answered, whatever the status, started after the
//! warmup), `errors` (connection or protocol failures), `non_2xx`, `seconds` (from the end of the
//! warmup to the last answer counted), `req_per_s`, `p50_us` and `p99_us` (each request from
//! sending to the end of its body).

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use futures::future::Either;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The longest run `-d` may ask for.
const MAX_SECONDS: f64 = 120.0;
/// The longest warmup.
const MAX_WARMUP: f64 = 30.0;
/// How long the requests still running at the end of the run may take before they are dropped.
const GRACE: Duration = Duration::from_secs(10);
/// The most connections.
const MAX_CONNECTIONS: usize = 1024;
/// The most models.
const MAX_MODELS: u32 = 1000;
/// The header that names the multiplexed model (Ray Serve's).
const MODEL_HEADER: HeaderName = HeaderName::from_static("serve_multiplexed_model_id");

/// Where the request names its model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// The `serve_multiplexed_model_id` header: the router sees it.
    Header,
    /// `"model_id"` in the body: only the agent sees it.
    Body,
}

/// The command line.
#[derive(Parser, Debug)]
#[command(
    name = "multiplex-loadgen",
    about = "Requests for random multiplexed models, on one thread"
)]
struct Args {
    /// The URL of the chat completions: `http://host:port/v1/chat/completions`.
    #[arg(long)]
    url: String,
    /// Concurrent workers, each on its own keep-alive connection.
    #[arg(short = 'c', long = "connections", default_value_t = 1)]
    connections: usize,
    /// Seconds to measure for, after the warmup (at most 120).
    #[arg(short = 'd', long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring (at most 30).
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// How many models: each request asks for one of `adapter-1` to `adapter-<models>`.
    #[arg(long, default_value_t = 4)]
    models: u32,
    /// Where the request names its model.
    #[arg(long, value_enum, default_value_t = Mode::Header)]
    mode: Mode,
    /// The seed of the random choice of models (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
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

/// One model's request: its body, and its header in `header` mode.
struct ModelRequest {
    body: Bytes,
    header: Option<HeaderValue>,
}

impl ModelRequest {
    /// The request for `adapter-<k>` in `mode`.
    fn new(k: u32, mode: Mode) -> ModelRequest {
        let id = format!("adapter-{k}");
        let messages = serde_json::json!([{ "role": "user", "content": "hi" }]);
        let (body, header) = match mode {
            Mode::Header => (
                serde_json::json!({ "model": "lora", "messages": messages }),
                Some(HeaderValue::from_str(&id).expect("a valid header value")),
            ),
            Mode::Body => (
                serde_json::json!({ "model": "lora", "model_id": id, "messages": messages }),
                None,
            ),
        };
        ModelRequest {
            body: Bytes::from(body.to_string()),
            header,
        }
    }
}

/// SplitMix64: a small seeded generator, enough to pick models uniformly.
struct Rng(Cell<u64>);

impl Rng {
    fn next(&self) -> u64 {
        let s = self.0.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.0.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// An index in `0..n`, uniform (the bias of `%` is at most n / 2^64).
    fn below(&self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What every worker shares.
struct Run {
    target: Target,
    /// One request per model, `adapter-1` first.
    models: Vec<ModelRequest>,
    rng: Rng,
    /// The end of the warmup: requests started from here on are counted.
    start: Instant,
    /// No request starts from here on.
    end: Instant,
}

impl Run {
    /// A request for a model picked at random.
    fn request(&self) -> Request<Full<Bytes>> {
        let model = &self.models[self.rng.below(self.models.len())];
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(self.target.path.clone())
            .header(HOST, self.target.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(id) = &model.header {
            builder = builder.header(MODEL_HEADER, id.clone());
        }
        builder
            .body(Full::new(model.body.clone()))
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
    /// When the last counted answer ended.
    last: Option<Instant>,
}

type Sender = SendRequest<Full<Bytes>>;
type Connection = hyper::client::conn::http1::Connection<TokioIo<TcpStream>, Full<Bytes>>;
type Error = Box<dyn std::error::Error>;

async fn connect(target: &Target) -> Result<(Sender, Connection), Error> {
    let stream = TcpStream::connect(&target.addr).await?;
    stream.set_nodelay(true)?;
    Ok(hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?)
}

/// Runs `f` while driving the connection in the same task; an error when the connection ends
/// first.
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

/// Sends one request and reads its whole answer.
async fn exchange(sender: &mut Sender, req: Request<Full<Bytes>>) -> Result<StatusCode, Error> {
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    resp.into_body().collect().await?;
    Ok(status)
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
        let t0 = Instant::now();
        let result = with_conn(conn, exchange(sender, run.request())).await;
        let done = Instant::now();
        if result.is_err() {
            open = None;
        }
        if !counted {
            continue;
        }
        let mut t = totals.borrow_mut();
        match result {
            Ok(status) => {
                let us = (done - t0).as_micros();
                t.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                t.requests += 1;
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
    if !(args.duration > 0.0 && args.duration <= MAX_SECONDS) {
        return Err(format!("-d must be more than 0 and at most {MAX_SECONDS}"));
    }
    if !(0.0..=MAX_WARMUP).contains(&args.warmup) {
        return Err(format!("--warmup must be 0 to {MAX_WARMUP}"));
    }
    if !(1..=MAX_MODELS).contains(&args.models) {
        return Err(format!("--models must be 1 to {MAX_MODELS}"));
    }
    Ok(())
}

fn main() {
    let args = Args::parse();
    let target = match check(&args).and_then(|()| Target::parse(&args.url)) {
        Ok(target) => target,
        Err(e) => {
            eprintln!("multiplex-loadgen: {e}");
            std::process::exit(2);
        }
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let totals = RefCell::new(Totals::default());
    let start = runtime.block_on(async {
        let start = Instant::now() + Duration::from_secs_f64(args.warmup);
        let run = Run {
            target,
            models: (1..=args.models)
                .map(|k| ModelRequest::new(k, args.mode))
                .collect(),
            rng: Rng(Cell::new(seed)),
            start,
            end: start + Duration::from_secs_f64(args.duration),
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
    let report = serde_json::json!({
        "requests": t.requests,
        "errors": t.errors,
        "non_2xx": t.non_2xx,
        "seconds": secs,
        "req_per_s": if secs > 0.0 { t.requests as f64 / secs } else { 0.0 },
        "p50_us": quantile(&t.latencies_us, 0.50),
        "p99_us": quantile(&t.latencies_us, 0.99),
    });
    println!("{report}");
    drop(runtime);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_are_picked_uniformly() {
        let rng = Rng(Cell::new(42));
        let mut seen = [0u32; 4];
        for _ in 0..40_000 {
            seen[rng.below(4)] += 1;
        }
        for n in seen {
            assert!((9_500..=10_500).contains(&n), "{seen:?}");
        }
        let (a, b) = (Rng(Cell::new(7)), Rng(Cell::new(7)));
        let picks = |r: &Rng| (0..32).map(|_| r.below(4)).collect::<Vec<_>>();
        assert_eq!(picks(&a), picks(&b), "the same seed, the same models");
    }

    #[test]
    fn the_model_is_in_the_header_or_in_the_body() {
        let header = ModelRequest::new(3, Mode::Header);
        assert_eq!(header.header.as_ref().unwrap(), "adapter-3");
        let body: serde_json::Value = serde_json::from_slice(&header.body).unwrap();
        assert_eq!(body["model"], "lora");
        assert!(body.get("model_id").is_none());
        let in_body = ModelRequest::new(3, Mode::Body);
        assert!(in_body.header.is_none());
        let body: serde_json::Value = serde_json::from_slice(&in_body.body).unwrap();
        assert_eq!(body["model_id"], "adapter-3");
        assert_eq!(body["messages"][0]["content"], "hi");
    }

    #[test]
    fn quantiles_take_the_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&[], 0.5), 0);
    }
}
