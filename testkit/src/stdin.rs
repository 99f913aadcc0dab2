//! Running a binary to its end with a given standard input (a password
//! prompt, say), for tests of what a command does rather than how it runs.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::HarnessError;

/// Runs `cmd` with `stdin` as its whole standard input (then closed) and
/// returns its exit status with the captured stdout and stderr.
pub fn run_with_stdin(cmd: &mut Command, stdin: &str) -> Result<Output, HarnessError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = crate::child::without_inherited_lasect_env(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(HarnessError::io(format!("spawn {program}")))?;
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.as_bytes())
            .map_err(HarnessError::io(format!("write the stdin of {program}")))?;
    }
    child
        .wait_with_output()
        .map_err(HarnessError::io(format!("wait for {program}")))
}
