//! The `cleanup` stage: removes the job's container and per-job volumes.
//!
//! The runner calls it at the end of every job and after every failed preparation attempt,
//! also when nothing was created, and possibly while a canceled `run` is still alive. It
//! tries every removal, counts "already gone" as success and never touches the project's
//! shared cache volume. Its output goes to the runner's own log, not the job log.

use anyhow::bail;

use crate::docker::Docker;
use crate::job::JobContext;
use crate::names::{self, JobNames};
use crate::progress;

/// Removes everything that belongs to the job.
pub async fn run(job: &JobContext) -> anyhow::Result<()> {
    let docker = Docker::connect_for_job(job.state_dir.as_deref()).await?;
    remove_job_resources(&docker, job).await
}

/// Removes the job's containers and per-job volumes, found by name and by label.
pub async fn remove_job_resources(docker: &Docker, job: &JobContext) -> anyhow::Result<()> {
    let names = JobNames::for_job(job);
    let mut failures = Vec::new();

    let mut containers = vec![names.container.clone(), names.helper_container.clone()];
    let job_filter = [
        format!("{}=true", names::LABEL_MANAGED),
        format!("{}=job", names::LABEL_SCOPE),
        format!("{}={}", names::LABEL_JOB_ID, job.job_id),
        format!("{}={}", names::LABEL_RUNNER, job.runner_short_token),
    ];
    match docker.containers_with_labels(&job_filter).await {
        Ok(found) => containers.extend(found.into_iter().map(|object| object.name)),
        Err(error) => failures.push(format!("{error:#}")),
    }
    containers.sort();
    containers.dedup();
    // The job and helper containers go at once; each removal waits mostly for the daemon.
    let removals = containers
        .iter()
        .map(|container| docker.remove_container(container));
    let outcomes = futures_util::future::join_all(removals).await;
    for (container, outcome) in containers.iter().zip(outcomes) {
        match outcome {
            Ok(true) => progress::line(&format!("Removed container {container}")),
            Ok(false) => {}
            Err(error) => failures.push(format!("{error:#}")),
        }
    }

    let mut volumes = vec![names.builds_volume.clone()];
    match docker.volumes_with_labels(&job_filter).await {
        Ok(found) => volumes.extend(found.into_iter().map(|object| object.name)),
        Err(error) => failures.push(format!("{error:#}")),
    }
    volumes.sort();
    volumes.dedup();
    volumes.retain(|volume| *volume != names.cache_volume);
    for volume in &volumes {
        match docker.remove_volume(volume).await {
            Ok(true) => progress::line(&format!("Removed volume {volume}")),
            Ok(false) => {}
            Err(error) => failures.push(format!("{error:#}")),
        }
    }

    if !failures.is_empty() {
        bail!("cleanup left resources behind: {}", failures.join("; "));
    }
    Ok(())
}
