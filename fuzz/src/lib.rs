//! The reference models the fuzz targets check rayai's parsers against, written from the
//! contract (`docs/contract.md`) and the parsers' documentation rather than from their code.
//! Each `check` function panics (which libFuzzer reports as a crash) when the code under test
//! and its model disagree.

use rayai_http::fuzz::{ChatBody, ChatShape, ChatStream};
use serde_json::{Value, json};

/// The chat body: `POST .../chat` and `POST .../`.
pub mod chat {
    use super::*;

    /// The contract's reading of a body that is JSON: the request, or the `(type, loc)` of each
    /// error, in the order of the fields.
    pub fn model(value: &Value, shape: ChatShape) -> Result<ChatBody, Vec<(String, Value)>> {
        let Value::Object(fields) = value else {
            return Err(vec![("model_attributes_type".into(), json!(["body"]))]);
        };
        let mut errors: Vec<(String, Value)> = Vec::new();
        let data = match shape {
            ChatShape::Chat => match fields.get("data") {
                None => {
                    errors.push(("missing".into(), json!(["body", "data"])));
                    Value::Null
                }
                Some(data @ Value::Object(_)) => data.clone(),
                Some(_) => {
                    errors.push(("dict_type".into(), json!(["body", "data"])));
                    Value::Null
                }
            },
            ChatShape::Query => match fields.get("query") {
                None => {
                    errors.push(("missing".into(), json!(["body", "query"])));
                    Value::Null
                }
                Some(Value::String(q)) => json!({"messages": [{"role": "user", "content": q}]}),
                Some(_) => {
                    errors.push(("string_type".into(), json!(["body", "query"])));
                    Value::Null
                }
            },
        };
        let session_id = match fields.get("session_id") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                errors.push(("string_type".into(), json!(["body", "session_id"])));
                None
            }
        };
        let stream = match fields.get("stream") {
            None | Some(Value::Bool(false)) => ChatStream::Off,
            Some(Value::Number(n)) if n.as_f64() == Some(0.0) => ChatStream::Off,
            Some(Value::String(s)) if s == "text" => ChatStream::Text,
            Some(Value::String(s)) if s == "events" => ChatStream::Events,
            Some(_) => {
                errors.push(("literal_error".into(), json!(["body", "stream"])));
                ChatStream::Off
            }
        };
        if errors.is_empty() {
            Ok(ChatBody {
                data,
                session_id,
                stream,
            })
        } else {
            Err(errors)
        }
    }

    /// Checks that `detail` is a FastAPI `detail` list for `body`.
    pub fn check_detail(detail: &Value, body: &[u8]) {
        let errors = detail.as_array().expect("detail is a list");
        assert!(!errors.is_empty(), "an empty detail");
        for error in errors {
            let ty = error["type"].as_str().expect("a type");
            assert!(!ty.is_empty());
            assert!(
                error["msg"].as_str().is_some_and(|m| !m.is_empty()),
                "no msg: {error}"
            );
            assert!(error.get("input").is_some(), "no input: {error}");
            let loc = error["loc"].as_array().expect("a loc list");
            assert_eq!(loc.first(), Some(&json!("body")), "{error}");
            if ty == "json_invalid" {
                let offset = loc.get(1).and_then(Value::as_u64).expect("a byte offset");
                assert!(
                    offset <= body.len() as u64,
                    "offset outside the body: {error}"
                );
                assert!(error["ctx"]["error"].is_string(), "no ctx.error: {error}");
            }
        }
    }

    /// Checks the parser against the model on `body`.
    pub fn check(body: &[u8], shape: ChatShape) {
        let got = rayai_http::fuzz::chat_body(body, shape);
        if body.is_empty() {
            assert_eq!(
                got.expect_err("an empty body is refused"),
                json!([{"type": "missing", "loc": ["body"], "msg": "Field required", "input": null}])
            );
            return;
        }
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            let detail = got.expect_err("malformed JSON is refused");
            check_detail(&detail, body);
            assert_eq!(detail.as_array().map(Vec::len), Some(1));
            assert_eq!(detail[0]["type"], "json_invalid");
            return;
        };
        match (got, model(&value, shape)) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(detail), Err(want)) => {
                check_detail(&detail, body);
                let got: Vec<(String, Value)> = detail
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        (
                            e["type"].as_str().unwrap_or("").to_owned(),
                            e["loc"].clone(),
                        )
                    })
                    .collect();
                assert_eq!(got, want);
            }
            (got, want) => panic!("got {got:?}, the contract says {want:?}"),
        }
    }
}

