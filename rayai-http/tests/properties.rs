//! Properties of the code that reads client bytes: the chat body parser, the path check, the
//! `Host` check, the route table's lookup and the SSE framing. Bounded (256 cases each by
//! default); `PROPTEST_CASES=100000 cargo test -p rayai-http --test properties` runs them longer,
//! and `fuzz/` has the same checks as cargo-fuzz targets for runs of hours.
//!
//! The expected answers come from small reference models written here from the contract
//! (`docs/contract.md`), not from the code under test.

use http::{HeaderValue, Version};
use proptest::collection::vec;
use proptest::prelude::*;
use rayai_core::route::{RouteTable, join_prefix};
use rayai_http::DONE_FRAME;
use rayai_http::fuzz::{
    ChatBody, ChatShape, ChatStream, chat_body, check_path, host_is_valid, sse_error_frame,
    sse_json_frame, sse_text_frame, sse_text_stream,
};
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------------------------
// Generators

/// A float that any JSON reader reads back exactly (a small binary fraction).
fn exact_float() -> impl Strategy<Value = f64> {
    (any::<i32>(), 0u32..8).prop_map(|(m, e)| f64::from(m) / f64::from(1u32 << e))
}

/// Text with the characters that trip parsers and framers: quotes, escapes, line breaks,
/// non-ASCII.
fn tricky_text() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            Just("\n"),
            Just("\r"),
            Just("\r\n"),
            Just("\n\n"),
            Just("\""),
            Just("\\"),
            Just("data: "),
            Just(":"),
            Just(" "),
            Just("é"),
            Just("\u{2028}"),
            Just("\0"),
            Just("a"),
            Just("{\"type\": \"done\"}"),
        ],
        0..8,
    )
    .prop_map(|parts| parts.concat())
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        exact_float().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        tricky_text().prop_map(Value::String),
    ]
}

/// Any JSON value whose floats read back exactly.
fn json() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            vec((json_key(), inner), 0..5)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("data".to_owned()),
        Just("query".to_owned()),
        Just("stream".to_owned()),
        Just("session_id".to_owned()),
        "[a-z]{1,6}",
        any::<String>(),
    ]
}

fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    vec((json_key(), json()), 0..5).prop_map(|pairs| pairs.into_iter().collect())
}

// ---------------------------------------------------------------------------------------------
// The chat body

