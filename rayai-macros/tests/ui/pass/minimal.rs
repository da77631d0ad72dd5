use rayai::agent;

#[agent]
#[derive(Default)]
struct A;

impl rayai::Agent for A {
    async fn run(&self, data: rayai::Value) -> Result<rayai::Value, rayai::AgentError> {
        Ok(data)
    }
}

fn main() {
    assert_eq!(<A as rayai::Deploy>::config().name(), "a");
}
