//! lasect-cli
