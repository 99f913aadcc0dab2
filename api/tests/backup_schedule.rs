//! Backup schedules and the stored catalogue on a migrated store: two scheduler rounds at once
//! (two API processes) fire each firing once; firings missed while the API was down, while the
//! agent was offline, or skipped while a backup still ran are recorded with the reason; the
//! catalogue of a succeeded run is stored and served; viewers see, admins change, and the
//! refusals are proven.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::fixture::fixture;
use crate::common::http::req;

const T0: &str = "2026-01-01T00:00:00Z";

fn at(t: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(t)
        .expect("a test instant")
        .with_timezone(&Utc)
}

/// The `main` repository of instance `prod` on an agent that is connected and allows backups;
/// its id.
async fn prod_repository(pool: &PgPool) -> i64 {
    sqlx::query(
        "UPDATE agents SET last_seen = now(), control_connected_at = now(), \
         control_allowed = '{sql,backup}' WHERE id = 'db-01'",
    )
    .execute(pool)
    .await
    .expect("agent");
    sqlx::query_scalar(
        "INSERT INTO backup_repositories (instance_id, stanza, path, created_at, created_by) \
         SELECT id, 'main', '/srv/pgbackrest', $1, 'test' FROM instances WHERE name = 'prod' \
         RETURNING id",
    )
    .bind(at(T0))
    .fetch_one(pool)
    .await
    .expect("repository")
}

async fn firings(pool: &PgPool, schedule: i64) -> Vec<(DateTime<Utc>, String, Option<String>)> {
    sqlx::query_as(
        "SELECT fire_time, outcome, reason FROM backup_schedule_firings \
         WHERE schedule_id = $1 ORDER BY fire_time",
    )
    .bind(schedule)
    .fetch_all(pool)
    .await
    .expect("firings")
}

