use rayai::agent;

#[agent(num_cpus = 0.25, num_gpus = 0.5)]
#[derive(Default)]
struct Small;

impl rayai::Agent for Small {
    async fn run(&self, data: rayai::Value) -> Result<rayai::Value, rayai::AgentError> {
        Ok(data)
    }
}

#[agent(num_gpus = 0)]
#[derive(Default)]
struct CpuOnly;

impl rayai::Agent for CpuOnly {
    async fn run(&self, data: rayai::Value) -> Result<rayai::Value, rayai::AgentError> {
        Ok(data)
    }
}

fn main() {
    let resources = <Small as rayai::Deploy>::config().resources();
    assert_eq!(resources.num_cpus, 0.25);
    assert_eq!(resources.num_gpus, 0.5);
    assert_eq!(
        <CpuOnly as rayai::Deploy>::config().resources().num_gpus,
        0.0
    );
}