/// The path check before the route lookup.
pub mod path {
    /// `bytes` with every `%XX` escape decoded once; a `%` that starts no escape stays.
    pub fn percent_decode(bytes: &[u8]) -> Vec<u8> {
        let hex = |b: u8| (b as char).to_digit(16);
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                )
            {
                out.push((h * 16 + l) as u8);
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        out
    }

    /// Why the server must refuse `path`: a segment that, decoded once, holds a separator, or
    /// is `.` or `..`; `None` when no normalisation of the decoded path can leave its segments.
    pub fn refusal(path: &str) -> Option<&'static str> {
        let segments: Vec<Vec<u8>> = path
            .split('/')
            .map(|s| percent_decode(s.as_bytes()))
            .collect();
        if segments
            .iter()
            .any(|s| s.contains(&b'/') || s.contains(&b'\\'))
        {
            return Some("Invalid path: encoded slashes and backslashes are not allowed");
        }
        if segments.iter().any(|s| s == b"." || s == b"..") {
            return Some("Invalid path: '.' and '..' segments are not allowed");
        }
        None
    }

    /// Checks the server's verdict on `path` against [`refusal`].
    pub fn check(path: &str) {
        let got = rayai_http::fuzz::check_path(path);
        assert_eq!(got.err(), refusal(path), "{path:?}");
    }
}

/// The route table.
pub mod route {
    /// The documented prefix rules (`rayai_core::route`), written out again.
    pub fn prefix_is_valid(prefix: &str) -> bool {
        prefix.starts_with('/')
            && (prefix == "/" || !prefix.ends_with('/'))
            && !prefix.contains("//")
            && !prefix.split('/').any(|s| s == "." || s == "..")
            && !prefix
                .bytes()
                .any(|b| b.is_ascii_control() || b" ?#%{}".contains(&b))
    }

    /// The longest prefix `path` starts with by whole segments, and the path below it.
    pub fn lookup<'a, 'p>(prefixes: &[&'p str], path: &'a str) -> Option<(&'p str, &'a str)> {
        prefixes
            .iter()
            .filter_map(|&p| {
                if p == "/" {
                    return path.starts_with('/').then_some((p, path));
                }
                let rest = path.strip_prefix(p)?;
                (rest.is_empty() || rest.starts_with('/')).then_some((p, rest))
            })
            .max_by_key(|(p, _)| p.len())
    }
}

/// Server-Sent Events as a client reads them.
pub mod sse {
    /// One event: its data, and the fields other than `data` it had (`name: value`).
    #[derive(Debug, PartialEq)]
    pub struct Event {
        /// The `data` lines joined with LF.
        pub data: String,
        /// Any other field.
        pub others: Vec<String>,
    }

