//! The job variables the runner works with: what GitLab sends in the payload,
//! plus the variables the runner adds, in the runner's precedence order.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::time::Duration;

use crate::config::{go_path_join, BuildDirs};
use crate::expand::expand;
use crate::job::{Job, Variable};

/// The GitLab URL the fake payload names. Nothing ever connects to it.
pub const SERVER_URL: &str = "https://gitlab.example.com";

/// The runner version the harness reports in `CI_RUNNER_VERSION`, the release
/// whose behaviour it follows.
pub const RUNNER_VERSION: &str = "19.4.0";

/// Returns `CI_PROJECT_PATH_SLUG` for `path`: lower case, every byte other than
/// `a-z0-9` replaced by `-`, at most 63 bytes, no leading or trailing `-`.
pub fn project_path_slug(path: &str) -> String {
    let replaced: String = path
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let truncated: String = replaced.chars().take(63).collect();
    truncated.trim_matches('-').to_string()
}

/// Returns the variables GitLab puts in the job payload: its predefined `CI_*`
/// variables followed by the job's user variables. These are the payload's
/// `variables` and the middle part of the runner's variable list.
pub fn payload_variables(job: &Job) -> Vec<Variable> {
    let project_url = format!("{SERVER_URL}/{}", job.project_path);
    let namespace = job
        .project_path
        .rsplit_once('/')
        .map_or("", |(namespace, _)| namespace);
    let repository_url = format!(
        "https://gitlab-ci-token:{}@gitlab.example.com/{}.git",
        job.job_token, job.project_path
    );

    let mut variables = vec![
        Variable::new("CI_PIPELINE_ID", job.pipeline_id.to_string()),
        Variable::new(
            "CI_PIPELINE_URL",
            format!("{project_url}/-/pipelines/{}", job.pipeline_id),
        ),
        Variable::new("CI_JOB_ID", job.id.to_string()),
        Variable::new("CI_JOB_URL", format!("{project_url}/-/jobs/{}", job.id)),
        Variable::new("CI_JOB_TOKEN", job.job_token.clone()).masked(),
        Variable::new("CI_JOB_NAME", job.name.clone()),
        Variable::new("CI_JOB_STAGE", job.ci_stage.clone()),
        Variable::new("CI_COMMIT_SHA", job.commit_sha.clone()),
        Variable::new(
            "CI_COMMIT_SHORT_SHA",
            job.commit_sha.chars().take(8).collect::<String>(),
        ),
        Variable::new("CI_COMMIT_REF_NAME", job.commit_ref.clone()),
        Variable::new("CI_COMMIT_REF_SLUG", project_path_slug(&job.commit_ref)),
        Variable::new("CI_PROJECT_ID", job.project_id.to_string()),
        Variable::new("CI_PROJECT_NAME", job.project_name().to_string()),
        Variable::new("CI_PROJECT_NAMESPACE", namespace.to_string()),
        Variable::new("CI_PROJECT_PATH", job.project_path.clone()),
        Variable::new("CI_PROJECT_PATH_SLUG", project_path_slug(&job.project_path)),
        Variable::new("CI_PROJECT_URL", project_url.clone()),
        Variable::new("CI_REPOSITORY_URL", repository_url).public(false),
        Variable::new("CI_RUNNER_SHORT_TOKEN", job.runner_short_token.clone()),
        Variable::new("CI_SERVER_URL", SERVER_URL),
        Variable::new("CI_SERVER_HOST", "gitlab.example.com"),
        Variable::new("CI", "true"),
        Variable::new("GITLAB_CI", "true"),
    ];
    variables.extend(job.variables.iter().cloned());
    variables
}

/// Returns the runner's full variable list in precedence order (later entries
/// win), expanded.
///
/// `dirs` is `None` until the config stage has run, so `CI_BUILDS_DIR` and
/// `CI_PROJECT_DIR` are empty then, as in the runner. `job_status` is
/// `CI_JOB_STATUS` (`running`, then `success`, `failed` or `canceled` from
/// `after_script` on).
// NOTE: the runner also puts every feature flag (`FF_*`) first in this list, and
// `[[runners]] environment` entries after `CI_JOB_IMAGE`. The harness has no
// runner config, so neither is present.
pub fn runner_variables(job: &Job, dirs: Option<&BuildDirs>, job_status: &str) -> Vec<Variable> {
    let (builds_dir, project_dir) = match dirs {
        Some(dirs) => (dirs.builds_dir.clone(), dirs.project_dir.clone()),
        None => (String::new(), String::new()),
    };
    let internal = |key: &str, value: String| Variable::new(key, value);

    let mut variables = Vec::new();
    if let Some(image) = job.image.as_ref().filter(|image| !image.name.is_empty()) {
        variables.push(internal("CI_JOB_IMAGE", image.name.clone()));
    }
    variables.extend([
        internal("CI_BUILDS_DIR", builds_dir),
        internal("CI_PROJECT_DIR", project_dir.clone()),
        internal("CI_CONCURRENT_ID", job.concurrent_id.to_string()),
        internal(
            "CI_CONCURRENT_PROJECT_ID",
            job.concurrent_project_id.to_string(),
        ),
        internal("CI_SERVER", "yes".to_string()),
        internal("CI_JOB_STATUS", job_status.to_string()),
        internal("CI_JOB_TIMEOUT", timeout_seconds(job.timeout).to_string()),
    ]);
    variables.extend(payload_variables(job));
    variables.extend([
        internal("CI_SHARED_ENVIRONMENT", "true".to_string()),
        internal("CI_RUNNER_VERSION", RUNNER_VERSION.to_string()),
        internal("CI_RUNNER_REVISION", "d79f3e7b".to_string()),
        internal("CI_RUNNER_EXECUTABLE_ARCH", format!("linux/{}", go_arch())),
        internal("RUNNER_TEMP_PROJECT_DIR", format!("{project_dir}.tmp")),
    ]);
    expand_variables(&variables)
}

