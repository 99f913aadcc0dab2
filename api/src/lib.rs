//! lasect-api
