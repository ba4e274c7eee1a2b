//! The job's ids, image, platform and pull policy, as the runner passes them.
//!
//! The runner passes every job variable as `CUSTOM_ENV_<KEY>`, but a job can define a
//! variable of the same name and so change those values. The job payload in
//! `JOB_RESPONSE_FILE` comes from GitLab itself, so its id, image and platform win when
//! the file exists (runner 14.1 and later).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::env::{self, job, EnvSnapshot};
use crate::registry_auth::JobRegistrySecrets;

/// Identity and image request of one job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobContext {
    pub job_id: String,
    pub project_id: String,
    pub project_path: String,
    pub pipeline_id: String,
    pub runner_short_token: String,
    pub concurrent_project_id: String,
    /// The job's `image:`, with variables expanded; `None` when the job names none.
    pub image: Option<String>,
    /// The job's `image:docker:platform`, for example `linux/arm/v7`.
    pub platform: Option<String>,
    /// The job's `image:pull_policy` list, in the job's order of preference.
    pub pull_policies: Vec<String>,
    /// The job timeout in seconds, when the runner sends it.
    pub timeout_seconds: Option<u64>,
    /// Registry credentials from the job's variables.
    pub registry_secrets: JobRegistrySecrets,
    /// The runner's private directory of this preparation attempt (the one holding
    /// `JOB_RESPONSE_FILE`), where stages pass small facts on to later stages.
    pub state_dir: Option<PathBuf>,
}

/// The parts of the runner's job payload that the driver reads.
#[derive(Debug, Default, Deserialize)]
struct JobResponse {
    id: Option<u64>,
    #[serde(default)]
    job_info: JobInfo,
    #[serde(default)]
    variables: Vec<JobVariable>,
    image: Option<ImageSpec>,
    #[serde(default)]
    runner_info: RunnerInfo,
}

#[derive(Debug, Default, Deserialize)]
struct JobInfo {
    project_id: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct RunnerInfo {
    timeout: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct JobVariable {
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Debug, Default, Deserialize)]
struct ImageSpec {
    #[serde(default)]
    name: String,
    #[serde(default)]
    executor_opts: ExecutorOptions,
    #[serde(default)]
    pull_policy: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ExecutorOptions {
    #[serde(default)]
    docker: DockerOptions,
}

#[derive(Debug, Default, Deserialize)]
struct DockerOptions {
    platform: Option<String>,
}

impl JobContext {
    /// Builds the context from `CUSTOM_ENV_*` variables and, when present, the job payload.
    pub fn load(snapshot: &EnvSnapshot) -> anyhow::Result<Self> {
        let response = match snapshot.path(env::JOB_RESPONSE_FILE) {
            Some(path) => Some(read_response(&path)?),
            None => None,
        };
        let context = Self::from_parts(snapshot, response);
        if context.job_id.trim().is_empty() {
            bail!(
                "the job id is missing: neither `{}` nor `CUSTOM_ENV_{}` is set; cross-executor \
                 expects to be started by gitlab-runner's custom executor",
                env::JOB_RESPONSE_FILE,
                job::JOB_ID
            );
        }
        Ok(context)
    }

