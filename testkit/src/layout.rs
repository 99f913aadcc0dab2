//! The one-test-binary layout: `tests/main.rs` declares every file of `tests/` as a module and
//! `Cargo.toml` sets `autotests = false`, so a file left undeclared would silently never run.

use std::path::Path;

/// Modules of `<manifest_dir>/tests` (a `.rs` file or a directory with `mod.rs`) that
/// `main_rs` (the text of `tests/main.rs`) does not declare as `mod <name>;` on a line of its
/// own. Errors if the directory cannot be read or holds no module at all, so a wrong path
/// cannot pass as "nothing undeclared".
pub fn undeclared_test_modules(manifest_dir: &str, main_rs: &str) -> Result<Vec<String>, String> {
    let dir = Path::new(manifest_dir).join("tests");
    let read_error = |e: std::io::Error| format!("read {}: {e}", dir.display());
    let declared: Vec<&str> = main_rs
        .lines()
        .filter_map(|line| line.trim().strip_prefix("mod ")?.strip_suffix(';'))
        .collect();
    let mut seen = 0;
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        let module = if path.is_dir() && path.join("mod.rs").is_file() {
            path.file_name()
        } else if path.extension().is_some_and(|e| e == "rs") {
            path.file_stem()
        } else {
            continue;
        };
        let Some(module) = module.and_then(|m| m.to_str()) else {
            continue;
        };
        if module == "main" {
            continue;
        }
        seen += 1;
        if !declared.contains(&module) {
            missing.push(path.display().to_string());
        }
    }
    if seen == 0 {
        return Err(format!("no test modules found in {}", dir.display()));
    }
    missing.sort();
    Ok(missing)
}

/// Panics naming every file of `tests/` that `tests/main.rs` does not declare; the body of
/// each crate's `every_test_file_is_declared` test.
pub fn assert_every_test_file_declared(manifest_dir: &str, main_rs: &str) {
    match undeclared_test_modules(manifest_dir, main_rs) {
        Ok(missing) => assert!(
            missing.is_empty(),
            "not declared in tests/main.rs, so their tests would never run: {}",
            missing.join(", ")
        ),
        Err(e) => panic!("{e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_files_and_directories_not_declared() {
        let root = tempfile::tempdir().expect("tempdir");
        let tests = root.path().join("tests");
        std::fs::create_dir_all(tests.join("support")).expect("mkdir");
        std::fs::create_dir_all(tests.join("fixtures")).expect("mkdir");
        for file in [
            "main.rs",
            "a.rs",
            "b.rs",
            "support/mod.rs",
            "fixtures/data.json",
        ] {
            std::fs::write(tests.join(file), "").expect("write");
        }
        let manifest = root.path().to_str().expect("utf-8 path");
        let missing = undeclared_test_modules(manifest, "mod a;\nmod support;\n").expect("read");
        assert_eq!(missing, [tests.join("b.rs").display().to_string()]);
        let all = undeclared_test_modules(manifest, "mod a;\nmod b;\nmod support;\n");
        assert_eq!(all, Ok(Vec::new()));
        // A commented-out or differently named declaration is not one.
        let missing =
            undeclared_test_modules(manifest, "// mod a;\nmod bb;\nmod support;\n").expect("read");
        assert_eq!(missing.len(), 2);
    }

    #[test]
    fn an_empty_or_missing_tests_dir_is_an_error() {
        let root = tempfile::tempdir().expect("tempdir");
        let manifest = root.path().to_str().expect("utf-8 path");
        assert!(undeclared_test_modules(manifest, "").is_err());
        std::fs::create_dir(root.path().join("tests")).expect("mkdir");
        assert!(undeclared_test_modules(manifest, "").is_err());
    }
}