async fn scheduled_runs(pool: &PgPool, schedule: i64) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM runs WHERE requested_by = $1 ORDER BY id")
        .bind(format!("schedule:{schedule}"))
        .fetch_all(pool)
        .await
        .expect("runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_firing_fires_once_and_what_cannot_fire_is_reported() {
    let f = fixture().await;
    let repo = prod_repository(&f.pool).await;
    let schedule: i64 = sqlx::query_scalar(
        "INSERT INTO backup_schedules (repository_id, cron, time_zone, backup_type, created_at, \
         created_by) VALUES ($1, '* * * * *', 'UTC', 'diff', $2, 'test') RETURNING id",
    )
    .bind(repo)
    .bind(at(T0))
    .fetch_one(&f.pool)
    .await
    .expect("schedule");
    // A second process: its own pool, as another lasect-api would have.
    let other = sqlx::postgres::PgPoolOptions::new()
        .connect_with((*f.pool.connect_options()).clone())
        .await
        .expect("a second pool");

    // Ten minutes after the schedule was made, no process has run it (the API was down): the
    // 00:10 firing is due 5 s ago and fires; the nine before it are reported missed.
    let now = at("2026-01-01T00:10:05Z");
    let (a, b) = tokio::join!(
        lasect_api::backup_schedule::tick(&f.pool, now),
        lasect_api::backup_schedule::tick(&other, now)
    );
    let (a, b) = (a.expect("round a"), b.expect("round b"));
    assert_eq!(a.started + b.started, 1, "{a:?} {b:?}");
    assert_eq!(a.missed + b.missed, 9, "{a:?} {b:?}");
    let runs = scheduled_runs(&f.pool, schedule).await;
    assert_eq!(runs.len(), 1, "one run for one firing: {runs:?}");
    let rows = firings(&f.pool, schedule).await;
    assert_eq!(rows.len(), 10, "{rows:?}");
    assert!(
        rows[..9]
            .iter()
            .all(|(_, outcome, reason)| outcome == "missed"
                && reason
                    .as_deref()
                    .is_some_and(|r| r.contains("API was down"))),
        "{rows:?}"
    );
    assert_eq!(rows[9].0, at("2026-01-01T00:10:00Z"));
    assert_eq!(rows[9].1, "started");
    let (kind, params): (String, Value) =
        sqlx::query_as("SELECT kind, params FROM runs WHERE id = $1")
            .bind(runs[0])
            .fetch_one(&f.pool)
            .await
            .expect("run");
    assert_eq!(kind, "backup");
    assert_eq!(params["type"], "diff");
    assert_eq!(params["stanza"], "main");
    assert_eq!(params["repo"]["repository_id"], repo);

    // The same instant again, from both: nothing new.
    let again = lasect_api::backup_schedule::tick(&other, now)
        .await
        .expect("round");
    assert_eq!(again, Default::default());

    // The next minute, the backup still runs: skipped, naming it.
    let now = at("2026-01-01T00:11:01Z");
    let round = lasect_api::backup_schedule::tick(&f.pool, now)
        .await
        .expect("round");
    assert_eq!(round.skipped, 1, "{round:?}");
    let rows = firings(&f.pool, schedule).await;
    let (_, outcome, reason) = rows.last().expect("a firing");
    assert_eq!(outcome, "skipped");
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains(&format!("backup run {}", runs[0]))),
        "{reason:?}"
    );

    // The backup ends; the agent goes silent: the 00:12 firing is missed, saying why.
    sqlx::query("UPDATE runs SET status = 'succeeded', finished_at = now() WHERE id = $1")
        .bind(runs[0])
        .execute(&f.pool)
        .await
        .expect("end the run");
    sqlx::query("UPDATE agents SET last_seen = now() - interval '10 minutes'")
        .execute(&f.pool)
        .await
        .expect("silence the agent");
    let round = lasect_api::backup_schedule::tick(&f.pool, at("2026-01-01T00:12:02Z"))
        .await
        .expect("round");
    assert_eq!(round.missed, 1, "{round:?}");
    let rows = firings(&f.pool, schedule).await;
    let (_, outcome, reason) = rows.last().expect("a firing");
    assert_eq!(outcome, "missed");
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("db-01") && r.contains("offline")),
        "{reason:?}"
    );
    assert_eq!(scheduled_runs(&f.pool, schedule).await.len(), 1);

    // What the API shows of it: the viewer reads the missed firings.
    let (status, body) = req(
        "GET",
        &format!("/api/v1/backup/firings?schedule_id={schedule}&outcome=missed"),
    )
    .token(&f.viewer)
    .send(&f.app)
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["firings"].as_array().map(Vec::len), Some(10), "{body}");
    assert_eq!(body["firings"][0]["fire_time"], "2026-01-01T00:12:00Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_see_schedules_and_only_admins_change_them() {
    let f = fixture().await;
    let repo = prod_repository(&f.pool).await;
    let body = json!({"repository_id": repo, "cron": "0 1 * * *", "time_zone": "Europe/Paris", "type": "diff"});

    // Refused: a viewer, and `scoped` (viewer on env=prod).
    for token in [&f.viewer, &f.scoped] {
        let (status, refused) = req("POST", "/api/v1/backup/schedules")
            .token(token)
            .json(body.clone())
            .send(&f.app)
            .await;
        assert_eq!(status, 403, "{refused}");
    }
    let (status, refused) = req("POST", "/api/v1/backup/schedules")
        .token(&f.scoped)
        .json(json!({"label_key": "env", "label_value": "staging", "stanza": "main", "cron": "0 1 * * *", "type": "full"}))
        .send(&f.app)
        .await;
    assert_eq!(status, 403, "user on the label is not admin: {refused}");

    // Bad input: 422 with the reason, 400 for what the document states.
    for (bad, status, needle) in [
        (
            json!({"repository_id": repo, "cron": "0 25 * * *", "type": "full"}),
            422,
            "cron",
        ),
        (
            json!({"repository_id": repo, "cron": "0 1 * * *", "time_zone": "Mars/Olympus", "type": "full"}),
            422,
            "time zone",
        ),
        (
            json!({"cron": "0 1 * * *", "type": "full"}),
            422,
            "repository_id",
        ),
        (
            json!({"repository_id": repo, "label_key": "env", "label_value": "prod", "stanza": "main", "cron": "0 1 * * *", "type": "full"}),
            422,
            "either",
        ),
        (
            json!({"repository_id": repo, "cron": "0 1 * * *", "type": "weekly"}),
            400,
            "",
        ),
        (
            json!({"repository_id": 99999, "cron": "0 1 * * *", "type": "full"}),
            404,
            "99999",
        ),
    ] {
        let (got, answer) = req("POST", "/api/v1/backup/schedules")
            .token(&f.admin)
            .json(bad.clone())
            .send(&f.app)
            .await;
        assert_eq!(got, status, "{bad}: {answer}");
        assert!(answer.to_string().contains(needle), "{bad}: {answer}");
    }

    let (status, created) = req("POST", "/api/v1/backup/schedules")
        .token(&f.admin)
        .json(body)
        .send(&f.app)
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["time_zone"], "Europe/Paris");
    assert!(created["next_fire_at"].is_string(), "{created}");
    let id = created["id"].as_i64().expect("id");
    let (status, labelled) = req("POST", "/api/v1/backup/schedules")
        .token(&f.admin)
        .json(json!({"label_key": "env", "label_value": "dev", "stanza": "main", "cron": "0 2 * * 0", "type": "full"}))
        .send(&f.app)
        .await;
    assert_eq!(status, 201, "{labelled}");

    // `scoped` views prod (by its label), not the env=dev schedule; the viewer sees both.
    let (status, seen) = req("GET", "/api/v1/backup/schedules")
        .token(&f.scoped)
        .send(&f.app)
        .await;
    assert_eq!(status, 200, "{seen}");
    let ids: Vec<i64> = seen["schedules"]
        .as_array()
        .map(|all| all.iter().filter_map(|s| s["id"].as_i64()).collect())
        .unwrap_or_default();
    assert_eq!(ids, vec![id], "{seen}");
    let (_, all) = req("GET", "/api/v1/backup/schedules")
        .token(&f.viewer)
        .send(&f.app)
        .await;
    assert_eq!(all["schedules"].as_array().map(Vec::len), Some(2), "{all}");

    // Removing: refused to the viewer and to `scoped`; the admin removes it (audited).
    for token in [&f.viewer, &f.scoped] {
        let (status, refused) = req("DELETE", &format!("/api/v1/backup/schedules/{id}"))
            .token(token)
            .send(&f.app)
            .await;
        assert_eq!(status, 403, "{refused}");
    }
    let (status, _) = req("DELETE", &format!("/api/v1/backup/schedules/{id}"))
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(status, 204);
    let (status, _) = req("DELETE", &format!("/api/v1/backup/schedules/{id}"))
        .token(&f.admin)
        .send(&f.app)
        .await;
    assert_eq!(status, 404);
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action LIKE '% /api/v1/backup/schedules%' \
         AND actor = 'admin' AND outcome = 'success'",
    )
    .fetch_one(&f.pool)
    .await
    .expect("audit");
    assert!(audited >= 3, "adds and removals are audited: {audited}");
}

