//! What one connection is doing, and how long each phase may last while the server waits on the
//! client:
//!
//! | phase | bound | then |
//! |---|---|---|
//! | connected, no byte yet | `header_read_timeout_s` | closed |
//! | a request head arriving (HTTP/1) | `header_read_timeout_s` from its first byte | closed |
//! | idle between requests (no request in flight) | `keep_alive_timeout_s` (0: none) | closed gracefully (HTTP/2: `GOAWAY`) |
//! | a request body arriving | `body_read_timeout_s` without a byte | `408`, closed (see `intake`) |
//!
//! A request is in flight from its head to the end of its response body, so a long answer or
//! stream never counts as idle. When the server is at its connection cap, every bound of a
//! connection waiting on its client shrinks to [`UNDER_PRESSURE`] (a connection whose request body
//! has not moved for that long included), so a flood of slow clients cannot keep new ones out.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

/// The bound of every phase waiting on the client while the server is at its connection cap.
pub(crate) const UNDER_PRESSURE: Duration = Duration::from_secs(1);

/// Milliseconds since the connection opened; `NEVER` for "not yet".
const NEVER: u64 = u64::MAX;

/// What one connection is doing: requests in flight and when bytes last moved.
pub(crate) struct Activity {
    start: Instant,
    /// Reads that returned bytes: progress, for a body stalled at the connection cap.
    reads: AtomicU64,
    /// Requests from their head to the end of their response body.
    in_flight: AtomicUsize,
    /// Request bodies being read.
    bodies: AtomicUsize,
    /// When the connection last had no request in flight (opened, or its last response ended).
    ready_ms: AtomicU64,
    /// The first byte read since then: a request head on its way.
    head_ms: AtomicU64,
    /// Whether a request has been served: before, the wait is for the first byte.
    served: AtomicBool,
    /// Whether the connection speaks HTTP/2 (its first bytes are the preface).
    h2: AtomicBool,
    /// Whether any byte has been read.
    read_any: AtomicBool,
    /// When the watchdog wakes next (ms since start), and how to wake it earlier: when a request
    /// ends and its connection's keep-alive runs out before that.
    armed_ms: AtomicU64,
    wake: tokio::sync::Notify,
    /// The keep-alive timeout in ms (`NEVER`: none).
    keep_alive_ms: u64,
}

/// Why a connection is closed by its [`Bounds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// No byte, or a request head that does not complete, within the header timeout: cut.
    Head,
    /// Idle past the keep-alive timeout: closed gracefully.
    Idle,
    /// At the connection cap, a request body that has not moved: cut.
    StalledBody,
}

/// The bounds of a connection's phases.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) header: Option<Duration>,
    pub(crate) keep_alive: Option<Duration>,
}

