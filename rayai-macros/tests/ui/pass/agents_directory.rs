//! A struct in `agents/<name>.rs` or `agents/<name>/mod.rs` is named after the file, as the
//! project layout of `rayai serve` expects.

#[path = "support/agents/weather.rs"]
mod weather;

#[path = "support/agents/search/mod.rs"]
mod search;

fn main() {
    assert_eq!(
        <weather::Forecast as rayai::Deploy>::config().name(),
        "weather"
    );
    assert_eq!(
        <search::WebSearch as rayai::Deploy>::config().name(),
        "search"
    );
    assert_eq!(
        <weather::Named as rayai::Deploy>::config().name(),
        "tomorrow"
    );
}
