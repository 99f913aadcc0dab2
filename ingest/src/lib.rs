//! lasect-ingest