/// The contract's reading of a body that is a JSON value (`docs/contract.md`, "The request" and
/// "Errors"): the request, or the `(type, loc)` of each error, in the order of the fields.
fn chat_model(value: &Value, shape: ChatShape) -> Result<ChatBody, Vec<(&'static str, Value)>> {
    let Value::Object(fields) = value else {
        return Err(vec![("model_attributes_type", json!(["body"]))]);
    };
    let mut errors = Vec::new();
    let data = match shape {
        ChatShape::Chat => match fields.get("data") {
            None => {
                errors.push(("missing", json!(["body", "data"])));
                Value::Null
            }
            Some(data @ Value::Object(_)) => data.clone(),
            Some(_) => {
                errors.push(("dict_type", json!(["body", "data"])));
                Value::Null
            }
        },
        ChatShape::Query => match fields.get("query") {
            None => {
                errors.push(("missing", json!(["body", "query"])));
                Value::Null
            }
            Some(Value::String(q)) => json!({"messages": [{"role": "user", "content": q}]}),
            Some(_) => {
                errors.push(("string_type", json!(["body", "query"])));
                Value::Null
            }
        },
    };
    let session_id = match fields.get("session_id") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.push(("string_type", json!(["body", "session_id"])));
            None
        }
    };
    let stream = match fields.get("stream") {
        None | Some(Value::Bool(false)) => ChatStream::Off,
        // Every numeric zero (`0`, `-0`, `0.0`, `0e0`) is `false`; `true`, `null` and other
        // numbers are not.
        Some(Value::Number(n)) if n.as_f64() == Some(0.0) => ChatStream::Off,
        Some(Value::String(s)) if s == "text" => ChatStream::Text,
        Some(Value::String(s)) if s == "events" => ChatStream::Events,
        Some(_) => {
            errors.push(("literal_error", json!(["body", "stream"])));
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

/// Checks that `detail` is a FastAPI `detail` list for `body`: one object per error, each with
/// a `type`, a `loc` under `body`, a `msg` and the `input`; a `json_invalid` error's `loc` is a
/// byte offset inside the body.
fn assert_detail_shape(detail: &Value, body: &[u8]) -> Result<(), TestCaseError> {
    let errors = detail.as_array();
    prop_assert!(
        errors.is_some_and(|e| !e.is_empty()),
        "not a non-empty list: {detail}"
    );
    for error in errors.into_iter().flatten() {
        let ty = error["type"].as_str();
        prop_assert!(ty.is_some_and(|t| !t.is_empty()), "no type: {error}");
        prop_assert!(
            error["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "no msg: {error}"
        );
        prop_assert!(error.get("input").is_some(), "no input: {error}");
        let loc = error["loc"].as_array();
        prop_assert!(
            loc.is_some_and(|l| l.first() == Some(&json!("body"))),
            "loc not under body: {error}"
        );
        if ty == Some("json_invalid") {
            let offset = error["loc"][1].as_u64();
            prop_assert!(
                offset.is_some_and(|o| o <= body.len() as u64),
                "offset outside the body: {error}"
            );
            prop_assert!(error["ctx"]["error"].is_string(), "no ctx.error: {error}");
        }
        if ty == Some("literal_error") {
            prop_assert_eq!(
                &error["msg"],
                &json!("Input should be False, 'text' or 'events'")
            );
        }
    }
    Ok(())
}

/// Checks the parser against the model on `body`.
fn check_chat(body: &[u8], shape: ChatShape) -> Result<(), TestCaseError> {
    let got = chat_body(body, shape);
    if body.is_empty() {
        let detail = got.expect_err("an empty body is refused");
        prop_assert_eq!(
            detail,
            json!([{"type": "missing", "loc": ["body"], "msg": "Field required", "input": null}])
        );
        return Ok(());
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        let detail = got.expect_err("malformed JSON is refused");
        assert_detail_shape(&detail, body)?;
        prop_assert_eq!(detail.as_array().map(Vec::len), Some(1));
        prop_assert_eq!(&detail[0]["type"], "json_invalid");
        return Ok(());
    };
    match (got, chat_model(&value, shape)) {
        (Ok(got), Ok(want)) => prop_assert_eq!(got, want),
        (Err(detail), Err(want)) => {
            assert_detail_shape(&detail, body)?;
            let got: Vec<(&str, Value)> = detail
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| (e["type"].as_str().unwrap_or(""), e["loc"].clone()))
                .collect();
            prop_assert_eq!(got, want);
        }
        (got, want) => prop_assert!(false, "got {got:?}, the contract says {want:?}"),
    }
    Ok(())
}

fn shape() -> impl Strategy<Value = ChatShape> {
    prop_oneof![Just(ChatShape::Chat), Just(ChatShape::Query)]
}

/// The `stream` values the contract accepts, with what they mean; `None` leaves it out.
const STREAMS: [(Option<&str>, ChatStream); 5] = [
    (None, ChatStream::Off),
    (Some("false"), ChatStream::Off),
    (Some("0"), ChatStream::Off),
    (Some("\"text\""), ChatStream::Text),
    (Some("\"events\""), ChatStream::Events),
];

/// Values the contract refuses for `stream`.
const BAD_STREAMS: [&str; 10] = [
    "true",
    "null",
    "1",
    "-1",
    "0.5",
    "\"TEXT\"",
    "\"\"",
    "\"false\"",
    "[]",
    "{}",
];

proptest! {
    /// Any bytes at all: the answer the contract gives, never a panic.
    #[test]
    fn the_chat_parser_reads_any_bytes_as_the_contract_does(
        body in vec(any::<u8>(), 0..128),
        shape in shape(),
    ) {
        check_chat(&body, shape)?;
    }

    /// Any JSON document (most of them objects with the contract's keys), compact or pretty.
    #[test]
    fn the_chat_parser_reads_any_json_as_the_contract_does(
        value in prop_oneof![3 => json_object().prop_map(Value::Object), 1 => json()],
        pretty in any::<bool>(),
        shape in shape(),
    ) {
        let body = if pretty { serde_json::to_vec_pretty(&value) } else { serde_json::to_vec(&value) }
            .expect("a value serializes");
        check_chat(&body, shape)?;
    }

    /// A valid body is accepted, and the agent gets its `data`, session and mode as sent, whatever
    /// else the body carries.
    #[test]
    fn valid_bodies_round_trip(
        data in json_object(),
        query in any::<String>(),
        session_id in proptest::option::of(any::<String>()),
        stream in 0..STREAMS.len(),
        extras in json_object(),
        shape in shape(),
    ) {
        let mut body = Map::new();
        for (key, value) in extras {
            if !["data", "query", "session_id", "stream"].contains(&key.as_str()) {
                body.insert(key, value);
            }
        }
        let (stream_text, stream_mode) = STREAMS[stream];
        let mut text = serde_json::to_string(&Value::Object(body)).expect("serializes");
        text.pop(); // the closing brace: the contract's fields are written after the extras
        let mut field = |key: &str, value: String| {
            if !text.ends_with('{') {
                text.push(',');
            }
            text.push_str(&format!("{}:{value}", Value::from(key)));
        };
        match shape {
            ChatShape::Chat => field("data", Value::Object(data.clone()).to_string()),
            ChatShape::Query => field("query", Value::from(query.as_str()).to_string()),
        }
        if let Some(s) = &session_id {
            field("session_id", Value::from(s.as_str()).to_string());
        }
        if let Some(s) = stream_text {
            field("stream", s.to_owned());
        }
        text.push('}');
        let got = chat_body(text.as_bytes(), shape);
        let want_data = match shape {
            ChatShape::Chat => Value::Object(data),
            ChatShape::Query => json!({"messages": [{"role": "user", "content": query}]}),
        };
        prop_assert_eq!(got, Ok(ChatBody { data: want_data, session_id, stream: stream_mode }), "{}", text);
    }

    /// Each field of the wrong type is reported, all of them together, in the fields' order.
    #[test]
    fn every_bad_field_is_reported(
        data in prop_oneof![json_object().prop_map(Value::Object), json()],
        session_id in proptest::option::of(json()),
        stream in proptest::option::of(prop_oneof![
            (0..STREAMS.len()).prop_filter_map("present", |i| STREAMS[i].0),
            (0..BAD_STREAMS.len()).prop_map(|i| BAD_STREAMS[i]),
        ]),
    ) {
        let mut text = format!("{{\"data\":{data}");
        if let Some(s) = &session_id {
            text.push_str(&format!(",\"session_id\":{s}"));
        }
        if let Some(s) = stream {
            text.push_str(&format!(",\"stream\":{s}"));
        }
        text.push('}');
        let mut want = Vec::new();
        if !data.is_object() {
            want.push("dict_type");
        }
        if session_id.as_ref().is_some_and(|s| !s.is_string()) {
            want.push("string_type");
        }
        if stream.is_some_and(|s| BAD_STREAMS.contains(&s)) {
            want.push("literal_error");
        }
        match chat_body(text.as_bytes(), ChatShape::Chat) {
            Ok(_) => prop_assert!(want.is_empty(), "accepted {}", text),
            Err(detail) => {
                assert_detail_shape(&detail, text.as_bytes())?;
                let types: Vec<&str> = detail.as_array().into_iter().flatten()
                    .filter_map(|e| e["type"].as_str()).collect();
                prop_assert_eq!(types, want, "{}", text);
            }
        }
    }

    /// A body cut short is `json_invalid` at the byte where it ends.
    #[test]
    fn a_truncated_body_is_json_invalid_at_its_end(
        data in json_object(),
        cut in any::<proptest::sample::Index>(),
    ) {
        let body = serde_json::to_vec(&json!({"data": data})).expect("serializes");
        let at = 1 + cut.index(body.len() - 1);
        let short = &body[..at];
        let detail = chat_body(short, ChatShape::Chat).expect_err("a truncated body is refused");
        assert_detail_shape(&detail, short)?;
        prop_assert_eq!(&detail[0]["type"], "json_invalid");
        prop_assert_eq!(&detail[0]["loc"], &json!(["body", at]), "{:?}", String::from_utf8_lossy(short));
    }
}

/// Found by `valid_bodies_round_trip`: a `stream` that is a zero written as `-0`, `0.0`, `-0.0`,
/// `0e0` or `1e-400` is refused with a `literal_error`, but FastAPI reads the body with Python's
/// `json` and pydantic accepts every numeric zero as `False` (checked with pydantic 2.13.4, whose
/// `Literal[False, "text", "events"]` takes all of these). serde_json reads them as floats, and
/// the `stream` rule of `chat::parse` took only the integer 0. Fixed: any numeric zero is `false`.
#[test]
fn a_zero_stream_is_false_however_written() {
    for zero in ["-0", "0.0", "-0.0", "0e0", "1e-400"] {
        let body = format!(r#"{{"data":{{}},"stream":{zero}}}"#);
        let got = chat_body(body.as_bytes(), ChatShape::Chat);
        assert_eq!(got.map(|b| b.stream), Ok(ChatStream::Off), "{zero}");
    }
}

/// Found by the `memory_string` fuzz target's model (`fuzz/src/lib.rs`) when given the input: a
/// fraction that is exactly a whole number of bytes but has more than 19 decimals is rounded down
/// one byte too far. `0.000000000931322574615478515625GB` is 2^-30 GiB, exactly 1 byte, and
/// `parse_memory` (rayai-rules/src/memory.rs) gives 0: it keeps only the first 19 digits of the
/// fraction, which falls just short of the boundary. A fraction of 2^shift needs `shift` digits
/// (up to 40 for TiB) to be floored exactly. Fixed: it now uses exactly `shift` digits.
#[test]
fn a_memory_fraction_is_floored_exactly() {
    use rayai_rules::parse_memory;
    assert_eq!(parse_memory("0.000000000931322574615478515625GB"), Ok(1));
    assert_eq!(
        parse_memory("1.0000000000009094947017729282379150390625T"),
        Ok((1 << 40) + 1)
    );
}

// ---------------------------------------------------------------------------------------------
// The path check

/// A path segment, with whether the path check must refuse it and why.
#[derive(Debug, Clone)]
enum Segment {
    /// Nothing a normalising server could read as `.`, `..` or a separator.
    Safe(String),
    /// `.` or `..`, however spelled.
    Dots(String),
    /// An encoded slash or backslash, or a backslash.
    Slash(String),
}

fn segment() -> impl Strategy<Value = Segment> {
    let dots = prop_oneof![
        Just(vec!["."]),
        Just(vec![".", "."]),
        vec(prop_oneof![Just("."), Just("%2e"), Just("%2E")], 1..=2),
    ]
    .prop_map(|parts| Segment::Dots(parts.concat()));
    let safe = prop_oneof![
        "[A-Za-z0-9_~!$&'()*+,;=:@-]{1,8}",
        Just(String::new()),
        Just("...".to_owned()),
        Just(".a".to_owned()),
        Just("a.".to_owned()),
        Just("..a".to_owned()),
        Just("%2e%2e%2e".to_owned()),
        Just("%2ea".to_owned()),
        Just("a%2E".to_owned()),
        Just(".%2e.".to_owned()),
        Just("%25".to_owned()),
        Just("%252e".to_owned()),
        Just("%2".to_owned()),
        Just("%".to_owned()),
        Just("%e2%80%a8".to_owned()),
        Just("é".to_owned()),
    ]
    .prop_map(Segment::Safe);
    let slash = (
        prop_oneof![
            Just("%2f"),
            Just("%2F"),
            Just("%5c"),
            Just("%5C"),
            Just("\\")
        ],
        "[a-z.]{0,3}",
        "[a-z.]{0,3}",
    )
        .prop_map(|(s, before, after)| Segment::Slash(format!("{before}{s}{after}")));
    prop_oneof![6 => safe, 2 => dots, 1 => slash]
}

proptest! {
    /// Any string: a verdict, never a panic; a refusal says why.
    #[test]
    fn the_path_check_never_panics(path in any::<String>()) {
        if let Err(reason) = check_path(&path) {
            prop_assert!(reason.starts_with("Invalid path: "));
        }
    }

    /// A path is refused exactly when one of its segments is `.` or `..` (in any spelling) or
    /// holds an encoded slash or backslash, and says which.
    #[test]
    fn the_path_check_refuses_exactly_the_escaping_paths(
        segments in vec(segment(), 0..6),
        trailing_slash in any::<bool>(),
    ) {
        let mut path = String::new();
        for s in &segments {
            path.push('/');
            path.push_str(match s {
                Segment::Safe(t) | Segment::Dots(t) | Segment::Slash(t) => t,
            });
        }
        if trailing_slash || path.is_empty() {
            path.push('/');
        }
        let slash = segments.iter().any(|s| matches!(s, Segment::Slash(_)));
        let dots = segments.iter().any(|s| matches!(s, Segment::Dots(_)));
        let got = check_path(&path);
        if slash {
            prop_assert_eq!(got, Err("Invalid path: encoded slashes and backslashes are not allowed"), "{}", path);
        } else if dots {
            prop_assert_eq!(got, Err("Invalid path: '.' and '..' segments are not allowed"), "{}", path);
        } else {
            prop_assert_eq!(got, Ok(()), "{}", path);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The `Host` check

/// A `host[:port]` as clients send it.
fn authority() -> impl Strategy<Value = String> {
    let host = prop_oneof![
        "[a-z0-9-]{1,12}(\\.[a-z0-9-]{1,8}){0,3}",
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
        Just("[::1]".to_owned()),
        Just("[2001:db8::7]".to_owned()),
        Just("xn--bcher-kva.example".to_owned()),
    ];
    (host, proptest::option::of(any::<u16>())).prop_map(|(host, port)| match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

fn value(text: &[u8]) -> HeaderValue {
    HeaderValue::from_bytes(text).expect("a valid header value")
}

/// Bytes a header value may hold that no `host[:port]` has: user info, paths, queries, white
/// space, quotes, and anything outside ASCII.
const NOT_IN_A_HOST: &[u8] = b" \t/@?#\\\"<>{}|^`\x80\xc3\xa9\xff";

proptest! {
    /// One `host[:port]` is accepted over HTTP/1.1 and HTTP/1.0.
    #[test]
    fn one_plain_host_is_accepted(host in authority(), http10 in any::<bool>()) {
        let version = if http10 { Version::HTTP_10 } else { Version::HTTP_11 };
        prop_assert!(host_is_valid(version, &[value(host.as_bytes())]), "{}", host);
    }

    /// A host with user info, a path, white space or any byte no host has is refused.
    #[test]
    fn a_host_with_a_foreign_byte_is_refused(
        host in authority(),
        bad in 0..NOT_IN_A_HOST.len(),
        at in any::<proptest::sample::Index>(),
    ) {
        let mut bytes = host.into_bytes();
        let at = at.index(bytes.len() + 1);
        bytes.insert(at, NOT_IN_A_HOST[bad]);
        prop_assert!(!host_is_valid(Version::HTTP_11, &[value(&bytes)]), "{:?}", bytes);
    }

    /// Two `Host` headers are refused, even when they agree.
    #[test]
    fn two_hosts_are_refused(a in authority(), b in authority(), same in any::<bool>(), http10 in any::<bool>()) {
        let version = if http10 { Version::HTTP_10 } else { Version::HTTP_11 };
        let b = if same { a.clone() } else { b };
        prop_assert!(!host_is_valid(version, &[value(a.as_bytes()), value(b.as_bytes())]));
    }

    /// Whatever the value, an accepted one holds only the bytes of RFC 3986's `host[:port]`.
    #[test]
    fn accepted_hosts_hold_only_authority_bytes(bytes in vec(prop_oneof![32u8..127, Just(b'\t'), 128u8..=255], 0..24)) {
        let accepted = host_is_valid(Version::HTTP_11, &[value(&bytes)]);
        let authority_bytes = bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%:[]".contains(&b));
        prop_assert_eq!(accepted, authority_bytes, "{:?}", String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn the_host_header_is_required_once_over_http11_only() {
    assert!(!host_is_valid(Version::HTTP_11, &[]));
    assert!(host_is_valid(Version::HTTP_10, &[]));
    // RFC 9112 §3.2: an empty `Host` is allowed (a URI without an authority).
    assert!(host_is_valid(Version::HTTP_11, &[value(b"")]));
    // HTTP/2 names the host in `:authority`, which hyper checks.
    assert!(host_is_valid(
        Version::HTTP_2,
        &[value(b"a b"), value(b"c")]
    ));
}

// ---------------------------------------------------------------------------------------------
// The route table

/// A prefix segment: letters, digits and the punctuation a prefix may hold, some of it
/// multi-byte.
fn prefix_segment() -> impl Strategy<Value = String> {
    "[ab.é_~-]{1,3}".prop_filter("not a dot segment", |s| s != "." && s != "..")
}

fn prefix() -> impl Strategy<Value = String> {
    vec(prefix_segment(), 0..4).prop_map(|segments| {
        if segments.is_empty() {
            "/".to_owned()
        } else {
            format!("/{}", segments.join("/"))
        }
    })
}

/// A request path near the prefixes: their segments, cut or extended, with or without a slash
/// at the end; sometimes any text at all.
fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (vec(prefix_segment(), 0..5), any::<bool>(), "[abé]{0,2}").prop_map(|(segments, slash, tail)| {
            let mut path = format!("/{}", segments.join("/"));
            path.push_str(&tail);
            if slash {
                path.push('/');
            }
            path
        }),
        1 => any::<String>(),
    ]
}

/// The contract's lookup: the longest prefix that the path starts with by whole segments, and
/// the path below it.
fn lookup_model<'a>(prefixes: &[String], path: &'a str) -> Option<(String, &'a str)> {
    prefixes
        .iter()
        .filter_map(|p| {
            if p == "/" {
                return path.starts_with('/').then_some((p.clone(), path));
            }
            let rest = path.strip_prefix(p.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then(|| (p.clone(), rest))
        })
        .max_by_key(|(p, _)| p.len())
}

/// The documented prefix rules, written out again.
fn prefix_is_valid(prefix: &str) -> bool {
    prefix.starts_with('/')
        && (prefix == "/" || !prefix.ends_with('/'))
        && !prefix.contains("//")
        && !prefix.split('/').any(|s| s == "." || s == "..")
        && !prefix
            .bytes()
            .any(|b| b.is_ascii_control() || b" ?#%{}".contains(&b))
}

proptest! {
    /// The lookup finds the longest whole-segment prefix and the rest of the path below it,
    /// whatever order the routes were added in; the prefix and the rest make the path again.
    #[test]
    fn the_lookup_is_the_longest_whole_segment_prefix(
        prefixes in vec(prefix(), 1..8),
        paths in vec(path(), 1..8),
        reverse in any::<bool>(),
    ) {
        let mut table = RouteTable::new();
        let mut order: Vec<&String> = prefixes.iter().collect();
        if reverse {
            order.reverse();
        }
        for p in order {
            // One application per prefix, so that no insert conflicts.
            table.insert(p, &format!("app{p}"), p.clone()).expect("a valid prefix");
        }
        for path in &paths {
            let got = table.lookup(path).map(|(route, rest)| (route.target().clone(), rest));
            prop_assert_eq!(&got, &lookup_model(&prefixes, path), "{:?}", path);
            if let Some((prefix, rest)) = got {
                prop_assert!(rest.is_empty() || rest.starts_with('/'), "{:?}", rest);
                prop_assert_eq!(join_prefix(&prefix, rest), path.as_str());
                prop_assert_eq!(table.lookup(path).map(|(r, _)| r.app().to_owned()), Some(format!("app{prefix}")));
            }
        }
    }

    /// An inserted prefix follows the documented rules; a refused one changes nothing.
    #[test]
    fn only_valid_prefixes_are_inserted(prefix in prop_oneof![any::<String>(), "[/a.{} ?#%\\t]{0,6}"]) {
        let mut table = RouteTable::new();
        table.insert("/other", "other", ()).expect("a valid prefix");
        let inserted = table.insert(&prefix, "app", ()).is_ok();
        let want = prefix_is_valid(&prefix) && prefix != "/other";
        prop_assert_eq!(inserted, want, "{:?}", prefix);
        prop_assert_eq!(table.iter().count(), if inserted { 2 } else { 1 });
        prop_assert!(table.iter().any(|r| r.prefix() == "/other" && r.app() == "other"));
    }

    /// A prefix is one application's; removing an application frees all its prefixes.
    #[test]
    fn prefixes_belong_to_one_app_until_it_is_removed(
        prefixes in vec((prefix(), 0..3usize), 1..8),
        removed in 0..3usize,
        paths in vec(path(), 1..6),
    ) {
        let mut table = RouteTable::new();
        let mut owner: Vec<(String, usize)> = Vec::new();
        for (p, app) in &prefixes {
            let result = table.insert(p, &format!("app{app}"), *app);
            match owner.iter().find(|(q, _)| q == p) {
                Some((_, first)) if first != app => prop_assert!(result.is_err(), "{} taken twice", p),
                _ => {
                    prop_assert!(result.is_ok(), "{}", p);
                    if !owner.iter().any(|(q, _)| q == p) {
                        owner.push((p.clone(), *app));
                    }
                }
            }
        }
        for (p, app) in &owner {
            prop_assert_eq!(table.lookup(p).map(|(r, _)| *r.target()), Some(*app));
        }
        table.remove_app(&format!("app{removed}"));
        let left: Vec<String> = owner.iter().filter(|(_, a)| *a != removed).map(|(p, _)| p.clone()).collect();
        prop_assert_eq!(table.iter().count(), left.len());
        for path in &paths {
            let got = table.lookup(path).map(|(r, rest)| (r.prefix().to_owned(), rest));
            prop_assert_eq!(got, lookup_model(&left, path));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SSE framing

/// One event as a client reads it.
#[derive(Debug, PartialEq)]
struct Event {
    data: String,
    /// Fields other than `data` (`event`, `id`, `retry`, unknown ones), as `name: value`.
    others: Vec<String>,
}

/// Reads an SSE body as a browser's `EventSource` does (WHATWG HTML, "interpreting an event
/// stream"): lines end at CRLF, LF or CR; `:` starts a comment; a blank line dispatches the
/// event, if it has data; the data is its `data` lines joined with LF. Also returns what follows
/// the last complete line.
fn sse_events(body: &str) -> (Vec<Event>, &str) {
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
                d.pop(); // the last LF
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

/// A chunk's text as a client reads it: every line break (CRLF, CR, LF) is a LF.
fn normalise(chunk: &str) -> String {
    chunk.replace("\r\n", "\n").replace('\r', "\n")
}

/// Checks that `frame` is one complete event and nothing else, and returns its data.
fn one_event(frame: &[u8]) -> Result<String, TestCaseError> {
    let text = std::str::from_utf8(frame);
    prop_assert!(text.is_ok(), "not UTF-8: {:?}", frame);
    let text = text.unwrap_or_default();
    prop_assert!(text.ends_with("\n\n"), "{:?}", text);
    prop_assert!(
        !text.contains('\r'),
        "a CR in a frame ends a line: {:?}",
        text
    );
    // The only blank line is the last: nothing inside the frame ends the event early.
    prop_assert_eq!(text.find("\n\n"), Some(text.len() - 2), "{:?}", text);
    for line in text[..text.len() - 2].split('\n') {
        prop_assert!(line.starts_with("data: "), "{:?} in {:?}", line, text);
    }
    let (mut events, rest) = sse_events(text);
    prop_assert_eq!(rest, "");
    prop_assert_eq!(events.len(), 1, "{:?}", text);
    let event = events.remove(0);
    prop_assert!(event.others.is_empty(), "{:?}", event.others);
    Ok(event.data)
}

fn chunk() -> impl Strategy<Value = String> {
    prop_oneof![tricky_text(), any::<String>(), "[a\r\n]{0,6}"]
}

proptest! {
    /// A text chunk is one event whose data is the chunk, its line breaks as LF; an empty chunk
    /// is no frame.
    #[test]
    fn a_text_frame_reads_back_as_its_chunk(chunk in chunk()) {
        match sse_text_frame(&chunk) {
            None => prop_assert!(chunk.is_empty()),
            Some(frame) => {
                prop_assert!(!chunk.is_empty());
                prop_assert_eq!(one_event(&frame)?, normalise(&chunk), "{:?}", chunk);
            }
        }
    }

    /// An event is one line of JSON that reads back as the event; an empty object is no frame.
    #[test]
    fn a_json_frame_reads_back_as_its_event(event in prop_oneof![json_object().prop_map(Value::Object), json()]) {
        match sse_json_frame(&event) {
            None => prop_assert_eq!(event, json!({})),
            Some(frame) => {
                let data = one_event(&frame)?;
                prop_assert!(!data.contains('\n'));
                let back: Value = serde_json::from_str(&data).expect("the data is JSON");
                prop_assert_eq!(back, event);
            }
        }
    }

    /// An error frame is one event, `{"type": "error", "content": <message>}` with RayAI's
    /// spacing, whatever the message holds.
    #[test]
    fn an_error_frame_is_one_event_with_the_message(message in chunk()) {
        let frame = sse_error_frame(&message);
        let head: &[u8] = b"data: {\"type\": \"error\", \"content\": \"";
        prop_assert!(frame.starts_with(head), "{:?}", frame);
        let data = one_event(&frame)?;
        let back: Value = serde_json::from_str(&data).expect("the data is JSON");
        prop_assert_eq!(back, json!({"type": "error", "content": message}));
    }

    /// A whole text stream reads back as its non-empty chunks, in order, then `done` (or the
    /// error): no chunk can end an event early, start another or fake the end.
    #[test]
    fn a_text_stream_reads_back_as_its_chunks(
        chunks in vec(chunk(), 0..6),
        error in proptest::option::of(chunk()),
    ) {
        let frames = sse_text_stream(&chunks, error.as_deref());
        let body: Vec<u8> = frames.concat();
        let body = std::str::from_utf8(&body).expect("UTF-8");
        let (events, rest) = sse_events(body);
        prop_assert_eq!(rest, "");
        let want: Vec<String> = chunks.iter().filter(|c| !c.is_empty()).map(|c| normalise(c)).collect();
        let last = match &error {
            Some(message) => json!({"type": "error", "content": message}),
            None => json!({"type": "done"}),
        };
        let got: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        prop_assert!(events.iter().all(|e| e.others.is_empty()));
        prop_assert_eq!(got.len(), want.len() + 1, "{:?}", body);
        prop_assert_eq!(&got[..want.len()], &want[..]);
        let end: Value = serde_json::from_str(got[want.len()]).expect("the last event is JSON");
        prop_assert_eq!(end, last);
        // Frames ready together may share a chunk of the body, but a chunk always ends with a
        // whole event, and the body ends with the exact `done` bytes.
        for frame in &frames {
            let text = std::str::from_utf8(frame).expect("UTF-8");
            let (_, rest) = sse_events(text);
            prop_assert_eq!(rest, "", "a chunk ends inside an event: {:?}", text);
        }
        if error.is_none() {
            prop_assert!(body.as_bytes().ends_with(DONE_FRAME), "{:?}", body);
        }
    }
}
