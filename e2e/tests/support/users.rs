//! Users made through the admin's API and signed in, for the tests that check what a role or a
//! grant may see and do.

use lasect_e2e::Stack;
use reqwest::Method;
use serde_json::{Value, json};

/// Creates `username` through the admin's API with `access` (the users route's `role` and/or
/// `grants` fields, e.g. `{"role": "viewer"}`), signs it in and returns its access token. The
/// sign-in must answer with the role it was given.
pub async fn signed_in(stack: &Stack, username: &str, access: Value) -> String {
    let password = "Correct-Horse-Battery-Staple-9";
    let mut user = json!({"username": username, "password": password});
    if let (Value::Object(u), Value::Object(a)) = (&mut user, &access) {
        u.extend(a.clone());
    }
    let (status, body) = stack.api(Method::POST, "api/v1/users", Some(user)).await;
    assert!(status == 200 || status == 201, "{status} {body}");
    let (status, body) = stack
        .api_as(
            "",
            Method::POST,
            "api/v1/auth/login",
            Some(json!({"username": username, "password": password})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    if let Some(role) = access.get("role") {
        assert_eq!(&body["role"], role, "{body}");
    }
    body["access_token"]
        .as_str()
        .expect("access token")
        .to_owned()
}

/// [`signed_in`] with a role only.
pub async fn with_role(stack: &Stack, username: &str, role: &str) -> String {
    signed_in(stack, username, json!({"role": role})).await
}
