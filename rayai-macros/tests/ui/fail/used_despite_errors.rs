// A struct whose arguments have an error, used as an agent anyway: the only error is the
// attribute's, with no follow-on "`A: Deploy` is not satisfied".
use rayai::prelude::*;

#[agent(num_replicas = 0)]
#[derive(Default)]
struct A;

impl Agent for A {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        Ok(data)
    }
}

fn main() {
    let _app = App::new().agent::<A>();
}
