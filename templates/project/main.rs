//! {{name}}: agents served by rayai. Every file in `agents/` is an agent, compiled in by
//! `build.rs`; this file needs no editing when agents are added (`rayai create-agent NAME`).

include!(concat!(env!("OUT_DIR"), "/agents.rs"));

fn main() -> std::process::ExitCode {
    rayai::project::main()
}
