//! A struct that holds a client has neither `Default` nor `Construct`: one error that names both
//! ways to give it a constructor.

use rayai::prelude::*;

struct Client;

#[agent]
struct Chat {
    client: Client,
}

impl Agent for Chat {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        let _ = &self.client;
        Ok(data)
    }
}

fn main() {}