impl Activity {
    pub(crate) fn new(bounds: Bounds) -> Arc<Self> {
        Arc::new(Activity {
            start: Instant::now(),
            reads: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            bodies: AtomicUsize::new(0),
            ready_ms: AtomicU64::new(0),
            head_ms: AtomicU64::new(NEVER),
            served: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            read_any: AtomicBool::new(false),
            armed_ms: AtomicU64::new(NEVER),
            wake: tokio::sync::Notify::new(),
            keep_alive_ms: bounds
                .keep_alive
                .map_or(NEVER, |d| u64::try_from(d.as_millis()).unwrap_or(NEVER)),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    /// Bytes were read (`first` holds the first bytes ever read). The clock is read once per
    /// request at most: for the first byte of its head.
    fn read(&self, first: Option<&[u8]>) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        if let Some(bytes) = first {
            self.read_any.store(true, Ordering::Relaxed);
            if bytes.starts_with(b"PRI ") {
                self.h2.store(true, Ordering::Relaxed);
            }
        }
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_ms.load(Ordering::Relaxed) == NEVER
        {
            self.head_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// Counts a request in flight until the guard is dropped (with its response body).
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.served.store(true, Ordering::Relaxed);
        self.head_ms.store(NEVER, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Counts a request body being read until the guard is dropped.
    pub(crate) fn reading_body(self: &Arc<Self>) -> ReadingBody {
        self.bodies.fetch_add(1, Ordering::Relaxed);
        ReadingBody(self.clone())
    }

    /// When the connection's current phase ends, or that it has: what the connection waits on
    /// now and the bound on it, `under_pressure` when the server is at its connection cap.
    /// `Ok(None)`: no bound applies now (busy, or a bound that is off).
    ///
    /// `progress` is the watchdog's memory of the reads it saw and when it first saw that count:
    /// a body read without progress for [`UNDER_PRESSURE`] is stalled.
    pub(crate) fn deadline(
        &self,
        bounds: Bounds,
        under_pressure: bool,
        now: Instant,
        progress: &mut Progress,
    ) -> Result<Option<Instant>, Expired> {
        let shrink = |bound: Option<Duration>| {
            if under_pressure {
                Some(bound.map_or(UNDER_PRESSURE, |b| b.min(UNDER_PRESSURE)))
            } else {
                bound
            }
        };
        let (since, bound, expired) = if self.in_flight.load(Ordering::Relaxed) > 0 {
            // Busy: only a stalled body under pressure is cut here (its own timeout is the
            // request's).
            if !under_pressure || self.bodies.load(Ordering::Relaxed) == 0 {
                return Ok(None);
            }
            let reads = self.reads.load(Ordering::Relaxed);
            if progress.reads != Some(reads) {
                *progress = Progress {
                    reads: Some(reads),
                    since: now,
                };
            }
            let end = progress.since + UNDER_PRESSURE;
            return if end <= now {
                Err(Expired::StalledBody)
            } else {
                Ok(Some(end))
            };
        } else {
            let head = self.head_ms.load(Ordering::Relaxed);
            let h2 = self.h2.load(Ordering::Relaxed);
            if !self.served.load(Ordering::Relaxed) {
                // The first request: its first byte and its head, from the connection's start
                // (an HTTP/2 connection's first stream, likewise).
                (0, shrink(bounds.header), Expired::Head)
            } else if head != NEVER && !h2 {
                (head, shrink(bounds.header), Expired::Head)
            } else {
                // HTTP/2 frames between streams (pings, settings) do not make it busy.
                (
                    self.ready_ms.load(Ordering::Relaxed),
                    shrink(bounds.keep_alive),
                    Expired::Idle,
                )
            }
        };
        let Some(bound) = bound else {
            return Ok(None);
        };
        let end = self.at(since) + bound;
        if end <= now {
            Err(expired)
        } else {
            Ok(Some(end))
        }
    }
}

/// What the watchdog has seen of a connection's reads.
#[derive(Debug)]
pub(crate) struct Progress {
    reads: Option<u64>,
    since: Instant,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Progress {
            reads: None,
            since: Instant::now(),
        }
    }
}

/// A request in flight on a connection.
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        if activity.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            let now = activity.now_ms();
            activity.ready_ms.store(now, Ordering::Relaxed);
            activity.head_ms.store(NEVER, Ordering::Relaxed);
            // The watchdog wakes in time on its own, unless the keep-alive is shorter than
            // its sleep (a keep-alive below the header timeout).
            let idle_end = now.saturating_add(activity.keep_alive_ms);
            if activity.armed_ms.load(Ordering::Relaxed) > idle_end {
                activity.wake.notify_one();
            }
        }
    }
}

/// A request body being read on a connection.
pub(crate) struct ReadingBody(Arc<Activity>);

impl Drop for ReadingBody {
    fn drop(&mut self) {
        self.0.bodies.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's I/O, recording when bytes move.
pub(crate) struct Tracked<I> {
    io: I,
    activity: Arc<Activity>,
    /// hyper's own error answer, being written with an `x-request-id` added.
    rewrite: Option<Rewrite>,
}

impl<I> Tracked<I> {
    pub(crate) fn new(io: I, activity: Arc<Activity>) -> Self {
        Tracked {
            io,
            activity,
            rewrite: None,
        }
    }
}

/// The answer hyper writes itself for a request head it cannot take (`400`, `431`, ...), with
/// an `x-request-id` header added: the bytes to write, how many are written, and how many of
/// hyper's bytes they stand for.
struct Rewrite {
    bytes: Vec<u8>,
    written: usize,
    stands_for: usize,
}

/// hyper's own error answer with a request id, when `data` is one: an HTTP/1 `4xx`/`5xx` head
/// with an empty body and no `x-request-id`, written while no request is in flight (so no
/// service wrote it). `None` for anything else.
fn with_request_id(data: &[u8]) -> Option<Vec<u8>> {
    let rest = data
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| data.strip_prefix(b"HTTP/1.0 "))?;
    if !matches!(rest.first(), Some(b'4' | b'5')) {
        return None;
    }
    let line_end = data.windows(2).position(|w| w == b"\r\n")? + 2;
    let head_end = data.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = &data[..head_end];
    let has = |name: &[u8]| {
        head.split(|&b| b == b'\n')
            .any(|line| line.len() > name.len() && line[..name.len()].eq_ignore_ascii_case(name))
    };
    if head_end != data.len() || has(b"x-request-id:") || !has(b"content-length: 0") {
        return None;
    }
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut id);
    let mut out = Vec::with_capacity(data.len() + 52);
    out.extend_from_slice(&data[..line_end]);
    out.extend_from_slice(b"x-request-id: ");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&data[line_end..]);
    Some(out)
}

