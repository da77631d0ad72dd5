//! SSE framing on any text. The first byte picks what is framed: a text chunk, a JSON event (the
//! rest parsed as JSON), an error message, or a whole text stream (chunks separated by `\u{1}`,
//! the last one an error when the selector says so). Every frame must read back, with a client's
//! SSE parser, as exactly the events it stands for: no chunk can end an event early, start
//! another, add a field or fake the end of the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rayai_fuzz::sse::{events, normalise, one_event};
use rayai_http::DONE_FRAME;
use rayai_http::fuzz::{sse_error_frame, sse_json_frame, sse_text_frame, sse_text_stream};
use serde_json::{Value, json};

fuzz_target!(|input: &[u8]| {
    let Some((&selector, rest)) = input.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match selector % 5 {
        0 => match sse_text_frame(text) {
            None => assert!(text.is_empty()),
            Some(frame) => assert_eq!(one_event(&frame), normalise(text), "{text:?}"),
        },
        1 => {
            let Ok(event) = serde_json::from_str::<Value>(text) else {
                return;
            };
            match sse_json_frame(&event) {
                None => assert_eq!(event, json!({})),
                Some(frame) => {
                    let data = one_event(&frame);
                    // What was sent, read back the same way.
                    let sent: Value = serde_json::from_str(&event.to_string()).expect("JSON");
                    let back: Value = serde_json::from_str(&data).expect("the data is JSON");
                    assert_eq!(back, sent);
                }
            }
        }
        2 => {
            let frame = sse_error_frame(text);
            assert!(frame.starts_with(b"data: {\"type\": \"error\", \"content\": \""));
            let back: Value = serde_json::from_str(&one_event(&frame)).expect("JSON");
            assert_eq!(back, json!({"type": "error", "content": text}));
        }
        n => {
            let mut chunks: Vec<String> = text.split('\u{1}').map(str::to_owned).collect();
            let error = if n == 4 { chunks.pop() } else { None };
            let frames = sse_text_stream(&chunks, error.as_deref());
            let body = frames.concat();
            let body = std::str::from_utf8(&body).expect("UTF-8");
            let (events, rest) = events(body);
            assert_eq!(rest, "");
            assert!(events.iter().all(|e| e.others.is_empty()));
            let want: Vec<String> = chunks
                .iter()
                .filter(|c| !c.is_empty())
                .map(|c| normalise(c))
                .collect();
            assert_eq!(events.len(), want.len() + 1, "{body:?}");
            // Frames ready together share a chunk; a chunk always ends with a whole event.
            for frame in &frames {
                let (_, rest) = self::events(std::str::from_utf8(frame).expect("UTF-8"));
                assert_eq!(rest, "", "a chunk ends inside an event");
            }
            for (event, want) in events.iter().zip(&want) {
                assert_eq!(&event.data, want);
            }
            let end: Value = serde_json::from_str(&events[want.len()].data).expect("JSON");
            match &error {
                Some(message) => assert_eq!(end, json!({"type": "error", "content": message})),
                None => {
                    assert_eq!(end, json!({"type": "done"}));
                    assert!(body.as_bytes().ends_with(DONE_FRAME), "{body:?}");
                }
            }
        }
    }
});
