//! Standard error in batches: a log line is copied into a buffer under a lock, and a writer
//! thread writes what has gathered in one system call, at most [`LATENCY`] after the first
//! line of a batch. A request that logs pays for a copy, never for a write of its own, and a
//! burst of lines costs one write.

use std::io::Write;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// How long a line may wait to be written with others.
const LATENCY: Duration = Duration::from_millis(20);

/// Above this many bytes waiting, lines are written at once.
const HIGH_WATER: usize = 256 * 1024;

/// Beyond this many bytes waiting (the writer cannot keep up: standard error is a full pipe),
/// lines wait for room rather than grow the buffer.
const MOST: usize = 8 * 1024 * 1024;

struct Shared {
    /// Whether the writer thread runs; without it, lines are written as they come.
    threaded: bool,
    buffer: Mutex<Vec<u8>>,
    /// Signalled when a batch begins, when the buffer fills, and when room is made.
    changed: Condvar,
}

static SHARED: OnceLock<&'static Shared> = OnceLock::new();

fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<&'static Shared>();
        let spawned = std::thread::Builder::new()
            .name("rayai-log".to_owned())
            .spawn(move || {
                if let Ok(shared) = rx.recv() {
                    write_loop(shared);
                }
            });
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            threaded: spawned.is_ok(),
            buffer: Mutex::new(Vec::with_capacity(64 * 1024)),
            changed: Condvar::new(),
        }));
        let _ = tx.send(shared);
        shared
    })
}

/// Appends one or more whole lines.
pub(crate) fn append(line: &[u8]) {
    let shared = shared();
    if !shared.threaded {
        write_out(line);
        return;
    }
    let mut buffer = shared.buffer.lock().unwrap_or_else(PoisonError::into_inner);
    while buffer.len() + line.len() > MOST && !buffer.is_empty() {
        shared.changed.notify_all();
        buffer = shared
            .changed
            .wait(buffer)
            .unwrap_or_else(PoisonError::into_inner);
    }
    let began = buffer.is_empty();
    buffer.extend_from_slice(line);
    if began || buffer.len() >= HIGH_WATER {
        shared.changed.notify_all();
    }
}

/// Writes what is waiting now (at shutdown, before the process exits).
pub(crate) fn flush() {
    // Nothing was ever logged here: nothing to write (and no writer thread to start).
    let Some(shared) = SHARED.get() else {
        return;
    };
    let batch = std::mem::take(&mut *shared.buffer.lock().unwrap_or_else(PoisonError::into_inner));
    write_out(&batch);
    shared.changed.notify_all();
}

fn write_out(batch: &[u8]) {
    if !batch.is_empty() {
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(batch);
        let _ = stderr.flush();
    }
}

fn write_loop(shared: &'static Shared) {
    let mut spare = Vec::with_capacity(64 * 1024);
    loop {
        {
            let mut buffer = shared.buffer.lock().unwrap_or_else(PoisonError::into_inner);
            while buffer.is_empty() {
                buffer = shared
                    .changed
                    .wait(buffer)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            // Let the batch gather for a moment, unless it is already large.
            if buffer.len() < HIGH_WATER {
                buffer = shared
                    .changed
                    .wait_timeout(buffer, LATENCY)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            std::mem::swap(&mut *buffer, &mut spare);
        }
        shared.changed.notify_all();
        write_out(&spare);
        spare.clear();
        if spare.capacity() > HIGH_WATER * 4 {
            spare.shrink_to(64 * 1024);
        }
    }
}
