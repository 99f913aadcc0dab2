//! The `lasect.v1` protocol spoken between `lasect-agent` and `lasect-ingest`.
//!
//! The generated messages live in [`v1`]; [`payload`] owns the one way a
//! [`v1::SampleBatch`] is turned into the compressed bytes of a
//! [`v1::PushRequest`] and back, so agent, ingest and load generator agree.

pub mod payload;

/// Generated protobuf messages and the tonic client/server of `lasect.v1`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("lasect.v1");
}
