//! Memory sizes as RayAI writes them: `"2GB"`, `"512 mb"`, `"1.5GiB"`.
//!
//! The parser lives in `rayai-rules`, which the `#[agent(memory = "...")]` check at compile time
//! and `rayai.toml` share; it is re-exported here under its old path.

pub use rayai_rules::memory::{MemoryError, format_memory, parse_memory};
