//! Compiles `proto/tracery/v1/*.proto` with protox (pure Rust, no system `protoc`) and
//! generates prost messages and tonic clients and servers from the descriptors.

use std::path::Path;

const PROTO_ROOT: &str = "proto";
const PROTOS: &[&str] = &[
    "tracery/v1/value.proto",
    "tracery/v1/snapshot.proto",
    "tracery/v1/breakpoint.proto",
    "tracery/v1/trace.proto",
    "tracery/v1/causal.proto",
    "tracery/v1/agent.proto",
    "tracery/v1/audit.proto",
    "tracery/v1/tracery.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files: Vec<_> = PROTOS
        .iter()
        .map(|p| Path::new(PROTO_ROOT).join(p))
        .collect();
    // A directory here means "any file under it", so a new .proto also reruns the build.
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    // protox bundles google/protobuf/*.proto, so `timestamp.proto` resolves without an
    // include path; prost maps it to `prost_types::Timestamp`.
    let fds = protox::compile(&files, [PROTO_ROOT])?;
    tonic_prost_build::configure()
        // Descriptors from protox are not files protoc would read; rerun is emitted above.
        .emit_rerun_if_changed(false)
        .compile_fds(fds)?;
    Ok(())
}
