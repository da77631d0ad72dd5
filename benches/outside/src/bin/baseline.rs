//! `baseline`: the bare hyper server the load benchmark holds rayai against, a process of its
//! own. It does the least work that gives a client the same answer as rayai's `echo` agent:
//!
//! - `POST /agents/<name>/chat` parses the JSON body and answers
//!   `{"result":{"echo":<data>},"session_id":<session_id>}` (compact, keys in that order) with
//!   `content-type: application/json` and a fresh `x-request-id` (a UUID v4, as rayai makes
//!   one), the bytes rayai's echo agent answers;
//! - with `"stream": "text"`, it streams `data.n` frames `data: tok\n\n` then
//!   `data: {"type": "done"}\n\n`, with rayai's SSE headers (`content-type`, `cache-control`, `connection`,
//!   `x-accel-buffering`, `x-request-id`), as rayai's `echo` streams them in
//!   the benchmark's server (`bench-server`);
//! - anything else is a `404` with an empty body.
//!
//! hyper 1 through hyper-util's `auto` connection builder, on tokio's multi-threaded runtime
//! with its default workers. It prints `baseline on http://<addr> (pid <pid>)` once it listens,
//! and exits on SIGTERM or Ctrl-C.
//!
//! ```text
//! baseline --port 0
//! ```

use std::convert::Infallible;

use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use http::header::{CACHE_CONTROL, CONNECTION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

/// The command line.
#[derive(Parser)]
#[command(
    name = "baseline",
    about = "A bare hyper server answering as rayai's echo agent"
)]
struct Args {
    /// Port to listen on (127.0.0.1); 0 picks a free one.
    #[arg(long, default_value_t = 8000)]
    port: u16,
}

/// The frame that ends a stream, byte for byte as rayai writes it.
const DONE: &[u8] = b"data: {\"type\": \"done\"}\n\n";
/// One chunk of the echo agent's stream.
const TOK: &[u8] = b"data: tok\n\n";

type Frames = futures::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>;
type Body = Either<Full<Bytes>, StreamBody<Frames>>;

/// A fresh request id, as rayai makes one (its cost belongs to both sides).
fn request_id() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(id).expect("a UUID is a valid header value")
}

fn is_chat(req: &Request<Incoming>) -> bool {
    req.method() == Method::POST
        && req
            .uri()
            .path()
            .strip_prefix("/agents/")
            .and_then(|rest| rest.strip_suffix("/chat"))
            .is_some_and(|name| !name.is_empty() && !name.contains('/'))
}

async fn serve(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if !is_chat(&req) {
        let mut resp = Response::new(Either::Left(Full::default()));
        *resp.status_mut() = StatusCode::NOT_FOUND;
        return Ok(resp);
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let mut parsed: Value = serde_json::from_slice(&body).unwrap_or_default();
    let data = parsed.get_mut("data").map(Value::take).unwrap_or_default();
    if parsed.get("stream").and_then(Value::as_str) == Some("text") {
        let n = data.get("n").and_then(Value::as_u64).unwrap_or(0);
        let frames = futures::StreamExt::boxed(futures::StreamExt::chain(
            futures::stream::iter((0..n).map(|_| Ok(Frame::data(Bytes::from_static(TOK))))),
            futures::stream::once(async { Ok(Frame::data(Bytes::from_static(DONE))) }),
        ));
        let mut resp = Response::new(Either::Right(StreamBody::new(frames)));
        let headers = resp.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        headers.insert("x-request-id", request_id());
        return Ok(resp);
    }
    let session = match parsed.get_mut("session_id").map(Value::take) {
        Some(Value::String(s)) => s,
        _ => "default".to_owned(),
    };
    let mut out = BytesMut::with_capacity(body.len() + 64);
    out.put_slice(b"{\"result\":");
    serde_json::to_writer((&mut out).writer(), &json!({ "echo": data })).expect("JSON into memory");
    out.put_slice(b",\"session_id\":");
    serde_json::to_writer((&mut out).writer(), &session).expect("JSON into memory");
    out.put_u8(b'}');
    let mut resp = Response::new(Either::Left(Full::new(out.freeze())));
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert("x-request-id", request_id());
    Ok(resp)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let listener = rayai_bench::listen("baseline", args.port).await;
    rayai_bench::serve_until_stopped(listener, |stream| async move {
        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), hyper::service::service_fn(serve))
            .await;
    })
    .await;
}
