//! `crate = "..."` reaches the runtime by another path: the core crate, or a renamed import.

mod core_path {
    #[rayai::agent(crate = "rayai_core")]
    #[derive(Default)]
    pub struct ViaCore;

    impl rayai_core::Agent for ViaCore {
        async fn run(&self, data: rayai::Value) -> Result<rayai::Value, rayai_core::AgentError> {
            Ok(data)
        }
    }
}

mod renamed {
    use rayai as ai;

    #[ai::agent(crate = "ai")]
    #[derive(Default)]
    pub struct ViaAlias;

    impl ai::Agent for ViaAlias {
        async fn run(&self, data: ai::Value) -> Result<ai::Value, ai::AgentError> {
            Ok(data)
        }
    }
}

fn main() {
    assert_eq!(
        <core_path::ViaCore as rayai::Deploy>::config().name(),
        "via_core"
    );
    assert_eq!(
        <renamed::ViaAlias as rayai::Deploy>::config().name(),
        "via_alias"
    );
}
