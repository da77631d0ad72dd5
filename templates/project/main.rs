//! {{name}}: agents served by rayai. Every file in `agents/` is an agent, compiled in by
//! `build.rs`; this file needs no editing when agents are added (`rayai create-agent NAME`).

include!(concat!(env!("OUT_DIR"), "/agents.rs"));

// Memory from bursts of large bodies goes back to the system (see `rayai::alloc`).
#[global_allocator]
static ALLOCATOR: rayai::alloc::Allocator = rayai::alloc::Allocator;

fn main() -> std::process::ExitCode {
    rayai::project::main()
}
