//! Roles, ordered `Viewer < User < Admin`: a check `role >= needed` is the whole policy. The
//! type is shared with the CLI (`lasect_api_contract::auth`); the store's reading of it is here.

pub use lasect_api_contract::auth::{Role, UnknownRole};

/// Parses a role read from the store, where a CHECK constraint keeps it valid.
pub(crate) fn from_store(s: &str) -> Result<Role, crate::routes::ApiError> {
    s.parse()
        .map_err(|e| crate::routes::ApiError::internal(format_args!("role in the store: {e}")))
}
