//! The default subscriber's readable lines, written the way tracing's `fmt` writes them
//! (`2026-12-01T19:11:44.069741Z  INFO rayai::access: POST /agents/echo 200 request_id="…"
//! status=200 …`), but built in a reused buffer with no formatting machinery for the parts a
//! line always has, and handed to [`super::batch`]: a log line costs a few thousand
//! instructions and no system call of the request that logs it.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;

use super::numbers::{push_padded, push_thousandths};

/// The layer that writes each event as one readable line on standard error.
pub(crate) struct TextLayer {
    /// Colored levels (standard error is a terminal).
    ansi: bool,
}

impl TextLayer {
    pub(crate) fn new(ansi: bool) -> Self {
        TextLayer { ansi }
    }
}

thread_local! {
    /// The line being built, and the timestamp's text up to its second, with that second.
    static LINE: RefCell<(String, u64, String)> = const { RefCell::new((String::new(), u64::MAX, String::new())) };
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for TextLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let write = |state: &mut (String, u64, String)| {
            let (line, second, prefix) = state;
            line.clear();
            timestamp(line, second, prefix);
            level(line, *event.metadata().level(), self.ansi);
            line.push_str(event.metadata().target());
            line.push_str(": ");
            event.record(&mut Fields { line, first: true });
            line.push('\n');
            super::batch::append(line.as_bytes());
            if line.capacity() > 64 * 1024 {
                *line = String::new();
            }
        };
        // A subscriber called from inside itself (a value's `Debug` that logs) gets a buffer of
        // its own.
        let written = LINE.try_with(|state| match state.try_borrow_mut() {
            Ok(mut state) => write(&mut state),
            Err(_) => write(&mut (String::new(), u64::MAX, String::new())),
        });
        if written.is_err() {
            write(&mut (String::new(), u64::MAX, String::new()));
        }
    }
}

/// `2026-12-01T19:11:44.069741Z `, the part up to the second reused while it lasts.
fn timestamp(line: &mut String, second: &mut u64, prefix: &mut String) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    if secs != *second {
        *second = secs;
        prefix.clear();
        let (y, m, d) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
        let rest = secs % 86_400;
        let _ = write!(
            prefix,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.",
            rest / 3600,
            rest / 60 % 60,
            rest % 60
        );
    }
    line.push_str(prefix);
    push_padded(line, u64::from(now.subsec_micros()), 6);
    line.push_str("Z ");
}

/// The level, padded as tracing pads it (` INFO `, `ERROR `), colored on a terminal.
fn level(line: &mut String, level: Level, ansi: bool) {
    let (text, color) = match level {
        Level::TRACE => ("TRACE ", "\x1b[35m"),
        Level::DEBUG => ("DEBUG ", "\x1b[34m"),
        Level::INFO => (" INFO ", "\x1b[32m"),
        Level::WARN => (" WARN ", "\x1b[33m"),
        Level::ERROR => ("ERROR ", "\x1b[31m"),
    };
    if ansi {
        line.push_str(color);
        line.push_str(text);
        line.push_str("\x1b[0m");
    } else {
        line.push_str(text);
    }
}

/// (year, month, day) of a day counted from 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Writes an event's message, then its other fields as `name=value`.
struct Fields<'a> {
    line: &'a mut String,
    first: bool,
}

impl Fields<'_> {
    fn name(&mut self, field: &Field) {
        if !self.first {
            self.line.push(' ');
        }
        self.first = false;
        if field.name() != "message" {
            self.line.push_str(field.name());
            self.line.push('=');
        }
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.name(field);
        if field.name() == "message" {
            self.line.push_str(value);
        } else if value
            .bytes()
            .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b != 0x7f)
        {
            self.line.push('"');
            self.line.push_str(value);
            self.line.push('"');
        } else {
            let _ = write!(self.line, "{value:?}");
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.name(field);
        push_padded(self.line, value, 1);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.name(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.name(field);
        self.line.push_str(if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.name(field);
        // Milliseconds and the like: three decimals.
        push_thousandths(self.line, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.name(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.name(field);
        let _ = write!(self.line, "{value:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_become_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_788), (2026, 12, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn fields_are_written_as_tracing_writes_them() {
        use tracing_subscriber::layer::SubscriberExt;
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        struct Capture(std::sync::Arc<std::sync::Mutex<Vec<String>>>);
        impl<S: Subscriber> tracing_subscriber::Layer<S> for Capture {
            fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
                let mut line = String::new();
                event.record(&mut Fields {
                    line: &mut line,
                    first: true,
                });
                self.0.lock().unwrap().push(line);
            }
        }
        let subscriber = tracing_subscriber::registry().with(Capture(lines.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                request_id = "abc",
                status = 200u16,
                latency_ms = 1.2345,
                odd = "a\"b",
                "POST {} {}",
                "/agents/echo",
                200
            );
        });
        assert_eq!(
            lines.lock().unwrap()[0],
            r#"POST /agents/echo 200 request_id="abc" status=200 latency_ms=1.235 odd="a\"b""#
        );
    }
}
