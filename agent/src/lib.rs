//! lasect-agent
