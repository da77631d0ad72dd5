//! The path check on any text: a path is refused exactly when one of its segments, decoded once,
//! holds a slash or a backslash or is `.` or `..` (`rayai_fuzz::path::refusal`); so an accepted
//! path cannot leave its route prefix once a server decodes and normalises it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|path: &str| {
    rayai_fuzz::path::check(path);
});
