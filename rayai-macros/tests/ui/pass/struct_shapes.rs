//! Named, tuple and unit structs, named in snake case after the struct; and a struct declared
//! inside a function, with a visibility and other attributes kept as they were.

use rayai::agent;

macro_rules! echo_impls {
    ($($ty:ty),*) => {$(
        impl rayai::Agent for $ty {
            async fn run(&self, data: rayai::Value) -> Result<rayai::Value, rayai::AgentError> {
                Ok(data)
            }
        }
    )*};
}

/// Documented, with a field.
#[agent]
#[derive(Default, Debug, Clone)]
pub struct EchoAgent {
    pub greeting: String,
}

#[agent]
#[derive(Default)]
struct HTTPServer(#[allow(dead_code)] u32);

#[agent]
#[derive(Default)]
pub(crate) struct Echo2;

#[derive(Default)]
#[agent(num_replicas = 2)]
struct AttributeBelowDerive;

echo_impls!(EchoAgent, HTTPServer, Echo2, AttributeBelowDerive);

fn name<T: rayai::Deploy>() -> String {
    T::config().name().to_owned()
}

fn main() {
    assert_eq!(name::<EchoAgent>(), "echo_agent");
    assert_eq!(name::<HTTPServer>(), "http_server");
    assert_eq!(name::<Echo2>(), "echo2");
    assert_eq!(name::<AttributeBelowDerive>(), "attribute_below_derive");
    let echo = EchoAgent::default().clone();
    assert_eq!(format!("{echo:?}"), "EchoAgent { greeting: \"\" }");

    #[agent(name = "local")]
    #[derive(Default)]
    struct Local;
    echo_impls!(Local);
    assert_eq!(name::<Local>(), "local");
}