/// Returns the job timeout in whole seconds as the runner reports it; zero
/// means the runner default of one hour.
pub fn timeout_seconds(timeout: Duration) -> u64 {
    match timeout.as_secs() {
        0 => 3600,
        seconds => seconds,
    }
}

/// Expands every non-raw variable against the unexpanded list.
///
/// A reference resolves to the last variable with that key. A reference to a
/// file variable resolves to its file path under `RUNNER_TEMP_PROJECT_DIR`.
pub fn expand_variables(variables: &[Variable]) -> Vec<Variable> {
    let lookup = |name: &[u8]| -> Vec<u8> {
        let Some(found) = variables.iter().rev().find(|v| v.key.as_bytes() == name) else {
            return Vec::new();
        };
        if !found.file {
            return found.value.as_bytes().to_vec();
        }
        let temp_dir = variables
            .iter()
            .rev()
            .find(|v| v.key == "RUNNER_TEMP_PROJECT_DIR")
            .map(|v| v.value.to_string_lossy().into_owned())
            .unwrap_or_default();
        go_path_join(&[&temp_dir, &found.key]).into_bytes()
    };

    variables
        .iter()
        .map(|variable| {
            let mut expanded = variable.clone();
            if !variable.raw {
                expanded.value = OsString::from_vec(expand(variable.value.as_bytes(), &lookup));
            }
            expanded
        })
        .collect()
}

/// Returns Go's `GOARCH` name for the machine the harness runs on.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_of(variables: &[Variable], key: &str) -> Option<OsString> {
        variables
            .iter()
            .rev()
            .find(|v| v.key == key)
            .map(|v| v.value.clone())
    }

    #[test]
    fn slug_rules() {
        assert_eq!(
            project_path_slug("Group/My_Project.x"),
            "group-my-project-x"
        );
        assert_eq!(project_path_slug("-a-"), "a");
        assert_eq!(project_path_slug(&"a".repeat(80)).len(), 63);
    }

    #[test]
    fn runner_variables_before_config() {
        let job = Job::new(5);
        let variables = runner_variables(&job, None, "running");
        assert_eq!(value_of(&variables, "CI_BUILDS_DIR").unwrap(), "");
        assert_eq!(value_of(&variables, "CI_PROJECT_DIR").unwrap(), "");
        assert_eq!(
            value_of(&variables, "RUNNER_TEMP_PROJECT_DIR").unwrap(),
            ".tmp"
        );
        assert!(value_of(&variables, "CI_JOB_IMAGE").is_none());
        assert_eq!(value_of(&variables, "CI_JOB_ID").unwrap(), "5");
    }

    #[test]
    fn runner_variables_expand_unless_raw() {
        let job = Job::new(5)
            .var("BASE", "b")
            .var("EXPANDED", "$BASE-${CI_JOB_ID}-$$")
            .variable(Variable::new("KEPT", "$BASE").raw());
        let variables = runner_variables(&job, None, "running");
        assert_eq!(value_of(&variables, "EXPANDED").unwrap(), "b-5-$");
        assert_eq!(value_of(&variables, "KEPT").unwrap(), "$BASE");
    }

    #[test]
    fn user_variable_overrides_predefined_by_order() {
        let job = Job::new(5).var("CI_JOB_ID", "override");
        let variables = runner_variables(&job, None, "running");
        assert_eq!(value_of(&variables, "CI_JOB_ID").unwrap(), "override");
    }

    #[test]
    fn reference_to_file_variable_is_its_path() {
        let dirs = BuildDirs::compute("/b", "/c", false, &Job::new(1)).unwrap();
        let job = Job::new(1)
            .variable(Variable::new("CERT", "pem").file())
            .var("CERT_PATH", "$CERT");
        let variables = runner_variables(&job, Some(&dirs), "running");
        assert_eq!(
            value_of(&variables, "CERT_PATH").unwrap(),
            "/b/group/project.tmp/CERT"
        );
    }
}
