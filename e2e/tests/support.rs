//! What the test files share now that they run in one process (`main.rs`): a lock between the
//! tests that load both cores for minutes and the tests whose waits are bounded while they stop
//! and restart processes. Each was alone in its own binary before; side by side on a 2-core
//! machine a fault test's bounded wait would measure the package build, not the fault. And a
//! lock for the pgBackRest tests, which share the machine's pgBackRest lock files. And the
//! set-up several files repeat: signed-in users ([`users`]), the pgBackRest files around a
//! cluster ([`pgbackrest_files`]), the console's browser scripts ([`browser`]) and what the
//! processes logged ([`logs`]).

pub mod browser;
pub mod logs;
pub mod pgbackrest_files;
pub mod users;

use std::time::{Duration, Instant};

use tokio::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Readers are the fault tests (they ran beside one another before, and still may); a writer is
/// a heavy job, run beside no fault test and no other heavy job.
static LOAD: RwLock<()> = RwLock::const_new(());

/// Held by a fault test for its whole body.
pub async fn fault_test() -> RwLockReadGuard<'static, ()> {
    LOAD.read().await
}

/// Held by an async test that loads the machine (Schemathesis, the browser).
pub async fn heavy() -> RwLockWriteGuard<'static, ()> {
    LOAD.write().await
}

/// [`heavy`] for a synchronous test (the package build, the console's build); it must not be
/// called from inside an async runtime.
pub fn heavy_blocking() -> RwLockWriteGuard<'static, ()> {
    LOAD.blocking_write()
}

/// pgBackRest keeps its lock files in `/tmp/pgbackrest`, one per stanza, for the whole machine:
/// two tests backing up their own clusters under the same stanza name would refuse each other's
/// backups ("unable to acquire lock"). Held by each pgBackRest test for its whole body.
pub async fn pgbackrest() -> MutexGuard<'static, ()> {
    static PGBACKREST: Mutex<()> = Mutex::const_new(());
    PGBACKREST.lock().await
}

/// Polls `what` every 200 ms until it gives something, at most `bound`.
pub async fn until<T, F, Fut>(bound: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(start.elapsed() < bound, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Fails the test unless `status` is what a run-creating call answers: 202 while the run goes
/// on, or 200 when it had already ended by the time the API read it back (a quick run on a live
/// agent can, on a loaded machine). Returns the run's id.
pub fn created_run(status: u16, run: &serde_json::Value) -> i64 {
    assert!(status == 202 || status == 200, "{status}: {run}");
    run["id"].as_i64().expect("run id")
}
