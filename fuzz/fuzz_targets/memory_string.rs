//! `parse_memory` on any text: the size (exactly, rounded down to whole bytes) or the error that
//! the documented grammar gives (`rayai_fuzz::memory::model`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    rayai_fuzz::memory::check(input);
});
