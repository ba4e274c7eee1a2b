//! Classification of a stage process's end into the runner's error kinds
//! (`executors/custom/command/command.go` in gitlab-runner 19.4).
//!
//! The harness always sets `BUILD_FAILURE_EXIT_CODE=1` and
//! `SYSTEM_FAILURE_EXIT_CODE=2`, as the runner does.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::process::ProcessEnd;

pub const BUILD_FAILURE_EXIT_CODE: i32 = 1;
pub const SYSTEM_FAILURE_EXIT_CODE: i32 = 2;

/// Go's `bufio.Scanner` gives up on lines longer than this, which leaves the
/// runner with an empty, unparsable code.
const MAX_SCANNER_LINE: usize = 64 * 1024;

/// A failed stage or preparation step, with the runner's error text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StageError {
    /// `BuildError{ScriptFailure}`: the job fails as `script_failure` with this
    /// exit code. Never retried in preparation.
    Build { exit_code: i64, message: String },
    /// Any other error; the runner reports it as a system failure and retries it
    /// in preparation.
    System { message: String },
    /// `BuildError{ConfigurationError}`, such as an empty `builds_dir`. Never
    /// retried, reported as `script_failure` without an exit code.
    Configuration { message: String },
}

impl StageError {
    pub fn message(&self) -> &str {
        match self {
            StageError::Build { message, .. }
            | StageError::System { message }
            | StageError::Configuration { message } => message,
        }
    }

    /// Returns whether the runner's preparation loop stops on this error
    /// instead of retrying.
    pub fn stops_retries(&self) -> bool {
        !matches!(self, StageError::System { .. })
    }

    /// Returns the same kind of error with its message passed through `change`.
    pub fn map_message(self, change: impl FnOnce(String) -> String) -> StageError {
        match self {
            StageError::Build { exit_code, message } => StageError::Build {
                exit_code,
                message: change(message),
            },
            StageError::System { message } => StageError::System {
                message: change(message),
            },
            StageError::Configuration { message } => StageError::Configuration {
                message: change(message),
            },
        }
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.message())
    }
}

/// Classifies how a stage process ended.
///
/// Exit 0 is success. Exit 1 is a build failure whose code comes from the first
/// line of `exit_code_file`. The code is 1 when the file is missing, and the
/// result is a system failure when the line is not a decimal integer. Exit 2,
/// any other code, a signal, a failed start and a kill timeout are system
/// failures.
pub fn classify_end(end: &ProcessEnd, exit_code_file: &Path) -> Result<(), StageError> {
    match end {
        ProcessEnd::Exited(0) => Ok(()),
        ProcessEnd::Exited(BUILD_FAILURE_EXIT_CODE) => Err(parse_build_failure(exit_code_file)),
        ProcessEnd::Exited(SYSTEM_FAILURE_EXIT_CODE) => Err(StageError::System {
            message: "exit status 2".to_string(),
        }),
        ProcessEnd::Exited(code) => Err(unknown_exit(*code, &format!("exit status {code}"))),
        ProcessEnd::Signaled {
            signal,
            core_dumped,
        } => {
            let mut description = format!("signal: {}", signal_description(*signal));
            if *core_dumped {
                description.push_str(" (core dumped)");
            }
            Err(unknown_exit(-1, &description))
        }
        ProcessEnd::FailedToStart(error) => Err(StageError::System {
            message: format!("failed to start command: {error}"),
        }),
        ProcessEnd::KillTimedOut { pid } => Err(StageError::System {
            message: format!("failed to kill process PID={pid}, likely process is dormant"),
        }),
        ProcessEnd::Abandoned { pid } => Err(StageError::System {
            message: format!("stopped waiting for process PID={pid} after the job was aborted"),
        }),
    }
}

fn unknown_exit(code: i32, description: &str) -> StageError {
    StageError::System {
        message: format!(
            "unknown Custom executor executable exit code {code}; executable execution terminated with: {description}"
        ),
    }
}

