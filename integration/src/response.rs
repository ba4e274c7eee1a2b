//! The job payload file (`response.json`) that the runner writes into the temp
//! directory and names in `JOB_RESPONSE_FILE`.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde_json::{json, Value};

use crate::job::{Job, StageBody};
use crate::variables::{payload_variables, timeout_seconds};

/// Returns the payload as JSON, shaped like GitLab's `/jobs/request` response.
///
/// Only the fields a driver is likely to read carry data; the rest are present
/// with empty values, as GitLab sends them. Variable values that are not valid
/// UTF-8 are written with U+FFFD in their place, as Go's JSON encoder does.
pub fn job_payload(job: &Job) -> Value {
    let variables: Vec<Value> = payload_variables(job)
        .iter()
        .map(|variable| {
            json!({
                "key": variable.key,
                "value": variable.value.to_string_lossy(),
                "public": variable.public,
                "file": variable.file,
                "masked": variable.masked,
                "raw": variable.raw,
            })
        })
        .collect();

    json!({
        "id": job.id,
        "token": job.job_token,
        "allow_git_fetch": true,
        "job_info": {
            "name": job.name,
            "stage": job.ci_stage,
            "pipeline_id": job.pipeline_id,
            "project_id": job.project_id,
            "project_name": job.project_name(),
            "project_full_path": job.project_path,
        },
        "git_info": {
            "repo_url": format!(
                "https://gitlab-ci-token:{}@gitlab.example.com/{}.git",
                job.job_token, job.project_path
            ),
            "repo_object_format": "sha1",
            "ref": job.commit_ref,
            "sha": job.commit_sha,
            "before_sha": "0000000000000000000000000000000000000000",
            "ref_type": "branch",
            "refspecs": [format!("+refs/heads/{0}:refs/remotes/origin/{0}", job.commit_ref)],
            "depth": 20,
            "protected": false,
        },
        "runner_info": { "timeout": timeout_seconds(job.timeout) },
        "variables": variables,
        "steps": steps(job),
        "image": image(job),
        "services": [],
        "artifacts": null,
        "cache": [],
        "credentials": [],
        "dependencies": [],
        "features": { "trace_sections": true, "token_mask_prefixes": [], "failure_reasons": [] },
    })
}

/// Returns the payload's `steps`: the user script as `script`, each `step_<name>`
/// stage as `<name>`, and `after_script`.
fn steps(job: &Job) -> Vec<Value> {
    let mut steps = Vec::new();
    for stage in &job.stages {
        let (name, when) = match stage.name.as_str() {
            "build_script" => ("script", "on_success"),
            "after_script" => ("after_script", "always"),
            other => match other.strip_prefix("step_") {
                Some(step_name) => (step_name, "on_success"),
                None => continue,
            },
        };
        let script: Vec<String> = match &stage.body {
            StageBody::Commands(commands) => commands.clone(),
            StageBody::Raw(body) | StageBody::RawScript(body) => {
                vec![String::from_utf8_lossy(body).into_owned()]
            }
        };
        steps.push(json!({
            "name": name,
            "script": script,
            "timeout": timeout_seconds(job.timeout),
            "when": when,
            "allow_failure": false,
        }));
    }
    steps
}

fn image(job: &Job) -> Value {
    let Some(image) = &job.image else {
        return json!({ "name": "", "executor_opts": { "docker": { "platform": "", "user": "" } } });
    };
    let mut value = json!({
        "name": image.name,
        "executor_opts": {
            "docker": { "platform": image.platform.clone().unwrap_or_default(), "user": "" },
        },
    });
    if !image.pull_policy.is_empty() {
        value["pull_policy"] = json!(image.pull_policy);
    }
    value
}

/// Writes the payload to `path` with mode 0600, followed by a newline as Go's
/// JSON encoder writes it.
pub fn write_response_file(path: &Path, job: &Job) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    let mut text = serde_json::to_vec(&job_payload(job))?;
    text.push(b'\n');
    file.write_all(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Image;

    #[test]
    fn payload_carries_image_platform_and_steps() {
        let job = Job::new(3)
            .image(
                Image::new("alpine:3")
                    .platform("linux/arm64")
                    .pull_policy(["always"]),
            )
            .build_script(["uname -m"])
            .stage("step_release", ["release-cli create"])
            .after_script(["echo done"]);
        let payload = job_payload(&job);
        assert_eq!(
            payload["image"]["executor_opts"]["docker"]["platform"],
            "linux/arm64"
        );
        assert_eq!(payload["image"]["pull_policy"][0], "always");
        let names: Vec<&str> = payload["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|step| step["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["script", "release", "after_script"]);
        assert_eq!(payload["job_info"]["project_name"], "project");
    }
}
