//! The login-role check of read-only runs (`ops::privileges`) on a real cluster: a superuser and
//! members of the server file/program/signal roles are refused, also through a chain of roles
//! that do not inherit; an unprivileged run role passes.

use lasect_agent::ops::OpError;
use lasect_agent::ops::privileges::check_login_role;
use lasect_testkit::{PgCluster, PgOptions};

async fn login(pg: &PgCluster, role: &str) -> tokio_postgres::Client {
    let dsn = format!(
        "host=127.0.0.1 port={} user={role} dbname=postgres",
        pg.port()
    );
    let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

#[tokio::test]
async fn privileged_login_roles_are_refused_even_through_nested_membership() {
    let pg = PgCluster::start(PgOptions::default()).expect("cluster");
    pg.connect("postgres")
        .await
        .expect("connect")
        .batch_execute(
            "CREATE ROLE run_role LOGIN;
             GRANT pg_read_all_data, pg_monitor TO run_role;
             CREATE ROLE middle NOLOGIN NOINHERIT;
             GRANT pg_signal_backend TO middle;
             CREATE ROLE nested LOGIN NOINHERIT;
             GRANT middle TO nested;
             CREATE ROLE filer LOGIN;
             GRANT pg_read_server_files TO filer;
             CREATE ROLE programmer LOGIN IN ROLE pg_execute_server_program;",
        )
        .await
        .expect("roles");

    check_login_role(&login(&pg, "run_role").await, "main")
        .await
        .expect("an unprivileged role passes");
    for (role, needle) in [
        ("postgres", "a superuser"),
        ("nested", "pg_signal_backend"),
        ("filer", "pg_read_server_files"),
        ("programmer", "pg_execute_server_program"),
    ] {
        let client = login(&pg, role).await;
        // The check is on the login role: a SET ROLE to an unprivileged one changes nothing.
        if role == "postgres" {
            client
                .batch_execute("SET ROLE run_role")
                .await
                .expect("set role");
        }
        match check_login_role(&client, "main").await {
            Err(OpError::Refused(m)) => {
                assert!(
                    m.contains(&format!("`{role}`")) && m.contains(needle) && m.contains("run_dsn"),
                    "{m}"
                );
            }
            other => panic!("{role} was not refused: {other:?}"),
        }
    }
}
