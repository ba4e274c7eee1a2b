//! The driver's own lines in the job log.
//!
//! The runner shows a stage's standard error in the job log (for `cleanup`, in its own
//! log), adding timestamps itself, so these lines are short and plain. Standard output is
//! left to the job's own output and to the `config` JSON.

/// Writes one line to standard error.
pub fn line(text: &str) {
    eprintln!("{text}");
}

/// Writes one warning line to standard error, in the runner's yellow.
pub fn warning(text: &str) {
    eprintln!("\x1b[0;33mWARNING: {text}\x1b[0m");
}
