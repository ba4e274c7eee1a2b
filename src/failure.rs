//! The one place that sorts a stage's outcome into the runner's failure classes.
//!
//! The runner reads only the driver's exit code: `BUILD_FAILURE_EXIT_CODE` means the job's
//! script failed (the real code travels in `BUILD_EXIT_CODE_FILE`), `SYSTEM_FAILURE_EXIT_CODE`
//! means the environment failed and lets the runner retry preparation. Every stage returns a
//! [`Failure`], and `main` turns it into an exit code through [`ExitCodes`].

use std::fmt;

use crate::env::{self, EnvSnapshot};

/// Why a stage did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// The job's script ran and exited non-zero; the job fails with `script_failure`.
    Build {
        /// The script's own exit code, passed on through `BUILD_EXIT_CODE_FILE`.
        exit_code: i32,
    },
    /// The environment failed (Docker, emulation, settings); the job fails with
    /// `runner_system_failure`.
    System(anyhow::Error),
    /// The stage stopped because the runner sent SIGTERM or SIGINT. The runner reports the
    /// job as canceled or timed out itself, so the exit code only has to be non-zero.
    Interrupted,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::System(error)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Build { exit_code } => write!(f, "the script exited with code {exit_code}"),
            Failure::System(error) => write!(f, "{error:#}"),
            Failure::Interrupted => write!(f, "interrupted by a signal"),
        }
    }
}

/// The exit codes the runner asked for, with the runner's documented fallbacks of 1 and 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitCodes {
    pub build_failure: u8,
    pub system_failure: u8,
}

impl ExitCodes {
    /// Reads `BUILD_FAILURE_EXIT_CODE` and `SYSTEM_FAILURE_EXIT_CODE`; a missing or invalid
    /// value falls back to 1 or 2.
    pub fn from_env(snapshot: &EnvSnapshot) -> Self {
        let read = |name: &str, fallback: u8| {
            snapshot
                .get(name)
                .and_then(|value| value.trim().parse::<u8>().ok())
                .unwrap_or(fallback)
        };
        ExitCodes {
            build_failure: read(env::BUILD_FAILURE_EXIT_CODE, 1),
            system_failure: read(env::SYSTEM_FAILURE_EXIT_CODE, 2),
        }
    }

    /// Returns the process exit code for a stage outcome.
    pub fn for_outcome(&self, outcome: &Result<(), Failure>) -> u8 {
        match outcome {
            Ok(()) => 0,
            Err(Failure::Build { .. }) => self.build_failure,
            Err(Failure::System(_)) | Err(Failure::Interrupted) => self.system_failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(pairs: &[(&str, &str)]) -> EnvSnapshot {
        EnvSnapshot::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn exit_codes_fall_back_to_one_and_two() {
        let codes = ExitCodes::from_env(&snapshot(&[]));
        assert_eq!(codes.build_failure, 1);
        assert_eq!(codes.system_failure, 2);
    }

    #[test]
    fn exit_codes_come_from_runner_variables() {
        let codes = ExitCodes::from_env(&snapshot(&[
            ("BUILD_FAILURE_EXIT_CODE", "7"),
            ("SYSTEM_FAILURE_EXIT_CODE", "9"),
        ]));
        assert_eq!(codes.for_outcome(&Err(Failure::Build { exit_code: 42 })), 7);
        assert_eq!(
            codes.for_outcome(&Err(Failure::System(anyhow::anyhow!("daemon gone")))),
            9
        );
        assert_eq!(codes.for_outcome(&Ok(())), 0);
    }

    #[test]
    fn exit_codes_ignore_invalid_values() {
        let codes = ExitCodes::from_env(&snapshot(&[("BUILD_FAILURE_EXIT_CODE", "one")]));
        assert_eq!(codes.build_failure, 1);
    }
}