fn parse_build_failure(exit_code_file: &Path) -> StageError {
    let Ok(file) = File::open(exit_code_file) else {
        return StageError::Build {
            exit_code: 1,
            message: "exit status 1".to_string(),
        };
    };

    let first_line = read_first_line(file);
    match first_line.parse::<i64>() {
        Ok(exit_code) => StageError::Build {
            exit_code,
            message: format!("exit status {first_line}"),
        },
        Err(_) => unknown_exit(SYSTEM_FAILURE_EXIT_CODE, "exit status 1"),
    }
}

/// Returns the first line as Go's `bufio.ScanLines` yields it: without the
/// newline and one trailing carriage return, and empty when the file is empty,
/// unreadable or the line is too long for the scanner.
fn read_first_line(file: File) -> String {
    let mut line = Vec::new();
    let mut reader = BufReader::new(file.take(MAX_SCANNER_LINE as u64 + 2));
    if reader.read_until(b'\n', &mut line).is_err() {
        return String::new();
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    if line.len() > MAX_SCANNER_LINE {
        return String::new();
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).unwrap_or_default()
}

/// Returns Go's description of a Unix signal, as `exec.ExitError` prints it.
fn signal_description(signal: i32) -> String {
    let text = match signal {
        1 => "hangup",
        2 => "interrupt",
        3 => "quit",
        4 => "illegal instruction",
        5 => "trace/breakpoint trap",
        6 => "aborted",
        7 => "bus error",
        8 => "floating point exception",
        9 => "killed",
        10 => "user defined signal 1",
        11 => "segmentation fault",
        12 => "user defined signal 2",
        13 => "broken pipe",
        14 => "alarm clock",
        15 => "terminated",
        other => return format!("signal {other}"),
    };
    text.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn classify_with_file(content: Option<&[u8]>) -> Result<(), StageError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("build_exit_code");
        if let Some(content) = content {
            fs::write(&path, content).unwrap();
        }
        classify_end(&ProcessEnd::Exited(1), &path)
    }

    #[test]
    fn exit_zero_is_success() {
        assert_eq!(
            classify_end(&ProcessEnd::Exited(0), Path::new("/nonexistent")),
            Ok(())
        );
    }

    #[test]
    fn build_failure_codes_from_file() {
        let cases: [(Option<&[u8]>, i64); 5] = [
            (None, 1),
            (Some(b"42"), 42),
            (Some(b"42\n"), 42),
            (Some(b"7\r\nignored"), 7),
            (Some(b"+3\n"), 3),
        ];
        for (content, expected) in cases {
            match classify_with_file(content) {
                Err(StageError::Build { exit_code, .. }) => assert_eq!(exit_code, expected),
                other => panic!("{content:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn unparsable_code_file_is_system_failure() {
        for content in [&b""[..], b"42 ", b"abc", b" 1", b"\n42"] {
            let error = classify_with_file(Some(content)).unwrap_err();
            assert_eq!(
                error.message(),
                "unknown Custom executor executable exit code 2; executable execution terminated with: exit status 1",
                "{content:?}"
            );
        }
    }

    #[test]
    fn other_ends_are_system_failures() {
        let path = Path::new("/nonexistent");
        assert_eq!(
            classify_end(&ProcessEnd::Exited(2), path)
                .unwrap_err()
                .message(),
            "exit status 2"
        );
        assert_eq!(
            classify_end(&ProcessEnd::Exited(105), path).unwrap_err().message(),
            "unknown Custom executor executable exit code 105; executable execution terminated with: exit status 105"
        );
        let signaled = ProcessEnd::Signaled {
            signal: 15,
            core_dumped: false,
        };
        assert!(classify_end(&signaled, path)
            .unwrap_err()
            .message()
            .ends_with("exit code -1; executable execution terminated with: signal: terminated"));
    }
}
