//! The route table on any text: each line but the last is `<app><prefix>` (the first character
//! names the application), the last line is the request path. Inserting must accept exactly the
//! documented prefixes, refuse a prefix another application holds, and the lookup must find the
//! longest whole-segment prefix and the rest below it, which together make the path again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rayai_core::route::{RouteTable, join_prefix};
use rayai_fuzz::route::{lookup, prefix_is_valid};

fuzz_target!(|input: &str| {
    let mut lines: Vec<&str> = input.split('\n').collect();
    let path = lines.pop().unwrap_or_default();
    let mut table = RouteTable::new();
    let mut owners: Vec<(&str, &str)> = Vec::new();
    for line in lines {
        let Some(app) = line.chars().next() else {
            continue;
        };
        let (app, prefix) = line.split_at(app.len_utf8());
        let result = table.insert(prefix, app, prefix.to_owned());
        let held_by = owners.iter().find(|(p, _)| *p == prefix).map(|(_, a)| *a);
        match held_by {
            _ if !prefix_is_valid(prefix) => assert!(result.is_err(), "{prefix:?} accepted"),
            Some(other) if other != app => assert!(result.is_err(), "{prefix:?} taken twice"),
            Some(_) => assert!(result.is_ok(), "{prefix:?} refused to its own app"),
            None => {
                assert!(result.is_ok(), "{prefix:?} refused");
                owners.push((prefix, app));
            }
        }
    }
    assert_eq!(table.iter().count(), owners.len());
    let prefixes: Vec<&str> = owners.iter().map(|(p, _)| *p).collect();
    let got = table
        .lookup(path)
        .map(|(route, rest)| (route.prefix(), route.app(), rest));
    let want = lookup(&prefixes, path).map(|(prefix, rest)| {
        let app = owners.iter().find(|(p, _)| *p == prefix).map(|(_, a)| *a);
        (prefix, app.unwrap_or_default(), rest)
    });
    assert_eq!(got, want, "{path:?}");
    if let Some((prefix, _, rest)) = got {
        assert!(rest.is_empty() || rest.starts_with('/'));
        assert_eq!(join_prefix(prefix, rest), path);
    }
});
