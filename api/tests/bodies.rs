//! Optional JSON bodies (`POST /api/v1/auth/logout`, `POST /api/v1/users/{username}/password`):
//! absent, `null` or an object, as the OpenAPI document says; any other JSON value is refused,
//! though serde would read `[]` as a body with every field absent (Schemathesis found it).

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::common;
use crate::common::http::{LOCAL, call};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_body_is_an_object_or_null() {
    let f = common::fixture::fixture().await;
    let routes = ["/api/v1/auth/logout", "/api/v1/users/viewer/password"];
    let refused = [
        json!([]),
        json!(["x"]),
        json!("text"),
        json!(7),
        json!(true),
    ]
    .map(|body| (body, StatusCode::BAD_REQUEST));
    let accepted = [Value::Null, json!({})].map(|body| (body, StatusCode::OK));
    for uri in routes {
        for (body, want) in refused.iter().chain(&accepted) {
            let answer = call(
                &f.app,
                "POST",
                uri,
                Some(&f.admin),
                Some(body.clone()),
                LOCAL,
            )
            .await;
            assert_eq!(answer.status, *want, "{uri} {body}: {}", answer.text);
            if *want == StatusCode::BAD_REQUEST {
                assert_eq!(answer.body["error"]["code"], "invalid_body", "{uri} {body}");
            }
        }
    }
}
