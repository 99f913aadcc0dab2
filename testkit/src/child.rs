//! A child process owned by a test: output captured line by line (and echoed
//! to the test's stderr, which cargo shows for failing tests), terminated on
//! `Drop`.

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
}

pub struct ChildGuard {
    name: String,
    child: Child,
    output: Arc<Output>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout and stderr captured.
    pub fn spawn(mut cmd: Command) -> Result<Self, HarnessError> {
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
        if let Some(out) = child.stdout.take() {
            pump(out, name.clone(), output.clone());
        }
        if let Some(err) = child.stderr.take() {
            pump(err, name.clone(), output.clone());
        }
        Ok(Self {
            name,
            child,
            output,
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
        loop {
            if let Some(l) = lines.iter().find(|l| l.contains(needle)) {
                return Ok(l.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
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
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill()
    }

    /// SIGKILL (a crash, as far as the process knows).
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let _ = self.child.kill();
        self.child.wait().ok()
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
    });
}
