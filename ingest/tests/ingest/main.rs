//! Integration tests of the real `lasect-ingest` binary: real PostgreSQL
//! (lasect-testkit), real mTLS, a real tonic client.

mod agent_identity;
mod bad_input;
mod config_errors;
mod control_identity;
mod delta;
mod enroll;
mod group_commit;
mod limits;
mod mtls;
mod push;
mod revocation;
mod samples;
mod support;
