//! Compiles `lasect/v1/*.proto` with protox (a pure-Rust protobuf compiler),
//! so building needs no `protoc` binary.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "lasect/v1/samples.proto",
        "lasect/v1/control.proto",
        "lasect/v1/ingest.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Only with the `serde` feature (the loadgen's JSON reference).
        .type_attribute(
            ".lasect.v1",
            "#[cfg_attr(feature = \"serde\", derive(serde::Serialize))]",
        )
        .compile_fds(fds)?;
    Ok(())
}
