//! `grpc-loadgen`: rayai's own gRPC load generator, a process of its own, as `loadgen` is for
//! HTTP/1.1.
//!
//! One thread (a tokio `current_thread` runtime); `-c` callers, each with its own tonic
//! `Channel` (its own HTTP/2 connection), making unary `greeter.v1.Greeter/SayHello` calls one
//! after another. A connection per caller, as `loadgen` has a keep-alive connection per worker:
//! the servers see as many connections as callers at every concurrency, and no caller waits
//! for another's frames on a shared connection. It runs for `-d` seconds after `--warmup`
//! seconds, or for exactly `-n` calls (with `-c 1`, `-n` sequential calls on one connection),
//! whichever ends first; every run is bounded in time (at most 120 s, plus 10 s for the calls
//! still running at the end).
//!
//! ```text
//! grpc-loadgen --url http://127.0.0.1:9000 --application greeter -c 16 -d 3 --warmup 1
//! grpc-loadgen --url http://127.0.0.1:9000 -n 1000
//! ```
//!
//! It prints one JSON line: `requests` (calls answered `OK`, started after the warmup),
//! `errors` (calls that ended with another status or another greeting than `Hello, <name>!`,
//! connections that failed), `seconds` (from
//! the end of the warmup to the last answer counted), `req_per_s`, `p50_us` and `p99_us` (each
//! call from sending it to its answer's trailers).

use std::cell::{Cell, RefCell};
use std::time::Duration;

use clap::Parser;
use grpc::pb::HelloRequest;
use grpc::pb::greeter_client::GreeterClient;
use tokio::time::Instant;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

/// The longest run `-d` may ask for, and the longest a counted run (`-n`) may take.
const MAX_SECONDS: f64 = 120.0;
/// The longest warmup.
const MAX_WARMUP: f64 = 30.0;
/// How long the calls still running at the end of the run may take before they are dropped.
const GRACE: Duration = Duration::from_secs(10);
/// The most callers.
const MAX_CALLERS: usize = 1024;

/// The command line.
#[derive(Parser, Debug)]
#[command(
    name = "grpc-loadgen",
    about = "A gRPC load generator on one thread: unary greeter.v1.Greeter/SayHello calls"
)]
struct Args {
    /// The server: `http://host:port`.
    #[arg(long)]
    url: String,
    /// The `application` metadata of every call (rayai routes by it when it serves several
    /// applications).
    #[arg(long)]
    application: Option<String>,
    /// The `name` of every `HelloRequest`.
    #[arg(long, default_value = "loadgen")]
    name: String,
    /// Concurrent callers, each on its own channel (HTTP/2 connection).
    #[arg(short = 'c', long = "connections", default_value_t = 1)]
    connections: usize,
    /// Seconds to measure for, after the warmup (at most 120; 10 when neither `-d` nor `-n`).
    #[arg(short = 'd', long)]
    duration: Option<f64>,
    /// Stop after this many calls (counted after the warmup).
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Seconds of load before measuring (at most 30).
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
}

/// What every caller shares.
struct Run {
    endpoint: Endpoint,
    application: Option<MetadataValue<tonic::metadata::Ascii>>,
    name: String,
    /// The greeting every answer must carry: `Hello, <name>!`.
    expected: String,
    /// The end of the warmup: calls started from here on are counted.
    start: Instant,
    /// No call starts from here on.
    end: Instant,
    /// Calls still to make, when `-n` caps them.
    remaining: Cell<Option<u64>>,
}

impl Run {
    /// Whether a counted call may start (and takes it from the cap).
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

    fn request(&self) -> tonic::Request<HelloRequest> {
        let mut req = tonic::Request::new(HelloRequest {
            name: self.name.clone(),
            count: 0,
            delay_ms: 0,
        });
        if let Some(app) = &self.application {
            req.metadata_mut().insert("application", app.clone());
        }
        req
    }
}

/// What the callers counted.
#[derive(Default)]
struct Totals {
    latencies_us: Vec<u32>,
    requests: u64,
    errors: u64,
    /// When the last counted answer ended.
    last: Option<Instant>,
}

/// One caller: one channel (again after a failure to connect), one call after another.
async fn caller(run: &Run, totals: &RefCell<Totals>) {
    let mut client: Option<GreeterClient<Channel>> = None;
    loop {
        let now = Instant::now();
        if now >= run.end {
            break;
        }
        let client = match client.as_mut() {
            Some(client) => client,
            None => match run.endpoint.connect().await {
                Ok(channel) => client.insert(GreeterClient::new(channel)),
                Err(_) => {
                    if now >= run.start {
                        totals.borrow_mut().errors += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let counted = Instant::now() >= run.start;
        if counted && !run.take() {
            break;
        }
        let t0 = Instant::now();
        // A failed call leaves the channel as it is: tonic's channel reconnects by itself.
        let result = client.say_hello(run.request()).await;
        let done = Instant::now();
        // The connection is gone: let the channel reconnect rather than spin.
        let unavailable =
            matches!(&result, Err(status) if status.code() == tonic::Code::Unavailable);
        if counted {
            let mut t = totals.borrow_mut();
            match result {
                Ok(reply) if reply.get_ref().message == run.expected => {
                    let us = (done - t0).as_micros();
                    t.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                    t.requests += 1;
                    t.last = Some(t.last.map_or(done, |l| l.max(done)));
                }
                // A status other than `OK`, or the wrong greeting.
                _ => t.errors += 1,
            }
        }
        if unavailable {
            tokio::time::sleep(Duration::from_millis(10)).await;
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
    if !(1..=MAX_CALLERS).contains(&args.connections) {
        return Err(format!("-c must be 1 to {MAX_CALLERS}"));
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

/// The endpoint of `--url`: plain HTTP/2 (h2c), no TLS.
fn endpoint(url: &str) -> Result<Endpoint, String> {
    if !url.starts_with("http://") {
        return Err(format!("--url {url:?}: only http:// is supported"));
    }
    Ok(Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("bad --url {url:?}: {e}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5)))
}

fn main() {
    let args = Args::parse();
    let parsed = check(&args).and_then(|()| {
        let application = args
            .application
            .as_deref()
            .map(|a| {
                a.parse()
                    .map_err(|_| format!("--application {a:?}: not a metadata value"))
            })
            .transpose()?;
        Ok((endpoint(&args.url)?, application))
    });
    let (endpoint, application) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("grpc-loadgen: {e}");
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
            endpoint,
            application,
            expected: format!(
                "Hello, {}!",
                if args.name.is_empty() {
                    "world"
                } else {
                    &args.name
                }
            ),
            name: args.name,
            start,
            end: start + Duration::from_secs_f64(seconds),
            remaining: Cell::new(args.requests),
        };
        let callers =
            futures::future::join_all((0..args.connections).map(|_| caller(&run, &totals)));
        // Calls still running past the end get the grace period, then are dropped.
        let _ = tokio::time::timeout_at(run.end + GRACE, callers).await;
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
    fn quantiles_take_the_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&[], 0.5), 0);
    }

    #[test]
    fn only_plain_http_urls() {
        assert!(endpoint("http://127.0.0.1:9000").is_ok());
        assert!(endpoint("https://127.0.0.1:9000").is_err());
        assert!(endpoint("127.0.0.1:9000").is_err());
    }
}
