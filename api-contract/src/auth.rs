//! Sign-in and API tokens over the API: the roles ([`Role`], ordered `Viewer < User < Admin`:
//! a check `role >= needed` is the whole policy), logging in and out ([`LoginRequest`],
//! [`TokenPair`], [`LogoutRequest`]), changing one's password ([`ChangePassword`]) and API
//! tokens ([`CreateToken`], [`CreatedToken`], [`ApiToken`], [`TokenList`]).
//!
//! - viewer: read-only;
//! - user: dashboards, queries, metrics, backups;
//! - admin: everything, including users, tokens, agents and instances.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    User,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::User, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRole(pub String);

impl fmt::Display for UnknownRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown role {:?}; roles are admin, user, viewer",
            self.0
        )
    }
}

impl std::error::Error for UnknownRole {}

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

impl zeroize::Zeroize for LoginRequest {
    fn zeroize(&mut self) {
        self.password.zeroize();
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenPair {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    pub refresh_token: String,
    pub refresh_expires_in: u64,
    pub username: String,
    pub role: Option<Role>,
    /// An admin reset the password: these tokens only serve to set a new one
    /// (`POST /api/v1/auth/password`); every other call answers 403 `password_change_required`.
    pub password_change_required: bool,
}

#[derive(Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    /// The refresh token of this session; without it the session of the access token used
    /// ends, or with an API token (which has no session) every session of the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    #[cfg_attr(feature = "openapi", schema(max_length = 1024))]
    pub old_password: String,
    /// 12 to 1024 characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 12, max_length = 1024))]
    pub new_password: String,
}

impl zeroize::Zeroize for ChangePassword {
    fn zeroize(&mut self) {
        self.old_password.zeroize();
        self.new_password.zeroize();
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub username: String,
    pub role: Role,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenList {
    pub tokens: Vec<ApiToken>,
}

#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// 1 to 100 characters, not all blank.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 100))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// 60 s to the longest lifetime (default: no expiry).
    #[serde(
        default,
        deserialize_with = "crate::json_integer::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 60, maximum = 315_360_000))]
    pub expires_in_secs: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    pub token: ApiToken,
    /// The bearer secret, shown this once.
    pub secret: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_round_trip() {
        assert!(Role::Admin > Role::User && Role::User > Role::Viewer);
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
        assert!("Admin".parse::<Role>().is_err());
    }

    #[test]
    fn token_and_logout_bodies_send_only_what_is_set() {
        let create = CreateToken {
            name: "ci".into(),
            role: None,
            expires_in_secs: Some(3600),
        };
        let json = serde_json::to_value(&create).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({"name": "ci", "expires_in_secs": 3600})
        );
        let back: CreateToken = serde_json::from_value(json).expect("the API reads it");
        assert_eq!((back.role, back.expires_in_secs), (None, Some(3600)));
        let everything = serde_json::to_value(LogoutRequest::default()).expect("serialize");
        assert_eq!(everything, serde_json::json!({}));
    }
}
