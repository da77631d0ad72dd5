use rayai::agent;

macro_rules! echo_agent {
    ($ty:ident, $memory:literal) => {
        #[agent(memory = $memory)]
        #[derive(Default)]
        struct $ty;

        impl rayai::Agent for $ty {
            async fn run(&self, data: rayai::Value) -> Result<rayai::Value, rayai::AgentError> {
                Ok(data)
            }
        }
    };
}

echo_agent!(Gib, "1.5 gib");
echo_agent!(Mb, "512mb");
echo_agent!(Tera, "2 T");
echo_agent!(Spaced, " 4 GiB ");

fn memory<T: rayai::Deploy>() -> u64 {
    T::config().resources().memory_bytes
}

fn main() {
    assert_eq!(memory::<Gib>(), 3 << 29);
    assert_eq!(memory::<Mb>(), 512 << 20);
    assert_eq!(memory::<Tera>(), 2 << 40);
    assert_eq!(memory::<Spaced>(), 4 << 30);
}