impl<I: AsyncWrite + Unpin> Tracked<I> {
    /// Starts rewriting `data` when it is hyper's own error answer; `false` when it is not.
    fn start_rewrite(&mut self, data: &[u8]) -> bool {
        if self.rewrite.is_some()
            || self.activity.in_flight.load(Ordering::Relaxed) != 0
            || !data.starts_with(b"HTTP/1.")
        {
            return self.rewrite.is_some();
        }
        match with_request_id(data) {
            Some(bytes) => {
                self.rewrite = Some(Rewrite {
                    bytes,
                    written: 0,
                    stands_for: data.len(),
                });
                true
            }
            None => false,
        }
    }

    /// Writes the rewritten answer; once all of it is written, hyper is told its bytes were.
    fn poll_rewrite(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        while let Some(rewrite) = self.rewrite.as_mut() {
            if rewrite.written == rewrite.bytes.len() {
                let n = rewrite.stands_for;
                self.rewrite = None;
                return Poll::Ready(Ok(n));
            }
            let n = std::task::ready!(
                Pin::new(&mut self.io).poll_write(cx, &rewrite.bytes[rewrite.written..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            rewrite.written += n;
        }
        Poll::Ready(Ok(0))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            let first = !self.activity.read_any.load(Ordering::Relaxed);
            self.activity.read(first.then(|| &buf.filled()[before..]));
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.start_rewrite(data) {
            return this.poll_rewrite(cx);
        }
        Pin::new(&mut this.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if let Some(first) = bufs.iter().find(|b| !b.is_empty())
            && this.start_rewrite(first)
        {
            return this.poll_rewrite(cx);
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

tokio::task_local! {
    /// The connection a request came on, while its service runs: its bodies count on it
    /// (see `intake`).
    pub(crate) static CONNECTION: Arc<Activity>;
}

/// The cap on the connections open at once, shared by the listeners of one server.
pub(crate) struct Gate {
    permits: Arc<Semaphore>,
    cap: usize,
    /// Bumped each time an accept loop finds the server at its cap.
    full: watch::Sender<u64>,
}

impl Gate {
    pub(crate) fn new(cap: usize) -> Arc<Gate> {
        let cap = cap.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Gate {
            permits: Arc::new(Semaphore::new(cap)),
            cap,
            full: watch::channel(0).0,
        })
    }

    /// The number of connections the gate lets in at once.
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// A place for one more connection, waiting (and telling the connections the server is
    /// full) while there is none.
    pub(crate) async fn enter(self: &Arc<Self>) -> OwnedSemaphorePermit {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return permit;
        }
        self.full.send_modify(|n| *n = n.wrapping_add(1));
        loop {
            if let Ok(permit) = self.permits.clone().acquire_owned().await {
                return permit;
            }
        }
    }

    pub(crate) fn pressure(self: &Arc<Self>) -> Pressure {
        Pressure {
            gate: self.clone(),
            full: self.full.subscribe(),
        }
    }
}

/// Whether the server is at its connection cap, for a connection's bounds.
pub(crate) struct Pressure {
    gate: Arc<Gate>,
    full: watch::Receiver<u64>,
}

impl Pressure {
    pub(crate) fn on(&self) -> bool {
        self.gate.permits.available_permits() == 0
    }

    /// Resolves when an accept loop next finds the server at its cap.
    pub(crate) async fn changed(&mut self) {
        if self.full.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Resolves when the connection's current phase has run past its bound: how. Re-reads the
/// phase when `pressure` changes (the server reaching or leaving its connection cap).
pub(crate) async fn expired(
    activity: &Activity,
    bounds: Bounds,
    pressure: &mut Pressure,
) -> Expired {
    // The watchdog sleeps at most this long, so that it sees a phase change (a request that
    // ended, a head that began) in time without being woken for each: a request's end wakes it
    // only when the keep-alive is the shorter bound.
    let period = [bounds.header, bounds.keep_alive]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(Duration::from_secs(30));
    let mut progress = Progress::new();
    loop {
        let now = Instant::now();
        let next = match activity.deadline(bounds, pressure.on(), now, &mut progress) {
            Err(expired) => return expired,
            Ok(Some(at)) => at.min(now + period),
            Ok(None) => now + period,
        };
        let armed = u64::try_from((next - activity.start).as_millis()).unwrap_or(NEVER - 1);
        activity.armed_ms.store(armed, Ordering::Relaxed);
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = pressure.changed() => {}
            () = activity.wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Bounds = Bounds {
        header: Some(Duration::from_secs(30)),
        keep_alive: Some(Duration::from_secs(90)),
    };

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// A writer that takes at most three bytes a call, and is pending every other call.
    struct Trickle {
        out: Vec<u8>,
        pending: bool,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.pending = !self.pending;
            if self.pending {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = data.len().min(3);
            self.out.extend_from_slice(&data[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// What `bytes` become when written through a connection's wrapper, three bytes a call.
    async fn written(activity: &Arc<Activity>, bytes: &[u8]) -> Vec<u8> {
        use tokio::io::AsyncWriteExt as _;
        let trickle = Trickle {
            out: Vec::new(),
            pending: false,
        };
        let mut io = Tracked::new(trickle, activity.clone());
        io.write_all(bytes).await.unwrap();
        io.io.out
    }

    #[tokio::test]
    async fn hypers_own_error_answer_gets_a_request_id_through_partial_writes() {
        let answer = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let activity = Activity::new(BOUNDS);
        let out = String::from_utf8(written(&activity, answer).await).unwrap();
        let (line, rest) = out.split_once("\r\n").unwrap();
        assert_eq!(line, "HTTP/1.1 431 Request Header Fields Too Large");
        let id = rest.strip_prefix("x-request-id: ").unwrap();
        assert!(uuid::Uuid::parse_str(&id[..36]).is_ok(), "{id:?}");
        assert_eq!(
            &id[36..],
            "\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n"
        );

        // A service's answer (it has an id), a body, or anything while a request is in flight
        // passes untouched.
        let served = b"HTTP/1.1 404 Not Found\r\nx-request-id: a\r\ncontent-length: 0\r\n\r\n";
        let body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nmore";
        for bytes in [
            &served[..],
            &body[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        ] {
            assert_eq!(written(&activity, bytes).await, bytes);
        }
        let _in_flight = activity.begin();
        assert_eq!(written(&activity, answer).await, answer);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_has_the_header_timeout() {
        let a = Activity::new(BOUNDS);
        let start = Instant::now();
        assert_eq!(
            a.deadline(BOUNDS, false, start, &mut Progress::new()),
            Ok(Some(start + secs(30)))
        );
        assert_eq!(
            a.deadline(BOUNDS, false, start + secs(30), &mut Progress::new()),
            Err(Expired::Head)
        );
        // At the cap, one second.
        assert_eq!(
            a.deadline(BOUNDS, true, start + secs(1), &mut Progress::new()),
            Err(Expired::Head)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keep_alive_has_its_own_bound_at_any_value() {
        let a = Activity::new(BOUNDS);
        let start = Instant::now();
        let request = a.begin();
        assert_eq!(
            a.deadline(BOUNDS, false, start + secs(500), &mut Progress::new()),
            Ok(None)
        );
        tokio::time::advance(secs(10)).await;
        drop(request);
        // Idle from the end of the response, for the keep-alive timeout (above the header's).
        assert_eq!(
            a.deadline(BOUNDS, false, Instant::now(), &mut Progress::new()),
            Ok(Some(start + secs(100)))
        );
        // A new head's first byte: the header timeout from there.
        tokio::time::advance(secs(50)).await;
        a.read(None);
        assert_eq!(
            a.deadline(BOUNDS, false, Instant::now(), &mut Progress::new()),
            Ok(Some(start + secs(90)))
        );
        let off = Bounds {
            keep_alive: None,
            ..BOUNDS
        };
        let b = Activity::new(BOUNDS);
        drop(b.begin());
        assert_eq!(
            b.deadline(
                off,
                false,
                Instant::now() + secs(10_000),
                &mut Progress::new()
            ),
            Ok(None)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn http2_frames_between_streams_do_not_restart_the_idle_time() {
        let a = Activity::new(BOUNDS);
        let start = Instant::now();
        a.read(Some(b"PRI * HTTP/2.0"));
        drop(a.begin());
        tokio::time::advance(secs(60)).await;
        a.read(None); // a PING
        assert_eq!(
            a.deadline(BOUNDS, false, Instant::now(), &mut Progress::new()),
            Ok(Some(start + secs(90)))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_cut_only_under_pressure() {
        let a = Activity::new(BOUNDS);
        let _request = a.begin();
        let _body = a.reading_body();
        let t0 = Instant::now();
        let mut progress = Progress::new();
        assert_eq!(
            a.deadline(BOUNDS, false, t0 + secs(5), &mut progress),
            Ok(None)
        );
        assert_eq!(
            a.deadline(BOUNDS, true, t0, &mut progress),
            Ok(Some(t0 + secs(1)))
        );
        assert_eq!(
            a.deadline(BOUNDS, true, t0 + secs(1), &mut progress),
            Err(Expired::StalledBody)
        );
        // A byte of progress gives it another second.
        a.read(None);
        assert_eq!(
            a.deadline(BOUNDS, true, t0 + secs(1), &mut progress),
            Ok(Some(t0 + secs(2)))
        );
    }
}
