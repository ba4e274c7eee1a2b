//! Composition of a stage process's environment, in the runner's layer order.
//!
//! 1. the runner's own environment (here: the harness process's environment, or
//!    none, plus extra host variables such as `DOCKER_HOST`);
//! 2. the driver variables `TMPDIR`, `BUILD_FAILURE_EXIT_CODE`,
//!    `SYSTEM_FAILURE_EXIT_CODE`, `BUILD_EXIT_CODE_FILE`, `JOB_RESPONSE_FILE`;
//! 3. `job_env` from the config stage (absent in the config stage itself);
//! 4. every job variable as `CUSTOM_ENV_<KEY>`, then `CUSTOM_ENV_CI_JOB_SERVICES`.
//!
//! A later entry with the same name wins, as with Go's `os/exec`, so `job_env`
//! can shadow `TMPDIR` but never a `CUSTOM_ENV_` variable.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::path::Path;

use crate::classify::{BUILD_FAILURE_EXIT_CODE, SYSTEM_FAILURE_EXIT_CODE};
use crate::job::Variable;

/// The per-attempt paths that the runner passes to every stage.
#[derive(Clone, Copy, Debug)]
pub struct DriverPaths<'a> {
    pub temp_dir: &'a Path,
    pub response_file: &'a Path,
    pub exit_code_file: &'a Path,
}

/// Returns the layered environment, duplicates included, in the order the
/// runner builds it. Use [`deduplicate`] for what the process receives.
pub fn layered_env(
    host: &[(OsString, OsString)],
    paths: &DriverPaths<'_>,
    job_env: Option<&[(String, String)]>,
    variables: &[Variable],
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = host.to_vec();

    // The runner adds these from a Go map, so their relative order is random;
    // their keys are distinct, so the order does not matter.
    env.extend([
        (
            OsString::from("TMPDIR"),
            paths.temp_dir.as_os_str().to_owned(),
        ),
        (
            OsString::from("BUILD_FAILURE_EXIT_CODE"),
            OsString::from(BUILD_FAILURE_EXIT_CODE.to_string()),
        ),
        (
            OsString::from("SYSTEM_FAILURE_EXIT_CODE"),
            OsString::from(SYSTEM_FAILURE_EXIT_CODE.to_string()),
        ),
        (
            OsString::from("BUILD_EXIT_CODE_FILE"),
            paths.exit_code_file.as_os_str().to_owned(),
        ),
        (
            OsString::from("JOB_RESPONSE_FILE"),
            paths.response_file.as_os_str().to_owned(),
        ),
    ]);

    for (key, value) in job_env.unwrap_or_default() {
        env.push((OsString::from(key), OsString::from(value)));
    }

    for variable in variables {
        env.push((custom_env_name(&variable.key), variable.value.clone()));
    }
    // NOTE: services are not modelled, so CI_JOB_SERVICES is always empty.
    env.push((custom_env_name("CI_JOB_SERVICES"), OsString::new()));
    env
}

/// Returns `CUSTOM_ENV_<key>`.
pub fn custom_env_name(key: &str) -> OsString {
    OsString::from(format!("CUSTOM_ENV_{key}"))
}

/// Removes earlier entries whose name appears again later, keeping the order of
/// the surviving entries, as Go's `os/exec` does before `execve`.
pub fn deduplicate(env: Vec<(OsString, OsString)>) -> Vec<(OsString, OsString)> {
    let mut seen: HashSet<OsString> = HashSet::new();
    let mut deduplicated: Vec<(OsString, OsString)> = Vec::with_capacity(env.len());
    for (key, value) in env.into_iter().rev() {
        if seen.insert(key.clone()) {
            deduplicated.push((key, value));
        }
    }
    deduplicated.reverse();
    deduplicated
}

/// Returns the value of `key` in a deduplicated environment.
pub fn lookup<'a>(env: &'a [(OsString, OsString)], key: &str) -> Option<&'a OsStr> {
    env.iter()
        .rev()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_os_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_layers_win() {
        let host = vec![
            (OsString::from("TMPDIR"), OsString::from("/host-tmp")),
            (OsString::from("PATH"), OsString::from("/bin")),
        ];
        let paths = DriverPaths {
            temp_dir: Path::new("/tmp/custom-executor1"),
            response_file: Path::new("/tmp/custom-executor1/response.json"),
            exit_code_file: Path::new("/tmp/custom-executor1/build_exit_code"),
        };
        let job_env = vec![
            ("PATH".to_string(), "/job-env/bin".to_string()),
            ("CUSTOM_ENV_X".to_string(), "from-job-env".to_string()),
        ];
        let variables = vec![Variable::new("X", "from-variable")];
        let env = deduplicate(layered_env(&host, &paths, Some(&job_env), &variables));

        assert_eq!(lookup(&env, "TMPDIR").unwrap(), "/tmp/custom-executor1");
        assert_eq!(lookup(&env, "PATH").unwrap(), "/job-env/bin");
        assert_eq!(lookup(&env, "CUSTOM_ENV_X").unwrap(), "from-variable");
        assert_eq!(lookup(&env, "CUSTOM_ENV_CI_JOB_SERVICES").unwrap(), "");
        assert_eq!(env.iter().filter(|(k, _)| k == "PATH").count(), 1);
    }
}
