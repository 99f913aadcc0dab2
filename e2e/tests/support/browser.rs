//! Running the console's browser scripts (`console/tests/*.mjs`) against a stack and reading
//! what they found.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lasect_e2e::Stack;
use serde_json::Value;

/// The console's sources (`console/`, where its npm packages and browser scripts are).
pub fn console_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../console")
}

/// The browser Playwright drives: `LASECT_CHROMIUM`, else Debian's chromium.
pub fn chromium() -> PathBuf {
    PathBuf::from(std::env::var("LASECT_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()))
}

/// The browser and the console's npm packages, or a message naming the command that installs
/// them (a skipped browser test would pass unnoticed).
pub fn require_tools() {
    assert!(
        chromium().is_file(),
        "{} missing: run scripts/deps.sh --test (apt-get install chromium)",
        chromium().display()
    );
    assert!(
        console_dir()
            .join("node_modules/playwright-core/package.json")
            .is_file(),
        "console/node_modules missing: run scripts/deps.sh --test (npm ci in console/)"
    );
}

/// `node <script>` in `console_dir`, pointed at the stack's console as its admin: `CONSOLE_URL`,
/// `ADMIN_USER`, `ADMIN_PASSWORD`, `CHROMIUM` and `ARTIFACTS` (where the screenshots go) are
/// set; the caller adds the scenario's own variables, runs it and reads its output with
/// [`facts`].
pub fn console_script(
    stack: &Stack,
    console_dir: &Path,
    script: &str,
    chromium: &Path,
    artifacts: &Path,
) -> Command {
    let mut node = Command::new("node");
    node.arg(script)
        .current_dir(console_dir)
        .env(
            "CONSOLE_URL",
            format!("https://127.0.0.1:{}/", stack.api_port),
        )
        .env("ADMIN_USER", "admin")
        .env("ADMIN_PASSWORD", &stack.admin_password)
        .env("CHROMIUM", chromium)
        .env("ARTIFACTS", artifacts);
    node
}

/// A browser script's facts: the last line of its output that is JSON. Fails the test with both
/// outputs when the script failed or printed no facts; `what` names the script in that message.
pub fn facts(output: &Output, what: &str) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no facts printed:\n{stdout}\n{stderr}"))
}
