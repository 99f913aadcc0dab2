//! Errors here keep their cause as `source()` rather than in their message
//! (so `anyhow`'s `{:#}` prints each once); [`ErrorChain`] prints the whole
//! chain where an error is logged.

use std::error::Error;
use std::fmt;

/// Displays an error and its sources, `outer: inner: innermost`.
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}
