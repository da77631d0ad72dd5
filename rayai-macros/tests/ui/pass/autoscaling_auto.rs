use rayai::agent;

// `"auto"` is Ray Serve's default autoscaling, as `AutoscalingConfig::auto()` holds it.
#[agent(num_replicas = "auto")]
#[derive(Default)]
struct Auto;

impl rayai::Agent for Auto {
    async fn run(&self, data: rayai::Value) -> Result<rayai::Value, rayai::AgentError> {
        Ok(data)
    }
}

fn main() {
    let config = <Auto as rayai::Deploy>::config();
    assert_eq!(
        config.autoscaling(),
        Some(&rayai::AutoscalingConfig::auto())
    );
}
