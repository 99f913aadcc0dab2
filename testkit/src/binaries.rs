use std::path::PathBuf;

/// Path of a workspace binary built by `cargo build --bins` in the same
/// profile as the running test (`target/<profile>/<name>`), or in
/// `$LASECT_BIN_DIR` when set.
///
/// Panics with a hint when the binary is missing: a test cannot run without it.
pub fn binary_path(name: &str) -> PathBuf {
    let dir = match std::env::var_os("LASECT_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            // The test executable lives in target/<profile>/deps/.
            let exe = std::env::current_exe().expect("current_exe of the test");
            let deps = exe.parent().expect("test binary has a directory");
            deps.parent().unwrap_or(deps).to_path_buf()
        }
    };
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} not found: build the binaries first (`cargo build --bins`)",
        path.display()
    );
    path
}
