//! Exit codes of `lasect`, for scripts:
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success |
//! | 1 | other error (local file, unexpected) |
//! | 2 | usage: bad arguments, missing URL, a request the API called invalid (400) |
//! | 3 | authentication or authorization: no/invalid token (401), role too low (403), locked (429) |
//! | 4 | not found (404) |
//! | 5 | server: unreachable API, 5xx, unexpected answers |

use crate::api_client::{ApiError, Unreachable};

pub const USAGE: u8 = 2;
pub const AUTH: u8 = 3;
pub const NOT_FOUND: u8 = 4;
pub const SERVER: u8 = 5;

/// A usage problem found before any request.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// The exit code for an error.
pub fn code_of(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if cause.downcast_ref::<Usage>().is_some() {
            return USAGE;
        }
        if cause.downcast_ref::<crate::runs_cmd::RunFailed>().is_some() {
            return SERVER;
        }
        if cause.downcast_ref::<Unreachable>().is_some() {
            return SERVER;
        }
        if let Some(api) = cause.downcast_ref::<ApiError>() {
            return match api.status {
                401 | 403 | 429 => AUTH,
                404 => NOT_FOUND,
                400..=499 => USAGE,
                _ => SERVER,
            };
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> anyhow::Error {
        ApiError {
            status,
            code: "x".to_owned(),
            message: "m".to_owned(),
        }
        .into()
    }

    #[test]
    fn codes_follow_the_kind_of_error() {
        assert_eq!(code_of(&api(401)), AUTH);
        assert_eq!(code_of(&api(403)), AUTH);
        assert_eq!(code_of(&api(404)), NOT_FOUND);
        assert_eq!(code_of(&api(400)), USAGE);
        assert_eq!(code_of(&api(503)), SERVER);
        assert_eq!(code_of(&Usage("u".to_owned()).into()), USAGE);
        assert_eq!(code_of(&Unreachable("x".to_owned()).into()), SERVER);
        assert_eq!(code_of(&anyhow::anyhow!("other")), 1);
        assert_eq!(code_of(&api(404).context("while listing")), NOT_FOUND);
    }
}
