//! Environment variable names, defined once, and a snapshot of the process environment.
//!
//! Stages read the environment only through [`EnvSnapshot`], so unit tests build one from
//! pairs instead of changing the process environment.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// Exit code the runner expects for a build (script) failure.
pub const BUILD_FAILURE_EXIT_CODE: &str = "BUILD_FAILURE_EXIT_CODE";
/// Exit code the runner expects for a system (environment) failure.
pub const SYSTEM_FAILURE_EXIT_CODE: &str = "SYSTEM_FAILURE_EXIT_CODE";
/// File where `run` writes the script's own exit code (runner 17.9 and later).
pub const BUILD_EXIT_CODE_FILE: &str = "BUILD_EXIT_CODE_FILE";
/// JSON job payload written by the runner (runner 14.1 and later).
pub const JOB_RESPONSE_FILE: &str = "JOB_RESPONSE_FILE";
/// Settings file of the driver, used when `--config` is not given.
pub const SETTINGS_FILE: &str = "CROSS_EXECUTOR_CONFIG";
/// Platform of the job (`image:docker:platform`), passed by `cleanup` to the pool's refill,
/// which cannot read `JOB_RESPONSE_FILE` because the runner deletes it after cleanup.
pub const POOL_PLATFORM: &str = "CROSS_EXECUTOR_POOL_PLATFORM";
/// Prefix the runner puts before every job variable.
pub const JOB_VARIABLE_PREFIX: &str = "CUSTOM_ENV_";

/// Job variables the driver reads, without the `CUSTOM_ENV_` prefix.
pub mod job {
    pub const JOB_ID: &str = "CI_JOB_ID";
    pub const JOB_IMAGE: &str = "CI_JOB_IMAGE";
    pub const JOB_TIMEOUT: &str = "CI_JOB_TIMEOUT";
    pub const PROJECT_ID: &str = "CI_PROJECT_ID";
    pub const PROJECT_PATH: &str = "CI_PROJECT_PATH";
    pub const PIPELINE_ID: &str = "CI_PIPELINE_ID";
    pub const RUNNER_SHORT_TOKEN: &str = "CI_RUNNER_SHORT_TOKEN";
    pub const CONCURRENT_ID: &str = "CI_CONCURRENT_ID";
    pub const CONCURRENT_PROJECT_ID: &str = "CI_CONCURRENT_PROJECT_ID";
}

/// A copy of the process environment taken once at start-up.
#[derive(Debug, Clone, Default)]
pub struct EnvSnapshot {
    vars: BTreeMap<OsString, OsString>,
}

impl EnvSnapshot {
    /// Copies the current process environment, keeping values that are not UTF-8.
    pub fn capture() -> Self {
        EnvSnapshot {
            vars: std::env::vars_os().collect(),
        }
    }

    /// Builds a snapshot from pairs, for tests.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        EnvSnapshot {
            vars: pairs
                .into_iter()
                .map(|(key, value)| (key.into(), value.into()))
                .collect(),
        }
    }

    /// Returns a variable as text; bytes that are not UTF-8 become U+FFFD.
    pub fn get(&self, name: &str) -> Option<String> {
        self.get_os(name)
            .map(|value| value.to_string_lossy().into_owned())
    }

    /// Returns a variable as the operating system stored it.
    pub fn get_os(&self, name: &str) -> Option<&OsStr> {
        self.vars.get(OsStr::new(name)).map(OsString::as_os_str)
    }

    /// Returns a non-empty variable as a path.
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        self.get_os(name)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    }

    /// Returns the job variable `name`, which the runner passes as `CUSTOM_ENV_<name>`.
    pub fn job_variable(&self, name: &str) -> Option<String> {
        self.get(&format!("{JOB_VARIABLE_PREFIX}{name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_variable_reads_prefixed_name() {
        let snapshot = EnvSnapshot::from_pairs([("CUSTOM_ENV_CI_JOB_ID".into(), "17".into())]);
        assert_eq!(snapshot.job_variable(job::JOB_ID).as_deref(), Some("17"));
        assert_eq!(snapshot.get(job::JOB_ID), None);
    }

    #[test]
    fn path_ignores_empty_value() {
        let snapshot = EnvSnapshot::from_pairs([("JOB_RESPONSE_FILE".into(), String::new())]);
        assert_eq!(snapshot.path(JOB_RESPONSE_FILE), None);
    }
}
