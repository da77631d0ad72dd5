//! The agents of the conformance server, shared by its binary (`cargo run -p conformance`) and
//! the workspace's tests, which pin rayai's HTTP contract (`docs/contract.md`) on them.
//!
//! | agent | what it does |
//! |---|---|
//! | `echo` | `run` returns `{"echo": data}`, or fails with `data.fail`; `run_stream` yields `data.chunks`, `run_stream_events` yields `data.events` (then fail with `data.fail` if given), waiting `data.delay_ms` before each item |
//! | `plain` | `run` only: `{"ok": true}` |
//! | `counter` | 2 replicas: `{"replica": <replica id>, "count": <requests this replica served>}` |
//! | `slow` | 1 replica, 1 request at a time, 1 queued: sleeps `data.ms`, returns `{"slept_ms": ms}` |
//! | `panicky` | panics when `data.panic` is true, else `{"ok": true}` |
//! | `blocking` | blocks its thread for `data.ms`, returns `{"blocked_ms": ms}` |
//! | `greeter` | its own application (`agents::greeter_app`): `{"greeting": "<greeting>, <name>!"}` for `data.name`, the greeting from its `user_config` (default `"Hello"`), changed at run time by `reconfigure` |

pub mod agents;
