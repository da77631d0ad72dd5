//! The chat body parser on any bytes: the first byte picks the shape (`/chat` or `/`), the rest
//! is the body. The answer must be the contract's (`rayai_fuzz::chat::model`): the same request,
//! or the same errors as a FastAPI `detail` list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rayai_http::fuzz::ChatShape;

fuzz_target!(|input: &[u8]| {
    let Some((&selector, body)) = input.split_first() else {
        return;
    };
    let shape = if selector & 1 == 0 {
        ChatShape::Chat
    } else {
        ChatShape::Query
    };
    rayai_fuzz::chat::check(body, shape);
});
