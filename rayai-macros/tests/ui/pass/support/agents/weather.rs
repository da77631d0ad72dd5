use rayai::agent;

#[agent]
#[derive(Default)]
pub struct Forecast;

impl rayai::Agent for Forecast {
    async fn run(&self, data: rayai::Value) -> Result<rayai::Value, rayai::AgentError> {
        Ok(data)
    }
}

// A name given in the attribute wins over the file's.
#[agent(name = "tomorrow")]
#[derive(Default)]
pub struct Named;

impl rayai::Agent for Named {
    async fn run(&self, data: rayai::Value) -> Result<rayai::Value, rayai::AgentError> {
        Ok(data)
    }
}
