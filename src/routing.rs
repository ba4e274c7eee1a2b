//! The choice of container for each sub-stage when a helper image is configured.
//!
//! The runner's own sub-stages for sources, caches and artifacts only run git and
//! gitlab-runner on the shared volumes, so they run natively in the helper container,
//! which has the host's architecture. Every other stage, including names this list does not
//! know, runs in the job container.

/// Sub-stages that run in the helper container when `helper_image` is set.
pub const HELPER_STAGES: [&str; 8] = [
    "get_sources",
    "clear_worktree",
    "restore_cache",
    "download_artifacts",
    "archive_cache",
    "archive_cache_on_failure",
    "upload_artifacts_on_success",
    "upload_artifacts_on_failure",
];

/// Container that runs a sub-stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Job,
    Helper,
}

/// Picks the container for `stage`.
pub fn target_for(stage: &str, helper_configured: bool) -> Target {
    if helper_configured && HELPER_STAGES.contains(&stage) {
        Target::Helper
    } else {
        Target::Job
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_stages_route_to_helper() {
        for stage in HELPER_STAGES {
            assert_eq!(target_for(stage, true), Target::Helper, "{stage}");
            assert_eq!(target_for(stage, false), Target::Job, "{stage}");
        }
    }

    #[test]
    fn other_stages_stay_in_job_container() {
        for stage in [
            "prepare_script",
            "build_script",
            "step_release",
            "after_script",
            "cleanup_file_variables",
            "new_stage",
        ] {
            assert_eq!(target_for(stage, true), Target::Job, "{stage}");
        }
    }
}
