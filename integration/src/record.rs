//! Records of stage calls and job results.

use std::ffi::OsString;
use std::time::Duration;

use crate::classify::StageError;
use crate::config::{BuildDirs, ConfigOutput};
use crate::env::lookup;
use crate::output::StreamSummary;
use crate::process::{ProcessEnd, SentSignal, StopReason};

/// One driver process: a config, prepare, run or cleanup call.
#[derive(Clone, Debug)]
pub struct StageRecord {
    /// `config`, `prepare`, `cleanup`, or the sub-stage name of a run call.
    pub stage: String,
    /// The preparation attempt (1-based) the call belongs to.
    pub attempt: u32,
    /// The full argument vector, program first.
    pub argv: Vec<std::ffi::OsString>,
    /// The environment the process received, after de-duplication.
    pub env: Vec<(OsString, OsString)>,
    /// The script file's content, for run calls.
    pub script: Option<Vec<u8>>,
    pub end: ProcessEnd,
    /// The runner's classification of `end`.
    pub result: Result<(), StageError>,
    /// Raw stdout; empty when it was only digested.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// stdout and stderr in arrival order.
    pub combined: Vec<u8>,
    pub stdout_summary: Option<StreamSummary>,
    pub duration: Duration,
    pub stop_reason: Option<StopReason>,
    pub signals: Vec<SentSignal>,
    /// Time between the driver's exit and EOF on both pipes.
    pub pipe_eof_delay: Option<Duration>,
}

impl StageRecord {
    /// Returns the value of an environment variable the process received.
    pub fn env_value(&self, key: &str) -> Option<&std::ffi::OsStr> {
        lookup(&self.env, key)
    }

    /// Returns the exit code if the process exited normally.
    pub fn exit_code(&self) -> Option<i32> {
        match self.end {
            ProcessEnd::Exited(code) => Some(code),
            _ => None,
        }
    }

    /// Returns stdout as text, with invalid UTF-8 replaced.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Returns stderr as text, with invalid UTF-8 replaced.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// The final result of a job as GitLab would record it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// `script_failure` with the script's exit code.
    BuildFailure {
        stage: String,
        exit_code: i64,
        message: String,
    },
    /// `runner_system_failure`.
    SystemFailure {
        stage: String,
        message: String,
    },
    /// A configuration error such as a missing `builds_dir`; GitLab shows it as
    /// `script_failure` without an exit code.
    ConfigurationError {
        stage: String,
        message: String,
    },
    /// The job was cancelled while `stage` ran.
    Canceled {
        stage: String,
    },
    /// The job timeout ran out while `stage` ran.
    TimedOut {
        stage: String,
        timeout: Duration,
    },
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }

    /// Returns the line the runner writes at the end of the job log (without the
    /// `ERROR: ` prefix that GitLab shows for failures).
    pub fn summary(&self) -> String {
        match self {
            Outcome::Success => "Job succeeded".to_string(),
            Outcome::BuildFailure { message, .. } | Outcome::ConfigurationError { message, .. } => {
                format!("Job failed: {message}")
            }
            Outcome::SystemFailure { message, .. } => {
                format!("Job failed (system failure): {message}")
            }
            Outcome::Canceled { .. } => "Job failed: canceled".to_string(),
            Outcome::TimedOut { timeout, .. } => format!(
                "Job failed: execution took longer than {} seconds",
                go_duration(*timeout)
            ),
        }
    }

    /// Returns the exit code of the `run-job` command: 0 for success, 1 for a
    /// build or configuration failure, cancel or timeout, 2 for a system failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Success => 0,
            Outcome::SystemFailure { .. } => 2,
            _ => 1,
        }
    }
}

/// Everything a job run produced.
#[derive(Clone, Debug)]
pub struct JobResult {
    pub outcome: Outcome,
    /// The driver's part of the job log: config stderr, then prepare and every
    /// run call's stdout and stderr, in order. Runner-side lines are not included;
    /// see [`crate::transcript`] for those.
    pub job_log: Vec<u8>,
    /// Output of every cleanup call, which the runner writes to its own log only.
    pub cleanup_log: Vec<u8>,
    /// Every driver process, in start order, across all attempts.
    pub stages: Vec<StageRecord>,
    /// The parsed config output of the last attempt that got that far.
    pub config: Option<ConfigOutput>,
    pub dirs: Option<BuildDirs>,
    pub attempts: u32,
    /// Warnings the runner would log, such as an ignored `after_script` failure.
    pub warnings: Vec<String>,
}

impl JobResult {
    /// Returns the last record of `stage`.
    pub fn stage(&self, stage: &str) -> Option<&StageRecord> {
        self.stages
            .iter()
            .rev()
            .find(|record| record.stage == stage)
    }

    /// Returns every record of `stage`, in order.
    pub fn stages_named<'a>(
        &'a self,
        stage: &'a str,
    ) -> impl Iterator<Item = &'a StageRecord> + 'a {
        self.stages
            .iter()
            .filter(move |record| record.stage == stage)
    }

    /// Returns the stage names in call order.
    pub fn stage_names(&self) -> Vec<&str> {
        self.stages
            .iter()
            .map(|record| record.stage.as_str())
            .collect()
    }

    /// Returns the job log as text, with invalid UTF-8 replaced.
    pub fn job_log_text(&self) -> String {
        String::from_utf8_lossy(&self.job_log).into_owned()
    }
}

/// Formats a duration the way Go prints a `time.Duration` (`1h0m0s`, `1m30s`,
/// `5s`, `250ms`); fractions of a second are dropped above one second.
pub(crate) fn go_duration(duration: Duration) -> String {
    if duration < Duration::from_secs(1) && !duration.is_zero() {
        return format!("{}ms", duration.as_millis());
    }
    let total = duration.as_secs();
    let (hours, minutes, seconds) = (total / 3600, total % 3600 / 60, total % 60);
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_formats() {
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(5)), "5s");
    }
}
