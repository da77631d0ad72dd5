//! A struct with its own async constructor and no `Default`; and one with both, where the
//! constructor wins.

use rayai::agent;

#[agent]
struct Model {
    loaded_by: String,
}

impl rayai::Construct for Model {
    async fn construct(ctx: rayai::ReplicaContext) -> Result<Self, rayai::AgentError> {
        Ok(Model {
            loaded_by: ctx.replica_id().to_owned(),
        })
    }
}

impl rayai::Agent for Model {
    async fn run(&self, _data: rayai::Value) -> Result<rayai::Value, rayai::AgentError> {
        Ok(rayai::Value::String(self.loaded_by.clone()))
    }
}

#[agent]
#[derive(Default)]
struct Both {
    constructed: bool,
}

impl rayai::Construct for Both {
    async fn construct(_ctx: rayai::ReplicaContext) -> Result<Self, rayai::AgentError> {
        Ok(Both { constructed: true })
    }
}

impl rayai::Agent for Both {
    async fn run(&self, data: rayai::Value) -> Result<rayai::Value, rayai::AgentError> {
        Ok(data)
    }
}

fn main() {
    let ctx = || rayai::ReplicaContext::new("model", "replica-7", Vec::new());
    let model = futures::executor::block_on(<Model as rayai::Deploy>::construct(ctx())).unwrap();
    assert_eq!(model.loaded_by, "replica-7");
    let both = futures::executor::block_on(<Both as rayai::Deploy>::construct(ctx())).unwrap();
    assert!(both.constructed);
}
