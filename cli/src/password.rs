//! Reading a password: typed at a terminal without echo, or one line of stdin for scripts.
//!
//! Echo is switched off with termios on stdin itself (nix, already a workspace dependency)
//! rather than through `/dev/tty` as `rpassword` does: the prompt is written only once echo is
//! off, so nothing typed after it can be shown, and no controlling terminal is needed.

use std::io::{BufRead, IsTerminal, Write};
use std::os::fd::BorrowedFd;

use anyhow::Context;
use lasect_pki::Secret;
use nix::sys::termios::{self, LocalFlags, SetArg, Termios};

use crate::exit::Usage;

/// Reads a password. With `from_stdin` (`--password-stdin`), or when stdin is not a terminal
/// (a pipe, a file), it is the first line of stdin; otherwise `prompt` is shown on stderr and
/// the answer is read with echo off. The password is a [`Secret`]: zeroed when dropped.
pub fn read(prompt: &str, from_stdin: bool) -> anyhow::Result<Secret> {
    let stdin = std::io::stdin();
    if from_stdin || !stdin.is_terminal() {
        if !from_stdin {
            eprint!("{prompt}");
        }
        return first_line(&mut stdin.lock())?
            .ok_or_else(|| Usage("no password on stdin".to_owned()).into());
    }
    let quiet = Quiet::new(std::os::fd::AsFd::as_fd(&stdin)).context("turn off echo")?;
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let line = first_line(&mut stdin.lock());
    drop(quiet);
    line?.ok_or_else(|| Usage("no password given".to_owned()).into())
}

fn first_line(input: &mut impl BufRead) -> anyhow::Result<Option<Secret>> {
    // Zeroed on every path; on success its buffer moves into the Secret, not copied. Room for
    // far more than the longest password the API takes (1024), so that reading does not
    // reallocate and leave a copy behind that nothing zeroes.
    let mut line = zeroize::Zeroizing::new(String::with_capacity(4096));
    if input.read_line(&mut line).context("read the password")? == 0 {
        return Ok(None);
    }
    let end = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(end);
    Ok(Some(Secret::new(std::mem::take(&mut *line))))
}

/// The terminal with echo off until dropped (also on an error or a panic).
struct Quiet<'a> {
    fd: BorrowedFd<'a>,
    saved: Termios,
}

impl<'a> Quiet<'a> {
    fn new(fd: BorrowedFd<'a>) -> nix::Result<Self> {
        let saved = termios::tcgetattr(fd)?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        // The Enter key still moves to the next line.
        quiet.local_flags.insert(LocalFlags::ECHONL);
        termios::tcsetattr(fd, SetArg::TCSANOW, &quiet)?;
        Ok(Quiet { fd, saved })
    }
}

impl Drop for Quiet<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd, SetArg::TCSANOW, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_without_its_end() {
        let mut input = std::io::Cursor::new("s3cret pass\r\nsecond\n");
        assert_eq!(
            first_line(&mut input)
                .expect("read")
                .as_ref()
                .map(Secret::expose_secret),
            Some("s3cret pass")
        );
        let mut empty = std::io::Cursor::new("");
        assert_eq!(first_line(&mut empty).expect("read"), None);
    }
}
