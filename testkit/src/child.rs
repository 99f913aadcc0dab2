//! A child process owned by a test: output captured line by line (and echoed
//! to the test's stderr, which cargo shows for failing tests), terminated on
//! `Drop`. It does not inherit the test's `LASECT_*` variables
//! ([`without_inherited_lasect_env`]).

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::HarnessError;

#[derive(Default)]
struct Output {
    lines: Mutex<Vec<String>>,
    changed: Condvar,
    /// Pipes whose reader thread has reached their end.
    closed: Mutex<usize>,
    /// Signalled when `closed` grows.
    ended: Condvar,
}

/// How long [`ChildGuard::wait_for_line`] still reads a process's output after it exited.
const EXIT_GRACE: Duration = Duration::from_secs(2);

pub struct ChildGuard {
    name: String,
    child: Child,
    output: Arc<Output>,
    /// Pipes being read (stdout, stderr).
    pipes: usize,
    /// Whether the output was read to its end after the exit (see [`Self::settle_output`]).
    settled: bool,
}

/// Removes from `cmd` every `LASECT_*` variable of the test process's own
/// environment, except those set (or removed) on `cmd` itself: a test says
/// which of them its binary gets. A developer's shell that had sourced
/// `.lasect/demo/env` (LASECT_STORE_DSN, LASECT_URL, LASECT_TOKEN, …) or set
/// LASECT_LOG would otherwise point the binaries under test at the demo or
/// hide the log lines tests wait for.
pub fn without_inherited_lasect_env(cmd: &mut Command) -> &mut Command {
    let set: HashSet<OsString> = cmd.get_envs().map(|(k, _)| k.to_owned()).collect();
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("LASECT_")) && !set.contains(&key) {
            cmd.env_remove(&key);
        }
    }
    cmd
}

impl ChildGuard {
    /// Spawns `cmd` with stdout and stderr captured, without the inherited
    /// `LASECT_*` variables ([`without_inherited_lasect_env`]).
    pub fn spawn(mut cmd: Command) -> Result<Self, HarnessError> {
        without_inherited_lasect_env(&mut cmd);
        let name = cmd
            .get_program()
            .to_string_lossy()
            .rsplit('/')
            .next()
            .unwrap_or("child")
            .to_string();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(HarnessError::io(format!("spawn {name}")))?;
        let output = Arc::new(Output::default());
        let mut pipes = 0;
        if let Some(out) = child.stdout.take() {
            pump(out, name.clone(), output.clone());
            pipes += 1;
        }
        if let Some(err) = child.stderr.take() {
            pump(err, name.clone(), output.clone());
            pipes += 1;
        }
        Ok(Self {
            name,
            child,
            output,
            pipes,
            settled: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line printed so far (stdout and stderr interleaved).
    pub fn lines(&self) -> Vec<String> {
        self.output
            .lines
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Waits until a printed line contains `needle`; returns that line.
    pub fn wait_for_line(
        &mut self,
        needle: &str,
        timeout: Duration,
    ) -> Result<String, HarnessError> {
        let deadline = Instant::now() + timeout;
        let mut lines = self
            .output
            .lines
            .lock()
            .map_err(|_| HarnessError::Other("output lock poisoned".into()))?;
        // When the process has exited, its last lines may still be on their way from the
        // reader threads: give them a moment before calling the line missing.
        let mut exited: Option<Instant> = None;
        loop {
            if let Some(l) = lines.iter().find(|l| l.contains(needle)) {
                return Ok(l.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if exited.is_none() && matches!(self.child.try_wait(), Ok(Some(_))) {
                exited = Some(now);
            }
            if let (Some(at), Ok(Some(status))) = (exited, self.child.try_wait())
                && now.duration_since(at) >= EXIT_GRACE
            {
                return Err(HarnessError::Other(format!(
                    "{} exited ({status}) before printing {needle:?}; output:\n{}",
                    self.name,
                    lines.join("\n")
                )));
            }
            let wait = (deadline - now).min(Duration::from_millis(200));
            lines = self
                .output
                .changed
                .wait_timeout(lines, wait)
                .map_err(|_| HarnessError::Other("output lock poisoned".into()))?
                .0;
        }
        Err(HarnessError::Other(format!(
            "{} did not print {needle:?} within {timeout:?}; output:\n{}",
            self.name,
            lines.join("\n")
        )))
    }

    /// Exit status if the process has ended.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                self.settle_output();
                return Ok(s);
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Other(format!(
                    "{} still running after {timeout:?}",
                    self.name
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.try_status() {
            return Some(s);
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(s) = self.try_status() {
                self.settle_output();
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill()
    }

    /// SIGKILL (a crash, as far as the process knows).
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        self.settle_output();
        status
    }

    /// After the exit, waits (at most [`EXIT_GRACE`], once) for the reader threads to reach
    /// the end of the pipes, so [`Self::lines`] holds the last lines the process printed. A
    /// process it started may keep a pipe open: then the grace bounds the wait.
    fn settle_output(&mut self) {
        if self.settled {
            return;
        }
        self.settled = true;
        let deadline = Instant::now() + EXIT_GRACE;
        let Ok(mut closed) = self.output.closed.lock() else {
            return;
        };
        while *closed < self.pipes {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            match self.output.ended.wait_timeout(closed, deadline - now) {
                Ok((guard, _)) => closed = guard,
                Err(_) => return,
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(5));
    }
}

fn pump(stream: impl Read + Send + 'static, name: String, output: Arc<Output>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            eprintln!("[{name}] {line}");
            if let Ok(mut lines) = output.lines.lock() {
                lines.push(line);
            }
            output.changed.notify_all();
        }
        if let Ok(mut closed) = output.closed.lock() {
            *closed += 1;
        }
        output.ended.notify_all();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the copy of this test binary that the test starts: that copy checks.
    const REEXEC: &str = "LASECT_TESTKIT_CHILD_ENV_CHECK";

    /// A child spawned through [`ChildGuard`] sees none of the parent's `LASECT_*` variables
    /// but those set on its command. The parent environment must hold such variables, and
    /// setting them in this process would be `unsafe` and race other tests: so the test runs
    /// itself again in a copy of this binary started with them, and that copy checks.
    #[test]
    fn children_do_not_inherit_lasect_variables() {
        if std::env::var_os(REEXEC).is_none() {
            let exe = std::env::current_exe().expect("test binary path");
            let out = Command::new(exe)
                .args([
                    "--exact",
                    "child::tests::children_do_not_inherit_lasect_variables",
                    "--nocapture",
                ])
                .env(REEXEC, "1")
                .env("LASECT_STORE_DSN", "host=/the-demo-store")
                .env("LASECT_KEPT", "inherited")
                .output()
                .expect("run the test binary");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("1 passed"),
                "{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        assert_eq!(
            std::env::var("LASECT_STORE_DSN").as_deref(),
            Ok("host=/the-demo-store"),
            "the copy runs with the parent's LASECT_* variables"
        );
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            // It stays alive after printing: the guard reads the line before it sees the exit
            // (and kills it on drop).
            "echo \"dsn=${LASECT_STORE_DSN-unset} kept=${LASECT_KEPT-unset} \
             set=${LASECT_SET-unset} path=${PATH:+set}\"; sleep 30",
        ])
        .env("LASECT_KEPT", "on purpose")
        .env("LASECT_SET", "yes");
        let mut child = ChildGuard::spawn(cmd).expect("spawn sh");
        let line = child
            .wait_for_line("dsn=", Duration::from_secs(30))
            .expect("sh prints");
        assert_eq!(line, "dsn=unset kept=on purpose set=yes path=set");
    }
}
