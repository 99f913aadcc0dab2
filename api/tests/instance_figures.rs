//! The key figures of `GET /api/v1/instances`: connections, TPS, cache hit, replication lag,
//! disk use and database size from the latest samples, computed the way a DBA would by hand
//! from the rows stored here; null where the samples do not give them.

use crate::common;
use crate::common::http::{LOCAL, call};

use axum::http::StatusCode;
use lasect_api::auth::Role;
use lasect_api::{AppState, router};
use serde_json::Value;

fn close(got: &Value, want: f64, what: &str) {
    let got = got
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: {got} is no number"));
    assert!((got - want).abs() < 1e-6, "{what}: {got} != {want}");
}

#[tokio::test]
async fn the_instance_list_carries_each_instances_key_figures() {
    let (_pg, pool) = common::migrated_store().await;
    // prod: a primary with two databases sampled 10 s apart, one WAL sender, two file systems;
    // replica: a standby; fresh: nothing sampled; old: samples of two hours ago only. In
    // prod's db2 the statistics were reset between the samples: it gives no rate.
    sqlx::raw_sql(
        "SELECT lasect_ensure_partitions(current_date - 1, current_date + 1);
         INSERT INTO agents (id) VALUES ('db-01');
         INSERT INTO instances (name, agent_id, in_recovery) VALUES
             ('prod', 'db-01', false), ('replica', 'db-01', true),
             ('fresh', 'db-01', false), ('old', 'db-01', false);
         INSERT INTO metric_activity (time, instance_id, max_connections, total_sessions) VALUES
             (now() - interval '70 s', 1, 100, 9), (now() - interval '10 s', 1, 100, 12),
             (now() - interval '2 hours', 4, 100, 50);
         INSERT INTO metric_database (time, instance_id, datid, datname, xact_commit,
             xact_rollback, blks_hit, blks_read, size_bytes) VALUES
             (now() - interval '20 s', 1, 1, 'db1', 1000, 10, 9000, 1000, 5000),
             (now() - interval '10 s', 1, 1, 'db1', 1490, 20, 9900, 1100, 6000),
             (now() - interval '20 s', 1, 2, 'db2', 900000, 0, 900000, 0, 7000),
             (now() - interval '10 s', 1, 2, 'db2', 5, 0, 5, 0, 8000),
             (now() - interval '2 hours', 4, 1, 'db1', 1, 0, 1, 1, 1);
         INSERT INTO metric_replication (time, instance_id, pid, application_name,
             replay_lag_bytes, replay_lag_seconds) VALUES
             (now() - interval '30 s', 1, 7, 'old', 999999, 99),
             (now() - interval '10 s', 1, 7, 'a', 4096, 1.5),
             (now() - interval '10 s', 1, 8, 'b', 1024, 2.5);
         INSERT INTO metric_standby (time, instance_id, replay_delay_seconds, replay_lag_bytes)
             VALUES (now() - interval '10 s', 2, 0.75, 512);
         INSERT INTO metric_host_filesystem (time, instance_id, mount_point, roles, total_bytes,
             used_bytes, free_bytes, total_inodes, used_inodes, free_inodes) VALUES
             (now() - interval '10 s', 1, '/data', 'data', 1000, 250, 750, 10, 1, 9),
             (now() - interval '10 s', 1, '/wal', 'wal', 1000, 600, 400, 10, 1, 9);",
    )
    .execute(&pool)
    .await
    .expect("seed");
    let viewer = common::user(&pool, "viewer", Some(Role::Viewer), &[]).await;
    let app = router(AppState::new(pool.clone()));

    let answer = call(&app, "GET", "/api/v1/instances", Some(&viewer), None, LOCAL).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let by_name = |name: &str| -> Value {
        answer.body["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("{name} listed: {}", answer.text))
            .clone()
    };

    let prod = by_name("prod")["figures"].clone();
    assert_eq!(prod["connections"], 12, "{prod}");
    assert_eq!(prod["max_connections"], 100, "{prod}");
    // db1 only: (1490 + 20 - 1000 - 10) / 10 s; 900 hits / (900 + 100) blocks.
    close(&prod["tps"], 50.0, "tps");
    close(&prod["cache_hit_percent"], 90.0, "cache hit");
    assert_eq!(prod["database_size_bytes"], 14000, "{prod}");
    // The slowest sender of the latest sample, not an older one.
    close(&prod["replication_lag_seconds"], 2.5, "sender lag seconds");
    assert_eq!(prod["replication_lag_bytes"], 4096, "{prod}");
    close(&prod["disk_used_percent"], 60.0, "fullest file system");
    assert!(prod["sampled_at"].is_string(), "{prod}");

    let replica = by_name("replica")["figures"].clone();
    close(&replica["replication_lag_seconds"], 0.75, "standby delay");
    assert_eq!(replica["replication_lag_bytes"], 512, "{replica}");
    assert!(replica["tps"].is_null(), "{replica}");
    assert!(replica["connections"].is_null(), "{replica}");

    // Nothing sampled in the last hour: no figures at all.
    assert!(
        by_name("fresh").get("figures").is_none(),
        "{}",
        by_name("fresh")
    );
    assert!(
        by_name("old").get("figures").is_none(),
        "{}",
        by_name("old")
    );

    // One sample of a database gives its size but no rate.
    sqlx::query(
        "DELETE FROM metric_database WHERE instance_id = 1 AND time < now() - interval '15 s'",
    )
    .execute(&pool)
    .await
    .expect("delete");
    let answer = call(&app, "GET", "/api/v1/instances", Some(&viewer), None, LOCAL).await;
    let prod = answer.body["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .find(|i| i["name"] == "prod")
        .expect("prod")["figures"]
        .clone();
    assert!(prod["tps"].is_null(), "{prod}");
    assert!(prod["cache_hit_percent"].is_null(), "{prod}");
    assert_eq!(prod["database_size_bytes"], 14000, "{prod}");
}
