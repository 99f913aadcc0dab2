//! Who may call what, through the real router on a real store: every route's declared access
//! is enforced, and roles granted by instance label are honoured.

use axum::http::StatusCode;
use common::fixture::fixture;
use common::http::req;
use lasect_api::AppState;
use lasect_api::auth::Role;
use lasect_api::routes::{Access, route_specs};
use serde_json::json;

use crate::common;

/// A concrete URI for a route path.
fn concrete(path: &str) -> String {
    // Calls that wait for an agent (there is none here) must not wait.
    if path.ends_with("/instances/{id}/extensions") {
        return "/api/v1/instances/1/extensions?wait=0".to_owned();
    }
    let path = match path.strip_suffix("/instances/{id}") {
        Some(prefix) => format!("{prefix}/instances/1"),
        None => path.to_owned(),
    };
    path.replace("/instances/{id}/", "/instances/1/")
        .replace("/runs/{id}", "/runs/999999")
        .replace("/migrations/{id}", "/migrations/999999")
        .replace("/{schema}/{table}/rows", "/public/t/rows?wait=0")
        .replace("{family}", "database")
        .replace("{username}", "nobody")
        .replace("/tokens/{id}", "/tokens/999999")
        .replace("/agents/{id}", "/agents/db-01")
        .replace("{repo}", "999999")
}

#[tokio::test]
async fn every_route_declares_and_enforces_its_access() {
    let f = fixture().await;
    let specs = route_specs();
    let open: Vec<&str> = specs
        .iter()
        .filter(|s| s.access == Access::Open)
        .map(|s| s.path)
        .collect();
    for path in [
        "/api/v1/health",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
    ] {
        assert!(open.contains(&path), "{path} must be open");
    }
    for path in &open {
        assert!(
            lasect_api::auth::gate::OPEN_PATHS.contains(path),
            "{path} is declared open but the gate guards it"
        );
    }
    assert_eq!(
        lasect_api::auth::gate::OPEN_PATHS,
        [
            "/api/v1/health",
            "/api/v1/auth/login",
            "/api/v1/auth/refresh",
            "/api/v1/openapi.json"
        ],
        "nothing else is open"
    );
    for s in &specs {
        let uri = concrete(s.path);
        let (status, body) = req(s.method.as_str(), &uri).send(&f.app).await;
        if s.access == Access::Open {
            assert_ne!(
                status,
                StatusCode::UNAUTHORIZED,
                "{} {uri}: {body}",
                s.method
            );
        } else {
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{} {uri}: {body}",
                s.method
            );
            assert_eq!(body["error"]["code"], "unauthenticated");
            // A bad token is no better than none.
            let (status, _) = req(s.method.as_str(), &uri)
                .token("garbage")
                .send(&f.app)
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{} {uri}", s.method);
        }
        match s.access {
            Access::Admin => {
                let (status, body) = req(s.method.as_str(), &uri)
                    .token(&f.viewer)
                    .json(json!({}))
                    .send(&f.app)
                    .await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{} {uri}: {body}", s.method);
                assert_eq!(body["error"]["code"], "forbidden");
            }
            Access::InstanceViewer | Access::InstanceUser | Access::InstanceAdmin => {
                // `scoped` has nothing on env=dev (instance 3).
                let uri = match uri.strip_suffix("/instances/1") {
                    Some(prefix) => format!("{prefix}/instances/3"),
                    None => uri.replace("/instances/1/", "/instances/3/"),
                };
                let (status, _) = req(s.method.as_str(), &uri)
                    .token(&f.scoped)
                    .send(&f.app)
                    .await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{} {uri}", s.method);
            }
            Access::Authenticated | Access::Open => {}
        }
        // The route exists: an admin is never answered "no route".
        let (_, body) = req(s.method.as_str(), &uri)
            .token(&f.admin)
            .send(&f.app)
            .await;
        assert!(
            !body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("no route"),
            "{} {uri}: {body}",
            s.method
        );
    }
    // Unknown paths under /api/ do not reveal themselves to strangers.
    let (status, _) = req("GET", "/api/v1/nope").send(&f.app).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = req("GET", "/api/v1/nope")
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn label_scoped_roles_are_honoured() {
    let f = fixture().await;
    let (status, body) = req("GET", "/api/v1/instances")
        .token(&f.scoped)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let names: Vec<&str> = body["instances"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, ["prod", "staging"]);
    for (id, want) in [
        (1, StatusCode::OK),
        (2, StatusCode::OK),
        (3, StatusCode::FORBIDDEN),
    ] {
        let uri = format!("/api/v1/instances/{id}/samples/database");
        let (status, body) = req("GET", &uri).token(&f.scoped).send(&f.app).await;
        assert_eq!(status, want, "{uri}: {body}");
    }
    let (status, _) = req("GET", "/api/v1/instances/99/samples/database")
        .token(&f.scoped)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Global viewers see everything; admins too.
    for token in [&f.viewer, &f.admin] {
        let (_, body) = req("GET", "/api/v1/instances")
            .token(token)
            .send(&f.app)
            .await;
        assert_eq!(body["instances"].as_array().map(Vec::len), Some(3));
    }
    // No global role: no admin route; a token at most at the highest grant.
    let (status, _) = req("GET", "/api/v1/users")
        .token(&f.scoped)
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = req("POST", "/api/v1/tokens")
        .token(&f.scoped)
        .json(json!({"name": "x", "role": "admin"}))
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = req("POST", "/api/v1/tokens")
        .token(&f.scoped)
        .json(json!({"name": "x", "role": "viewer"}))
        .send(&f.app)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let capped = body["secret"].as_str().expect("secret").to_owned();
    let (_, body) = req("GET", "/api/v1/instances")
        .token(&capped)
        .send(&f.app)
        .await;
    assert_eq!(
        body["instances"].as_array().map(Vec::len),
        Some(2),
        "still label-scoped"
    );

    // Principal's checks directly: user on staging, viewer on prod, nothing on dev.
    let state = AppState::new(f.pool.clone());
    let p =
        lasect_api::auth::principal::authenticate(&state, Some(&format!("Bearer {}", f.scoped)))
            .await
            .expect("principal");
    assert!(p.require(Role::Viewer).is_err());
    assert!(p.require_on_instance(&f.pool, 2, Role::User).await.is_ok());
    assert!(p.require_on_instance(&f.pool, 1, Role::User).await.is_err());
    assert!(
        p.require_on_instance(&f.pool, 1, Role::Viewer)
            .await
            .is_ok()
    );
    assert!(
        p.require_on_instance(&f.pool, 3, Role::Viewer)
            .await
            .is_err()
    );
}