    /// Reads an SSE body as a browser's `EventSource` does (WHATWG HTML, "interpreting an event
    /// stream"): lines end at CRLF, LF or CR; `:` starts a comment; a blank line dispatches the
    /// event if it has data. Also returns what follows the last complete line.
    pub fn events(body: &str) -> (Vec<Event>, &str) {
        let mut events = Vec::new();
        let mut data: Option<String> = None;
        let mut others = Vec::new();
        let mut rest = body;
        while let Some(end) = rest.find(['\r', '\n']) {
            let line = &rest[..end];
            let skip = if rest[end..].starts_with("\r\n") {
                2
            } else {
                1
            };
            rest = &rest[end + skip..];
            if line.is_empty() {
                if let Some(mut d) = data.take() {
                    d.pop();
                    events.push(Event {
                        data: d,
                        others: std::mem::take(&mut others),
                    });
                }
                others.clear();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            if field == "data" {
                let d = data.get_or_insert_with(String::new);
                d.push_str(value);
                d.push('\n');
            } else {
                others.push(format!("{field}: {value}"));
            }
        }
        (events, rest)
    }

    /// A chunk's text as a client reads it: every line break (CRLF, CR, LF) a LF.
    pub fn normalise(chunk: &str) -> String {
        chunk.replace("\r\n", "\n").replace('\r', "\n")
    }

    /// Checks that `frame` is one complete event of `data:` lines and nothing else, and returns
    /// its data.
    pub fn one_event(frame: &[u8]) -> String {
        let text = std::str::from_utf8(frame).expect("a frame is UTF-8");
        assert!(text.ends_with("\n\n"), "{text:?}");
        assert!(
            !text.contains('\r'),
            "a CR in a frame ends a line: {text:?}"
        );
        assert_eq!(text.find("\n\n"), Some(text.len() - 2), "{text:?}");
        for line in text[..text.len() - 2].split('\n') {
            assert!(line.starts_with("data: "), "{line:?} in {text:?}");
        }
        let (mut events, rest) = events(text);
        assert_eq!(rest, "");
        assert_eq!(events.len(), 1, "{text:?}");
        let event = events.remove(0);
        assert!(event.others.is_empty(), "{:?}", event.others);
        event.data
    }
}

/// Memory strings (`"2GB"`, `"1.5 GiB"`).
pub mod memory {
    use rayai_rules::MemoryError;

    /// `floor(0.<digits> * 2^shift)`, exactly, by doubling the decimal fraction.
    fn fraction_bytes(digits: &[u8], shift: u32) -> u128 {
        let mut digits: Vec<u8> = digits.iter().map(|d| d - b'0').collect();
        let mut whole: u128 = 0;
        for _ in 0..shift {
            let mut carry = 0;
            for d in digits.iter_mut().rev() {
                let v = *d * 2 + carry;
                *d = v % 10;
                carry = v / 10;
            }
            whole = whole * 2 + u128::from(carry);
        }
        whole
    }

    /// The documented grammar of `parse_memory`: white space around, a decimal number, white
    /// space, a binary unit (K/KB/KiB ... T/TB/TiB, any case); the exact size rounded down to
    /// whole bytes.
    pub fn model(input: &str) -> Result<u64, MemoryError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(MemoryError::Empty);
        }
        if s.starts_with('-') {
            return Err(MemoryError::Negative);
        }
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, unit) = (&s[..split], s[split..].trim());
        if number.is_empty() {
            return Err(MemoryError::BadNumber);
        }
        if unit.is_empty() {
            return Err(MemoryError::MissingUnit);
        }
        let shift = match unit.to_ascii_lowercase().as_str() {
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            "t" | "tb" | "tib" => 40,
            // A second number after white space: `1 2GB`.
            _ if unit.starts_with(|c: char| c.is_ascii_digit() || c == '.') => {
                return Err(MemoryError::BadNumber);
            }
            _ => return Err(MemoryError::UnknownUnit),
        };
        if number == "." || number.matches('.').count() > 1 {
            return Err(MemoryError::BadNumber);
        }
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            match whole.parse::<u64>() {
                Ok(w) => u128::from(w),
                Err(_) => return Err(MemoryError::Overflow),
            }
        };
        let bytes = (whole << shift) + fraction_bytes(fraction.as_bytes(), shift);
        u64::try_from(bytes).map_err(|_| MemoryError::Overflow)
    }

    /// Checks `parse_memory` against [`model`].
    pub fn check(input: &str) {
        assert_eq!(rayai_rules::parse_memory(input), model(input), "{input:?}");
    }
}
