//! The `Host` check on any header values: the first byte picks the HTTP version, the rest is the
//! `Host` values, separated by NUL. RFC 9112 §3.2: HTTP/1.1 needs exactly one, HTTP/1.0 at most
//! one, each only the bytes of a `host[:port]`; HTTP/2 is hyper's to check.
#![no_main]

use http::{HeaderValue, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&selector, rest)) = input.split_first() else {
        return;
    };
    let version = match selector % 3 {
        0 => Version::HTTP_10,
        1 => Version::HTTP_11,
        _ => Version::HTTP_2,
    };
    let hosts: Option<Vec<HeaderValue>> = if rest.is_empty() {
        Some(Vec::new())
    } else {
        rest.split(|&b| b == 0)
            .map(|v| HeaderValue::from_bytes(v).ok())
            .collect()
    };
    let Some(hosts) = hosts else {
        return;
    };
    let got = rayai_http::fuzz::host_is_valid(version, &hosts);
    let want = match (version, hosts.as_slice()) {
        (Version::HTTP_2, _) => true,
        (_, []) => version == Version::HTTP_10,
        (_, [host]) => host
            .as_bytes()
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%:[]".contains(&b)),
        (_, _) => false,
    };
    assert_eq!(got, want, "{version:?} {hosts:?}");
});