/// The stanza of the captured document renamed to `main`.
fn captured_info() -> Value {
    let mut doc: Value = serde_json::from_str(include_str!(
        "../src/backup_catalogue/pgbackrest-2.45-info.json"
    ))
    .expect("captured info");
    doc[0]["name"] = json!("main");
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_is_stored_from_runs_and_served_from_the_store() {
    let f = fixture().await;
    let repo = prod_repository(&f.pool).await;
    let prod: i64 = sqlx::query_scalar("SELECT id FROM instances WHERE name = 'prod'")
        .fetch_one(&f.pool)
        .await
        .expect("prod");
    let succeeded = |summary: Value| {
        let pool = f.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "INSERT INTO runs (kind, instance_id, agent_id, params, requested_by, timeout_ms, \
                 max_rows, max_bytes, expires_at, status, finished_at, summary) \
                 VALUES ('backup', $1, 'db-01', $2, 'user:admin', 1000, 1, 1, now(), 'succeeded', \
                 now(), $3) RETURNING id",
            )
            .bind(prod)
            .bind(json!({"stanza": "main", "type": "full", "repo": {"repository_id": repo, "path": "/srv/pgbackrest"}}))
            .bind(summary)
            .fetch_one(&pool)
            .await
            .expect("run")
        }
    };
    let run = succeeded(json!({"catalogue": {"pgbackrest": captured_info()}})).await;
    assert_eq!(
        lasect_api::backup_catalogue::refresh(&f.pool)
            .await
            .expect("refresh"),
        1
    );
    assert_eq!(
        lasect_api::backup_catalogue::refresh(&f.pool)
            .await
            .expect("again"),
        0,
        "a run is stored once"
    );
    let (status, body) = req("GET", &format!("/api/v1/backups?instance_id={prod}"))
        .token(&f.viewer)
        .send(&f.app)
        .await;
    assert_eq!(status, 200, "{body}");
    let catalogue = &body["repositories"][0];
    assert_eq!(catalogue["run_id"], run, "{body}");
    assert_eq!(catalogue["archive_id"], "15-1");
    assert_eq!(catalogue["archive_max"], "000000010000000000000004");
    let backups = catalogue["backups"].as_array().expect("backups");
    assert_eq!(backups.len(), 2, "{body}");
    assert_eq!(backups[0]["type"], "full");
    assert_eq!(backups[1]["type"], "incr");
    assert_eq!(backups[1]["prior"], backups[0]["label"]);
    assert_eq!(backups[0]["lsn_start"], "0/2000028");
    assert!(backups[0]["database_size"].as_i64().is_some_and(|n| n > 0));
    assert_eq!(catalogue["earliest_restorable"], backups[0]["stopped_at"]);
    assert_eq!(catalogue["latest_restorable"], backups[1]["stopped_at"]);

    // A document of another shape: the catalogue stays, the problem is shown.
    succeeded(json!({"catalogue": {"pgbackrest": {"unexpected": true}}})).await;
    lasect_api::backup_catalogue::refresh(&f.pool)
        .await
        .expect("refresh");
    let (_, body) = req("GET", &format!("/api/v1/backups?instance_id={prod}"))
        .token(&f.viewer)
        .send(&f.app)
        .await;
    let catalogue = &body["repositories"][0];
    assert_eq!(catalogue["backups"].as_array().map(Vec::len), Some(2));
    assert!(
        catalogue["problem"]
            .as_str()
            .is_some_and(|p| p.contains("not the JSON")),
        "{body}"
    );

    // An hour later the API asks the agent for a fresh catalogue, once (backups expired or
    // taken by hand show up), and only for a stanza that exists.
    sqlx::query(
        "INSERT INTO backup_repositories (instance_id, stanza, path, created_by) \
         SELECT id, 'fresh', '/srv/fresh', 'test' FROM instances WHERE name = 'prod'",
    )
    .execute(&f.pool)
    .await
    .expect("a repository without a stanza");
    sqlx::query("UPDATE runs SET created_at = now() - interval '2 hours'")
        .execute(&f.pool)
        .await
        .expect("age the runs");
    sqlx::query("UPDATE backup_catalogues SET refreshed_at = now() - interval '2 hours'")
        .execute(&f.pool)
        .await
        .expect("age the catalogue");
    let every = lasect_api::backup_catalogue::REFRESH_EVERY;
    let queue = || lasect_api::backup_catalogue::queue_periodic_info(&f.pool, every);
    assert_eq!(queue().await.expect("queue"), 1);
    assert_eq!(queue().await.expect("queue"), 0, "one under way");
    let (stanza, repo_id): (String, i64) = sqlx::query_as(
        "SELECT params ->> 'stanza', (params -> 'repo' ->> 'repository_id')::bigint FROM runs \
         WHERE kind = 'backup_info' AND requested_by = 'system'",
    )
    .fetch_one(&f.pool)
    .await
    .expect("the info run");
    assert_eq!((stanza.as_str(), repo_id), ("main", repo));

    // The `backup` family: one sample per stanza a minute, whichever process writes it.
    sqlx::query(
        "INSERT INTO backup_schedules (repository_id, cron, time_zone, backup_type, created_by) \
         VALUES ($1, '0 1 * * *', 'UTC', 'full', 'test')",
    )
    .bind(repo)
    .execute(&f.pool)
    .await
    .expect("schedule");
    sqlx::query(
        "INSERT INTO backup_schedule_firings (schedule_id, repository_id, fire_time, instance_id, \
         outcome, reason) SELECT id, $1, now() - interval '1 hour', $2, 'missed', 'test' \
         FROM backup_schedules",
    )
    .bind(repo)
    .bind(prod)
    .execute(&f.pool)
    .await
    .expect("a missed firing");
    assert_eq!(
        lasect_api::backup_catalogue::samples::write(&f.pool)
            .await
            .expect("samples"),
        2,
        "one per stanza"
    );
    assert_eq!(
        lasect_api::backup_catalogue::samples::write(&f.pool)
            .await
            .expect("samples"),
        0,
        "one a minute"
    );
    let (status, body) = req("GET", &format!("/api/v1/instances/{prod}/samples/backup"))
        .token(&f.viewer)
        .send(&f.app)
        .await;
    assert_eq!(status, 200, "{body}");
    let sample = body.to_string();
    for needle in [
        "\"stanza\":\"main\"",
        "\"last_type\":\"incr\"",
        "\"missed_firings\":1",
        "\"last_run_failed\":0",
    ] {
        assert!(sample.contains(needle), "{needle} in {sample}");
    }

    // The default rule `backup_age` reads it: a stanza whose newest backup is two days old.
    sqlx::query(
        "INSERT INTO metric_backup (time, instance_id, stanza, age_seconds, missed_firings) \
         VALUES (now(), $1, 'old', 172800, 0)",
    )
    .bind(prod)
    .execute(&f.pool)
    .await
    .expect("an old backup");
    let (status, body) = req("POST", "/api/v1/alerts/rules/test")
        .token(&f.admin)
        .json(json!({"name": "backup_age"}))
        .send(&f.app)
        .await;
    assert_eq!(status, 200, "{body}");
    let values = body["values"].as_array().expect("values");
    let holds: Vec<&Value> = values.iter().filter(|v| v["holds"] == true).collect();
    assert_eq!(holds.len(), 1, "only the old stanza: {body}");
    assert_eq!(holds[0]["instance"], "prod", "{body}");
    assert_eq!(holds[0]["would_be"], "firing", "{body}");

    // Refusals: `scoped` has no role on dev; a missing instance is 404; a bad id 400.
    let dev: i64 = sqlx::query_scalar("SELECT id FROM instances WHERE name = 'dev'")
        .fetch_one(&f.pool)
        .await
        .expect("dev");
    let (status, _) = req("GET", &format!("/api/v1/backups?instance_id={dev}"))
        .token(&f.scoped)
        .send(&f.app)
        .await;
    assert_eq!(status, 403);
    let (status, _) = req("GET", "/api/v1/backups?instance_id=99999")
        .token(&f.viewer)
        .send(&f.app)
        .await;
    assert_eq!(status, 404);
    let (status, _) = req("GET", "/api/v1/backups")
        .token(&f.viewer)
        .send(&f.app)
        .await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_schedule_backs_up_the_labelled_instances_only() {
    let f = fixture().await;
    prod_repository(&f.pool).await;
    sqlx::query(
        "INSERT INTO backup_repositories (instance_id, stanza, path, created_at, created_by) \
         SELECT id, 'main', '/srv/pgbackrest', $1, 'test' FROM instances WHERE name = 'staging'",
    )
    .bind(at(T0))
    .execute(&f.pool)
    .await
    .expect("staging repository");
    let schedule: i64 = sqlx::query_scalar(
        "INSERT INTO backup_schedules (label_key, label_value, stanza, cron, time_zone, \
         backup_type, created_at, created_by) \
         VALUES ('env', 'prod', 'main', '*/5 * * * *', 'Europe/Paris', 'full', $1, 'test') \
         RETURNING id",
    )
    .bind(at(T0))
    .fetch_one(&f.pool)
    .await
    .expect("schedule");
    // Ten minutes on: a label schedule reports no misses from before it could have known the
    // instance, and fires the 00:10 firing for prod's repository only.
    let round = lasect_api::backup_schedule::tick(&f.pool, at("2026-01-01T00:10:05Z"))
        .await
        .expect("round");
    assert_eq!((round.started, round.missed), (1, 0), "{round:?}");
    let instances: Vec<String> = sqlx::query_scalar(
        "SELECT i.name FROM runs r JOIN instances i ON i.id = r.instance_id \
         WHERE r.requested_by = $1",
    )
    .bind(format!("schedule:{schedule}"))
    .fetch_all(&f.pool)
    .await
    .expect("runs");
    assert_eq!(instances, vec!["prod".to_owned()]);
}

