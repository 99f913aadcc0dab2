//! Users (admin only): a user as the API shows it ([`User`], [`UserList`]), the bodies that
//! create one ([`CreateUser`] → [`CreatedUser`]), set its roles ([`SetRole`]) and reset its
//! password ([`ResetPassword`]), and a role granted by label ([`LabelGrant`], [`GrantBody`]).

use serde::{Deserialize, Serialize};

use crate::auth::Role;

/// A role granted on every instance whose labels contain `key` = `value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LabelGrant {
    pub key: String,
    pub value: String,
    pub role: Role,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: Option<Role>,
    pub grants: Vec<LabelGrant>,
    pub created_at: String,
    pub created_by: String,
    pub disabled_at: Option<String>,
    /// An admin reset the password; the user must set a new one before anything else.
    pub must_change_password: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserList {
    pub users: Vec<User>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub key: String,
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub value: String,
    pub role: Role,
}

#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Lowercase letters, digits and `._@-`, starting with a letter or digit, at most 64.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z0-9][a-z0-9._@-]{0,63}$"))]
    pub username: String,
    /// 12 to 1024 characters; without it one is generated and returned once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 12, max_length = 1024))]
    pub password: Option<String>,
    #[serde(default)]
    pub role: Option<Role>,
    #[serde(default)]
    pub grants: Vec<GrantBody>,
}

impl zeroize::Zeroize for CreateUser {
    fn zeroize(&mut self) {
        self.password.zeroize();
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedUser {
    pub user: User,
    /// Only when the request had no password: shown this once, never stored in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_password: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    pub role: Option<Role>,
    #[serde(default)]
    pub grants: Vec<GrantBody>,
}

#[derive(Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ResetPassword {
    /// The new password (12 to 1024 characters); without it one is generated and returned once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 12, max_length = 1024))]
    pub password: Option<String>,
}

impl zeroize::Zeroize for ResetPassword {
    fn zeroize(&mut self) {
        self.password.zeroize();
    }
}
