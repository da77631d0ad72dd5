// The file `agents/web+search.rs` would give the agent a name that is not URL-safe.
#[path = "support/agents/web+search.rs"]
mod web_search;

fn main() {}