/// A label repository derives each instance's stanza from its name: a label schedule without a
/// stanza covers it, one firing (and one run) per labelled repository, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_schedule_without_stanza_backs_up_every_repository_of_the_label() {
    let f = fixture().await;
    sqlx::raw_sql(
        "UPDATE agents SET last_seen = now(), control_connected_at = now(), \
             control_allowed = '{sql,backup}' WHERE id = 'db-01';
         UPDATE instances SET labels = labels || '{\"tier\": \"db\"}' \
             WHERE name IN ('prod', 'staging');
         INSERT INTO backup_label_repositories (label_key, label_value, path, created_by) \
             VALUES ('tier', 'db', '/srv/pgbackrest', 'test');
         INSERT INTO backup_repositories (instance_id, stanza, path, created_by) \
             SELECT id, 'dev', '/srv/pgbackrest', 'test' FROM instances WHERE name = 'dev';",
    )
    .execute(&f.pool)
    .await
    .expect("labels and repositories");
    let dir = tempfile::tempdir().expect("tempdir");
    let keyring = lasect_pki::secrets::Keyring::load_or_create(&dir.path().join("secrets.keys"))
        .expect("keyring");
    let (added, _) = lasect_api::routes::backup_label_repos::sync(&f.pool, &keyring)
        .await
        .expect("sync");
    assert_eq!(added, 2, "one row per labelled instance");
    sqlx::query("UPDATE backup_repositories SET created_at = $1")
        .bind(at(T0))
        .execute(&f.pool)
        .await
        .expect("created_at");
    let mut stanzas: Vec<String> = sqlx::query_scalar(
        "SELECT stanza FROM backup_repositories WHERE label_repository_id IS NOT NULL",
    )
    .fetch_all(&f.pool)
    .await
    .expect("stanzas");
    stanzas.sort();
    assert_eq!(
        stanzas,
        ["prod", "staging"],
        "derived from the instances' names"
    );

    // A repository has its stanza: naming one with it is refused; a label needs none.
    let repo: i64 = sqlx::query_scalar("SELECT min(id) FROM backup_repositories")
        .fetch_one(&f.pool)
        .await
        .expect("a repository");
    let (status, refused) = req("POST", "/api/v1/backup/schedules")
        .token(&f.admin)
        .json(
            json!({"repository_id": repo, "stanza": "main", "cron": "*/5 * * * *", "type": "full"}),
        )
        .send(&f.app)
        .await;
    assert_eq!(status, 422, "{refused}");
    assert!(refused.to_string().contains("stanza"), "{refused}");
    let (status, created) = req("POST", "/api/v1/backup/schedules")
        .token(&f.admin)
        .json(json!({"label_key": "tier", "label_value": "db", "cron": "*/5 * * * *", "type": "full"}))
        .send(&f.app)
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["stanza"], Value::Null, "{created}");
    let schedule = created["id"].as_i64().expect("id");
    sqlx::query("UPDATE backup_schedules SET created_at = $1 WHERE id = $2")
        .bind(at(T0))
        .bind(schedule)
        .execute(&f.pool)
        .await
        .expect("created_at");

    let now = at("2026-01-01T00:10:05Z");
    let round = lasect_api::backup_schedule::tick(&f.pool, now)
        .await
        .expect("round");
    assert_eq!(
        (round.started, round.missed, round.skipped),
        (2, 0, 0),
        "{round:?}"
    );
    let mut fired: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT i.name, f.outcome, r.params ->> 'stanza', r.params -> 'repo' ->> 'repository_id' \
         FROM backup_schedule_firings f JOIN instances i ON i.id = f.instance_id \
         JOIN runs r ON r.id = f.run_id \
         WHERE f.schedule_id = $1 AND r.requested_by = 'schedule:' || f.schedule_id",
    )
    .bind(schedule)
    .fetch_all(&f.pool)
    .await
    .expect("firings");
    fired.sort();
    let (names, stanzas): (Vec<_>, Vec<_>) = fired
        .iter()
        .map(|(name, outcome, stanza, _)| (format!("{name} {outcome}"), stanza.as_str()))
        .unzip();
    assert_eq!(names, ["prod started", "staging started"], "{fired:?}");
    assert_eq!(stanzas, ["prod", "staging"], "{fired:?}");
    assert_ne!(fired[0].3, fired[1].3, "each its own repository: {fired:?}");
    assert_eq!(firings(&f.pool, schedule).await.len(), 2);
    assert_eq!(scheduled_runs(&f.pool, schedule).await.len(), 2);

    // The same instant again: nothing more.
    let again = lasect_api::backup_schedule::tick(&f.pool, now)
        .await
        .expect("round");
    assert_eq!(again, lasect_api::backup_schedule::Round::default());
    assert_eq!(firings(&f.pool, schedule).await.len(), 2);
    assert_eq!(scheduled_runs(&f.pool, schedule).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_schedules_fire_drills_once_and_report_what_they_cannot() {
    let f = fixture().await;
    let repo = prod_repository(&f.pool).await;
    let schedule: i64 = sqlx::query_scalar(
        "INSERT INTO backup_schedules (repository_id, cron, time_zone, kind, drill_check_sql, \
         drill_amcheck, created_at, created_by) \
         VALUES ($1, '* * * * *', 'UTC', 'drill', 'SELECT count(*) FROM pg_class', true, $2, \
         'test') RETURNING id",
    )
    .bind(repo)
    .bind(at(T0))
    .fetch_one(&f.pool)
    .await
    .expect("drill schedule");
    let other = sqlx::postgres::PgPoolOptions::new()
        .connect_with((*f.pool.connect_options()).clone())
        .await
        .expect("a second pool");

    // The agent backs up but does not restore: the drill's firing is missed, saying so.
    let round = lasect_api::backup_schedule::tick(&f.pool, at("2026-01-01T00:01:05Z"))
        .await
        .expect("round");
    assert_eq!((round.started, round.missed), (0, 1), "{round:?}");
    let rows = firings(&f.pool, schedule).await;
    let (_, outcome, reason) = rows.last().expect("a firing");
    assert_eq!(outcome, "missed");
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("does not allow the restore class")),
        "{reason:?}"
    );

    // Allowed: two processes at once start one drill, with the schedule's options.
    sqlx::query("UPDATE agents SET control_allowed = '{sql,backup,restore}' WHERE id = 'db-01'")
        .execute(&f.pool)
        .await
        .expect("allow restores");
    let now = at("2026-01-01T00:02:05Z");
    let (a, b) = tokio::join!(
        lasect_api::backup_schedule::tick(&f.pool, now),
        lasect_api::backup_schedule::tick(&other, now)
    );
    let (a, b) = (a.expect("round a"), b.expect("round b"));
    assert_eq!(a.started + b.started, 1, "{a:?} {b:?}");
    let runs = scheduled_runs(&f.pool, schedule).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let (kind, params): (String, Value) =
        sqlx::query_as("SELECT kind, params FROM runs WHERE id = $1")
            .bind(runs[0])
            .fetch_one(&f.pool)
            .await
            .expect("run");
    assert_eq!(kind, "backup_drill");
    assert_eq!(params["stanza"], "main");
    assert_eq!(params["check_sql"], "SELECT count(*) FROM pg_class");
    assert_eq!(params["amcheck"], true);
    assert_eq!(params["repo"]["repository_id"], repo);

    // The next minute the drill still runs: skipped, naming it.
    let round = lasect_api::backup_schedule::tick(&f.pool, at("2026-01-01T00:03:01Z"))
        .await
        .expect("round");
    assert_eq!(round.skipped, 1, "{round:?}");
    let rows = firings(&f.pool, schedule).await;
    let (_, outcome, reason) = rows.last().expect("a firing");
    assert_eq!(outcome, "skipped");
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains(&format!("restore drill run {}", runs[0]))),
        "{reason:?}"
    );
    let (status, body) = req(
        "GET",
        &format!("/api/v1/backup/firings?schedule_id={schedule}"),
    )
    .token(&f.viewer)
    .send(&f.app)
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["firings"][0]["kind"], "drill", "{body}");

    // Through the API: a drill schedule takes no backup type, a backup schedule no drill
    // option; a drill's check query is shown to admins only.
    for (bad, needle) in [
        (
            json!({"repository_id": repo, "cron": "0 3 * * *", "kind": "drill", "type": "full"}),
            "no type",
        ),
        (
            json!({"repository_id": repo, "cron": "0 3 * * *", "type": "full", "check_sql": "SELECT 1"}),
            "drill",
        ),
        (
            json!({"repository_id": repo, "cron": "0 3 * * *"}),
            "needs its type",
        ),
    ] {
        let (status, answer) = req("POST", "/api/v1/backup/schedules")
            .token(&f.admin)
            .json(bad.clone())
            .send(&f.app)
            .await;
        assert_eq!(status, 422, "{bad}: {answer}");
        assert!(answer.to_string().contains(needle), "{bad}: {answer}");
    }
    let (status, answer) = req("POST", "/api/v1/backup/schedules")
        .token(&f.viewer)
        .json(json!({"repository_id": repo, "cron": "0 3 * * *", "kind": "drill"}))
        .send(&f.app)
        .await;
    assert_eq!(status, 403, "{answer}");
    let (status, created) = req("POST", "/api/v1/backup/schedules")
        .token(&f.admin)
        .json(
            json!({"repository_id": repo, "cron": "0 3 * * *", "kind": "drill",
            "check_sql": "SELECT count(*) FROM orders", "amcheck": false,
            "scratch_dir": "/srv/drills"}),
        )
        .send(&f.app)
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["kind"], "drill");
    assert!(created["type"].is_null(), "{created}");
    assert_eq!(created["amcheck"], false);
    assert_eq!(created["check_sql"], "SELECT count(*) FROM orders");
    let id = created["id"].clone();
    let (_, seen) = req("GET", "/api/v1/backup/schedules")
        .token(&f.viewer)
        .send(&f.app)
        .await;
    let shown = seen["schedules"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["id"] == id).cloned())
        .expect("the viewer sees the drill schedule");
    assert_eq!(shown["scratch_dir"], "/srv/drills");
    assert!(shown["check_sql"].is_null(), "{shown}");
}
