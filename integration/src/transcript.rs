//! Rendering of job events as the job log looks in GitLab: the runner's own
//! lines (executor banner, stage headers, retries, final status) around the
//! driver's output.
//!
//! Colours and section markers are left out, and masking of secrets is not
//! applied.

use crate::lifecycle::JobEvent;
use crate::record::{go_duration, Outcome};

/// Returns the runner's description of a sub-stage, as printed above its output.
pub fn stage_description(stage: &str) -> String {
    let description = match stage {
        "prepare_script" => "Preparing environment",
        "get_sources" => "Getting source from Git repository",
        "clear_worktree" => "Deleting all tracked and untracked files due to source fetch failure",
        "restore_cache" => "Restoring cache",
        "download_artifacts" => "Downloading artifacts",
        "after_script" => "Running after_script",
        "archive_cache" => "Saving cache for successful job",
        "archive_cache_on_failure" => "Saving cache for failed job",
        "upload_artifacts_on_failure" => "Uploading artifacts for failed job",
        "upload_artifacts_on_success" => "Uploading artifacts for successful job",
        "cleanup_file_variables" => "Cleaning up project directory and file based variables",
        // The runner's internal name for the user script is step_script; the
        // custom executor renames it to build_script for the driver.
        "build_script" => return "Executing \"step_script\" stage of the job script".to_string(),
        other => return format!("Executing \"{other}\" stage of the job script"),
    };
    description.to_string()
}

/// Returns the job-log text for one event; empty for events that add nothing.
pub fn render_event(event: &JobEvent<'_>) -> Vec<u8> {
    let mut text = Vec::new();
    match event {
        JobEvent::PreparationStarted { attempt: 1 } => {
            text.extend_from_slice(b"Preparing the \"custom\" executor\n");
        }
        JobEvent::PreparationStarted { .. } => {}
        JobEvent::ExecutorStarted { driver } => {
            let line = match driver.and_then(|d| d.name.as_ref().map(|name| (name, &d.version))) {
                Some((name, Some(version))) => {
                    format!("Using Custom executor with driver {name} {version}...\n")
                }
                Some((name, None)) => format!("Using Custom executor with driver {name}...\n"),
                None => "Using Custom executor...\n".to_string(),
            };
            text.extend_from_slice(line.as_bytes());
        }
        JobEvent::StageStarted { stage, .. } => {
            if !matches!(*stage, "config" | "prepare" | "cleanup") {
                text.extend_from_slice(format!("\n{}\n", stage_description(stage)).as_bytes());
            }
            if *stage == "build_script" {
                text.extend_from_slice(
                    b"WARNING: Starting with version 17.0 the 'build_script' stage will be replaced with 'step_script': https://gitlab.com/groups/gitlab-org/-/epics/6112\n",
                );
            }
        }
        JobEvent::StageFinished { record } => match record.stage.as_str() {
            "config" => text.extend_from_slice(&record.stderr),
            "cleanup" => {}
            _ => text.extend_from_slice(&record.combined),
        },
        JobEvent::PreparationFailed {
            error,
            will_retry,
            retry_delay,
            ..
        } => {
            if *will_retry {
                let line = format!(
                    "ERROR: Preparation failed: {error}\nWill be retried in {} ...\n",
                    go_duration(*retry_delay)
                );
                text.extend_from_slice(line.as_bytes());
            }
        }
        JobEvent::Warning { message } => {
            text.extend_from_slice(format!("WARNING: {message}\n").as_bytes());
        }
        JobEvent::JobFinished { outcome } => {
            let prefix = if matches!(outcome, Outcome::Success) {
                ""
            } else {
                "ERROR: "
            };
            text.extend_from_slice(format!("\n{prefix}{}\n", outcome.summary()).as_bytes());
        }
    }
    text
}