    fn from_parts(snapshot: &EnvSnapshot, response: Option<JobResponse>) -> Self {
        let variable = |name: &str| snapshot.job_variable(name).unwrap_or_default();
        let mut context = JobContext {
            job_id: variable(job::JOB_ID),
            project_id: variable(job::PROJECT_ID),
            project_path: variable(job::PROJECT_PATH),
            pipeline_id: variable(job::PIPELINE_ID),
            runner_short_token: variable(job::RUNNER_SHORT_TOKEN),
            concurrent_project_id: variable(job::CONCURRENT_PROJECT_ID),
            image: snapshot
                .job_variable(job::JOB_IMAGE)
                .filter(|image| !image.trim().is_empty()),
            platform: None,
            pull_policies: Vec::new(),
            timeout_seconds: snapshot
                .job_variable(job::JOB_TIMEOUT)
                .and_then(|value| value.trim().parse().ok()),
            registry_secrets: JobRegistrySecrets::from_env(snapshot),
            state_dir: snapshot
                .path(env::JOB_RESPONSE_FILE)
                .and_then(|file| file.parent().map(Path::to_path_buf))
                .filter(|dir| dir.is_dir()),
        };
        let Some(response) = response else {
            return context;
        };

        if let Some(id) = response.id {
            context.job_id = id.to_string();
        }
        if let Some(project_id) = response.job_info.project_id {
            context.project_id = project_id.to_string();
        }
        if let Some(timeout) = response.runner_info.timeout {
            context.timeout_seconds = Some(timeout);
        }
        // The payload names the image when the job has one; a `CI_JOB_IMAGE` variable
        // defined by the job must not stand in for a missing `image:`.
        context.image = None;
        if let Some(image) = response.image {
            let variables: HashMap<&str, &str> = response
                .variables
                .iter()
                .map(|variable| (variable.key.as_str(), variable.value.as_str()))
                .collect();
            let name = expand_variables(&image.name, |key| {
                variables
                    .get(key)
                    .map(|value| value.to_string())
                    .or_else(|| snapshot.job_variable(key))
            });
            context.image = Some(name).filter(|name| !name.trim().is_empty());
            context.platform = image
                .executor_opts
                .docker
                .platform
                .filter(|platform| !platform.trim().is_empty());
            context.pull_policies = image.pull_policy;
        }
        context
    }
}

fn read_response(path: &Path) -> anyhow::Result<JobResponse> {
    let text = std::fs::read(path)
        .with_context(|| format!("failed to read the job payload `{}`", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("invalid job payload in `{}`", path.display()))
}

/// Expands `$NAME` and `${NAME}` the way the runner expands an image name; unknown names
/// become empty and `$$` stays a literal `$`.
fn expand_variables(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut output = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(position) = rest.find('$') {
        output.push_str(&rest[..position]);
        let after = &rest[position + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            output.push('$');
            rest = stripped;
        } else if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => {
                    output.push_str(&lookup(&braced[..end]).unwrap_or_default());
                    rest = &braced[end + 1..];
                }
                None => {
                    output.push('$');
                    rest = after;
                }
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if end == 0 {
                output.push('$');
            } else {
                output.push_str(&lookup(&after[..end]).unwrap_or_default());
            }
            rest = &after[end..];
        }
    }
    output.push_str(rest);
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(pairs: &[(&str, &str)]) -> EnvSnapshot {
        EnvSnapshot::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn context_from_custom_env_only() {
        let context = JobContext::from_parts(
            &snapshot(&[
                ("CUSTOM_ENV_CI_JOB_ID", "5"),
                ("CUSTOM_ENV_CI_JOB_IMAGE", "alpine:3"),
                ("CUSTOM_ENV_CI_PROJECT_ID", "9"),
            ]),
            None,
        );
        assert_eq!(context.job_id, "5");
        assert_eq!(context.image.as_deref(), Some("alpine:3"));
        assert_eq!(context.project_id, "9");
    }

    #[test]
    fn response_file_wins_over_job_variables() {
        let response: JobResponse = serde_json::from_str(
            r#"{"id": 77, "job_info": {"project_id": 3},
                "variables": [{"key": "ARCH", "value": "armhf"}],
                "image": {"name": "deb-${ARCH}:$TAG", "pull_policy": ["never"],
                          "executor_opts": {"docker": {"platform": "linux/arm/v7"}}}}"#,
        )
        .unwrap();
        let context = JobContext::from_parts(
            &snapshot(&[
                ("CUSTOM_ENV_CI_JOB_ID", "1"),
                ("CUSTOM_ENV_CI_JOB_IMAGE", "spoofed"),
                ("CUSTOM_ENV_TAG", "v1"),
            ]),
            Some(response),
        );
        assert_eq!(context.job_id, "77");
        assert_eq!(context.project_id, "3");
        assert_eq!(context.image.as_deref(), Some("deb-armhf:v1"));
        assert_eq!(context.platform.as_deref(), Some("linux/arm/v7"));
        assert_eq!(context.pull_policies, vec!["never".to_string()]);
    }

    #[test]
    fn response_without_image_clears_image() {
        let response: JobResponse = serde_json::from_str(r#"{"id": 2}"#).unwrap();
        let context = JobContext::from_parts(
            &snapshot(&[("CUSTOM_ENV_CI_JOB_IMAGE", "x")]),
            Some(response),
        );
        assert_eq!(context.image, None);
    }

    #[test]
    fn expand_handles_dollar_forms() {
        let lookup = |key: &str| (key == "A").then(|| "1".to_string());
        assert_eq!(expand_variables("x$A-${A}-$$-$B-$", lookup), "x1-1-$--$");
        assert_eq!(expand_variables("${A", lookup), "${A");
    }
}
