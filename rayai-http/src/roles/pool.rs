//! Pooled HTTP/1.1 keep-alive connections to replica processes: one idle stack per address,
//! a connection lent to one request until its answer's body ends, then back on the stack.
//! Cheaper per request than a general-purpose client (no pool keys hashed per request, no
//! absolute URI to build and parse).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, HeaderValue};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rayai_core::handler::HttpBody;
use rayai_core::remote::Failure;

/// How long a connection to a replica process may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The most idle connections kept per replica process.
const MAX_IDLE: usize = 256;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The idle connections of every replica process reached so far; clones share them.
#[derive(Default, Clone)]
pub(crate) struct Pool {
    peers: Arc<Mutex<HashMap<String, Arc<Peer>>>>,
}

/// One replica process's idle connections.
struct Peer {
    address: String,
    host: HeaderValue,
    idle: Mutex<Vec<SendRequest<HttpBody>>>,
}

impl Pool {
    fn peer(&self, address: &str) -> Result<Arc<Peer>, Failure> {
        let mut peers = lock(&self.peers);
        if let Some(peer) = peers.get(address) {
            return Ok(peer.clone());
        }
        let host = HeaderValue::from_str(address)
            .map_err(|_| Failure::Unsent(format!("bad replica address {address:?}")))?;
        let peer = Arc::new(Peer {
            address: address.to_owned(),
            host,
            idle: Mutex::new(Vec::new()),
        });
        peers.insert(address.to_owned(), peer.clone());
        Ok(peer)
    }

    /// Sends `req` (its URI a path) to `address` on an idle connection, or a new one. A
    /// request that could not be written (no connection, or a kept-alive one that closed
    /// first) is [`Failure::Unsent`]; one that failed after is [`Failure::Lost`].
    pub(crate) async fn send(
        &self,
        address: &str,
        mut req: Request<HttpBody>,
    ) -> Result<Response<Leased>, Failure> {
        let peer = self.peer(address)?;
        req.headers_mut().insert(HOST, peer.host.clone());
        let mut sender = loop {
            let Some(mut sender) = lock(&peer.idle).pop() else {
                break peer.connect().await?;
            };
            // Ready once the connection has finished its last answer; an error: it closed.
            if sender.ready().await.is_ok() {
                break sender;
            }
        };
        match sender.send_request(req).await {
            Ok(resp) => Ok(resp.map(|body| Leased {
                body,
                lease: Some((sender, peer)),
            })),
            Err(e) if e.is_canceled() => Err(Failure::Unsent(error_text(&e))),
            Err(e) => Err(Failure::Lost(error_text(&e))),
        }
    }
}

impl Peer {
    async fn connect(&self) -> Result<SendRequest<HttpBody>, Failure> {
        let unsent = |e: &dyn std::fmt::Display| {
            Failure::Unsent(format!("tcp connect error to {}: {e}", self.address))
        };
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(&self.address),
        )
        .await
        .map_err(|_| unsent(&"timed out"))?
        .map_err(|e| unsent(&e))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unsent(&e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    fn give_back(&self, sender: SendRequest<HttpBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }
}

/// The path of a wire request, as its URI.
pub(crate) fn path_uri(path: &str) -> Result<Uri, Failure> {
    path.parse()
        .map_err(|e| Failure::Unsent(format!("bad replica path {path:?}: {e}")))
}

/// An answer's body; its connection goes back to the pool when the body has ended.
pub(crate) struct Leased {
    body: Incoming,
    lease: Option<(SendRequest<HttpBody>, Arc<Peer>)>,
}

impl Leased {
    /// A body whose connection is not the pool's.
    pub(crate) fn plain(body: Incoming) -> Self {
        Leased { body, lease: None }
    }
}

impl http_body::Body for Leased {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.body).poll_frame(cx));
        match &frame {
            None => {
                if let Some((sender, peer)) = self.lease.take() {
                    peer.give_back(sender);
                }
            }
            Some(Err(_)) => self.lease = None,
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// An error and its causes, on one line.
pub(crate) fn error_text(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
