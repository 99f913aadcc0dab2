//! What the processes of a stack printed.

use lasect_testkit::ChildGuard;

/// Fails the test when any of the named processes printed `secret` (a password given through
/// the API must reach no log, at any level).
pub fn assert_not_logged(secret: &str, processes: &[(&str, &ChildGuard)]) {
    for (name, process) in processes {
        assert!(
            !process.lines().iter().any(|l| l.contains(secret)),
            "{name} logged the secret"
        );
    }
}
