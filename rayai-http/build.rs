//! With the `grpc` feature: `proto/rayai/v1/agents.proto` compiled by protox (a protobuf
//! compiler in Rust, so no `protoc` is needed) into the descriptors tonic-prost-build generates
//! the service's code from, and which server reflection serves.

fn main() {
    #[cfg(feature = "grpc")]
    grpc();
}

#[cfg(feature = "grpc")]
fn grpc() {
    println!("cargo:rerun-if-changed=proto/rayai/v1/agents.proto");
    let descriptors =
        protox::compile(["rayai/v1/agents.proto"], ["proto"]).expect("agents.proto compiles");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let encoded = protox::prost::Message::encode_to_vec(&descriptors);
    std::fs::write(out.join("rayai_v1_descriptor.bin"), encoded).expect("the descriptor set");
    tonic_prost_build::configure()
        .build_client(true)
        // Clients over any tower service (tonic's transport is not built in).
        .build_transport(false)
        .build_server(true)
        .compile_fds(descriptors)
        .expect("the rayai.v1 code");
}
