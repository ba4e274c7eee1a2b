//! Names and labels of the Docker objects that belong to a job.
//!
//! Every stage derives the same names from the job's ids, so later stages find the
//! container without state saved by earlier ones. Labels let `cleanup` and garbage
//! collection find objects whose names are unknown.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::job::JobContext;

/// Label present on every object the driver creates.
pub const LABEL_MANAGED: &str = "io.cross-executor.managed";
/// Label with the GitLab job id.
pub const LABEL_JOB_ID: &str = "io.cross-executor.job-id";
pub const LABEL_PROJECT_ID: &str = "io.cross-executor.project-id";
pub const LABEL_PIPELINE_ID: &str = "io.cross-executor.pipeline-id";
pub const LABEL_RUNNER: &str = "io.cross-executor.runner";
/// Label with the creation time in Unix seconds.
pub const LABEL_CREATED: &str = "io.cross-executor.created";
/// Label with the job timeout in seconds, when the runner sent one. Garbage collection
/// treats a job object as abandoned once this time and a margin have passed.
pub const LABEL_TIMEOUT: &str = "io.cross-executor.timeout";
/// Label `helper` on the helper container of a job.
pub const LABEL_ROLE: &str = "io.cross-executor.role";
/// Label whose value `job` marks objects removed with the job and `shared` marks objects
/// kept across jobs (the project's cache volume).
pub const LABEL_SCOPE: &str = "io.cross-executor.scope";
/// Label with the key of a pooled container: the digest of its configuration.
pub const LABEL_POOL_KEY: &str = "io.cross-executor.pool-key";
/// Label with the name a pooled container was created with. The container keeps that
/// name while it waits, and a job that takes it renames it.
pub const LABEL_POOL_SLOT: &str = "io.cross-executor.pool-slot";

const PREFIX: &str = "cross-executor";
/// Maximum length of a Docker object name; longer derived names are shortened with a hash.
const MAX_NAME_LENGTH: usize = 120;

/// The Docker object names of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobNames {
    pub container: String,
    /// Container of the host's architecture for git, cache and artifact stages.
    pub helper_container: String,
    /// Per-job volume mounted at `builds_dir`.
    pub builds_volume: String,
    /// Per-project volume mounted at `cache_dir`, shared by the project's jobs.
    pub cache_volume: String,
}

impl JobNames {
    /// Derives the names from runner token, concurrent project id, project id and job id.
    pub fn for_job(job: &JobContext) -> Self {
        let container = bounded_name(&[
            PREFIX,
            &name_part(&job.runner_short_token),
            &name_part(&job.concurrent_project_id),
            &name_part(&job.project_id),
            &name_part(&job.job_id),
        ]);
        let builds_volume = builds_volume_of(&container);
        let helper_container = bounded_name(&[&container, "helper"]);
        let cache_volume = bounded_name(&[
            PREFIX,
            "cache",
            &name_part(&job.runner_short_token),
            &name_part(&job.project_id),
        ]);
        JobNames {
            container,
            helper_container,
            builds_volume,
            cache_volume,
        }
    }
}

/// Labels for an object that belongs to this job only.
pub fn job_labels(job: &JobContext) -> HashMap<String, String> {
    let mut labels = shared_labels(job);
    labels.insert(LABEL_SCOPE.into(), "job".into());
    labels.insert(LABEL_JOB_ID.into(), job.job_id.clone());
    labels.insert(LABEL_PIPELINE_ID.into(), job.pipeline_id.clone());
    if let Some(timeout) = job.timeout_seconds {
        labels.insert(LABEL_TIMEOUT.into(), timeout.to_string());
    }
    labels
}

/// Labels for an object shared by the project's jobs.
pub fn shared_labels(job: &JobContext) -> HashMap<String, String> {
    let created = unix_now();
    HashMap::from([
        (LABEL_MANAGED.into(), "true".into()),
        (LABEL_SCOPE.into(), "shared".into()),
        (LABEL_PROJECT_ID.into(), job.project_id.clone()),
        (LABEL_RUNNER.into(), job.runner_short_token.clone()),
        (LABEL_CREATED.into(), created.to_string()),
    ])
}

/// Returns the name of the builds volume of the job whose container is `container`.
pub fn builds_volume_of(container: &str) -> String {
    bounded_name(&[container, "builds"])
}

/// Returns the name of slot `slot` of the pool with key `key`.
pub fn pool_slot_name(job: &JobContext, key: &str, slot: u32) -> String {
    bounded_name(&[
        PREFIX,
        "pool",
        &name_part(&job.runner_short_token),
        key,
        &slot.to_string(),
    ])
}

/// Labels of a pooled container: the project's, because it mounts the project's cache
/// volume, with scope `pool`.
pub fn pool_labels(job: &JobContext, key: &str, slot_name: &str) -> HashMap<String, String> {
    let mut labels = shared_labels(job);
    labels.insert(LABEL_SCOPE.into(), "pool".into());
    labels.insert(LABEL_POOL_KEY.into(), key.into());
    labels.insert(LABEL_POOL_SLOT.into(), slot_name.into());
    labels
}

/// Returns the current time in Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

/// Maps an id to characters Docker accepts in names (`[a-zA-Z0-9_.-]`); an empty id
/// becomes `0`.
fn name_part(value: &str) -> String {
    if value.is_empty() {
        return "0".to_owned();
    }
    value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Joins parts with `-`. A result longer than the limit keeps its start and gets a hash of
/// the whole, so distinct inputs keep distinct names.
fn bounded_name(parts: &[&str]) -> String {
    let joined = parts.join("-");
    if joined.len() <= MAX_NAME_LENGTH {
        return joined;
    }
    let hash = format!("{:016x}", fnv1a(joined.as_bytes()));
    let keep = MAX_NAME_LENGTH - hash.len() - 1;
    format!("{}-{hash}", &joined[..keep])
}

/// FNV-1a, chosen because its output is stable across Rust releases.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(token: &str, job_id: &str) -> JobContext {
        JobContext {
            job_id: job_id.into(),
            project_id: "12".into(),
            runner_short_token: token.into(),
            concurrent_project_id: "0".into(),
            ..JobContext::default()
        }
    }

    fn is_valid_docker_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    }

    #[test]
    fn names_are_deterministic() {
        assert_eq!(
            JobNames::for_job(&job("abc", "5")),
            JobNames::for_job(&job("abc", "5"))
        );
        assert_eq!(
            JobNames::for_job(&job("abc", "5")).container,
            "cross-executor-abc-0-12-5"
        );
    }

    #[test]
    fn names_valid_for_odd_input() {
        for token in ["", "a b/c", "ÄÖ$`'\"\n", &"x".repeat(500)] {
            let names = JobNames::for_job(&job(token, "9"));
            for name in [
                &names.container,
                &names.helper_container,
                &names.builds_volume,
                &names.cache_volume,
            ] {
                assert!(is_valid_docker_name(name), "{name:?}");
                assert!(name.len() <= MAX_NAME_LENGTH, "{name:?}");
            }
        }
    }

    #[test]
    fn long_names_stay_distinct() {
        let first = JobNames::for_job(&job(&"x".repeat(300), "1"));
        let second = JobNames::for_job(&job(&"x".repeat(300), "2"));
        assert_ne!(first.container, second.container);
    }

    #[test]
    fn labels_mark_scope() {
        let labels = job_labels(&job("t", "3"));
        assert_eq!(labels[LABEL_SCOPE], "job");
        assert_eq!(labels[LABEL_JOB_ID], "3");
        assert_eq!(shared_labels(&job("t", "3"))[LABEL_SCOPE], "shared");
    }
}
