use rayai::agent;

#[agent]
#[derive(Default)]
pub struct WebSearch;

impl rayai::Agent for WebSearch {
    async fn run(&self, data: rayai::Value) -> Result<rayai::Value, rayai::AgentError> {
        Ok(data)
    }
}
