//! The container pool's refill (setting `pool_size`): a process that `cleanup` starts in
//! the background with the job's environment. It computes the job container's
//! configuration as `prepare` does and starts a container in every free slot of the pool
//! for that configuration, so the project's next job with the same image finds one. It
//! also runs the sweep of abandoned objects, which `prepare` leaves to it when the pool
//! is on.
//!
//! It starts after the job rather than during it. A container start keeps the daemon busy
//! for about 150 ms, and on a 2-CPU host a refill during the job made its five trivial
//! stages 6 % slower (BENCHMARKS.md).
//!
//! The refill runs in its own process group, with no standard input or output, so the
//! runner neither waits for it nor stops it with the job. It appends what it did, errors
//! included, to `pool-fill.log` in the driver's cache directory. A log over 1 MiB is moved
//! to `pool-fill.log.1` first, replacing the older one.

use std::process::Stdio;

use anyhow::Context;

use crate::container_plan::{self, Plan, READY_MARKER, STARTUP_TIME_LIMIT};
use crate::docker::{Docker, ImageFacts};
use crate::env::{self, EnvSnapshot};
use crate::header_cache;
use crate::job::JobContext;
use crate::names::{self, JobNames};
use crate::platform::Platform;
use crate::pool::{self, FillRequest};
use crate::progress;
use crate::settings::{PullPolicy, Settings};
use crate::stages::prepare;

/// Size above which the refill log is moved aside.
const LOG_ROTATE_BYTES: u64 = 1024 * 1024;

/// Name of the hidden subcommand that runs [`run`].
pub const SUBCOMMAND: &str = "pool-fill";

/// Returns the pool key of a job container's plan.
pub fn pool_key(settings: &Settings, plan: &Plan, names: &JobNames, facts: &ImageFacts) -> String {
    let pooled = pool::pooled_spec(&plan.spec, &names.builds_volume);
    // The refill gives the pooled container's directories to `user`, so it is part of the key.
    let mut material: Vec<(String, String)> = extra_labels(settings)
        .into_iter()
        .map(|(key, value)| (format!("label {key}"), value))
        .collect();
    if let Some(user) = &settings.user {
        material.push(("user".to_owned(), user.clone()));
    }
    pool::key(&pooled, &facts.id, &material)
}

fn extra_labels(settings: &Settings) -> Vec<(String, String)> {
    settings
        .labels
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// Starts the refill process for the current job; a failure only costs later jobs the pool.
/// The runner deletes `JOB_RESPONSE_FILE` once cleanup ends, so the process gets the image
/// and the platform that came from it through the environment instead.
pub fn start_in_background(settings: &Settings, job: &JobContext) {
    use std::os::unix::process::CommandExt;

    let log = header_cache::driver_cache_dir().and_then(|dir| open_log(&dir).ok());
    let stderr = log.map_or_else(Stdio::null, Stdio::from);
    let started = std::env::current_exe().and_then(|exe| {
        let mut command = std::process::Command::new(exe);
        command
            .arg(SUBCOMMAND)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0);
        if let Some(file) = &settings.file {
            command.env(env::SETTINGS_FILE, file);
        }
        let image_variable = format!("{}{}", env::JOB_VARIABLE_PREFIX, env::job::JOB_IMAGE);
        command.env_remove(env::JOB_RESPONSE_FILE);
        command.env_remove(&image_variable);
        command.env_remove(env::POOL_PLATFORM);
        if let Some(image) = &job.image {
            command.env(&image_variable, image);
        }
        if let Some(platform) = &job.platform {
            command.env(env::POOL_PLATFORM, platform);
        }
        command.spawn()
    });
    if let Err(error) = started {
        progress::warning(&format!(
            "failed to start the container pool's refill: {error}"
        ));
    }
}

/// Returns the start of a log line: the time and the job whose cleanup started the refill.
fn job_note(job: &JobContext) -> String {
    format!(
        "unix time {}, after job {} of project {}",
        names::unix_now(),
        job.job_id,
        job.project_id
    )
}

/// Opens the refill log for appending, so refills that overlap add whole lines.
fn open_log(dir: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("pool-fill.log");
    if std::fs::metadata(&path).is_ok_and(|metadata| metadata.len() > LOG_ROTATE_BYTES) {
        std::fs::rename(&path, dir.join("pool-fill.log.1"))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Fills the pool of the job's image and project. An error names the job, because the
/// refills of several jobs write to one log.
pub async fn run(
    settings: &Settings,
    job: &JobContext,
    snapshot: &EnvSnapshot,
) -> anyhow::Result<()> {
    fill_for_job(settings, job, snapshot)
        .await
        .with_context(|| job_note(job))
}

async fn fill_for_job(
    settings: &Settings,
    job: &JobContext,
    snapshot: &EnvSnapshot,
) -> anyhow::Result<()> {
    if settings.pool_size == 0 {
        return Ok(());
    }
    let image = prepare::job_image(settings, job)?;
    let platform = snapshot
        .get(env::POOL_PLATFORM)
        .as_deref()
        .map(Platform::parse)
        .transpose()?;
    let docker = Docker::connect_for_job(job.state_dir.as_deref()).await?;
    prepare::sweep_abandoned(&docker, settings).await;
    let names = JobNames::for_job(job);
    let facts = docker
        .ensure_image(&image, PullPolicy::Never, None, None, &mut |_| {})
        .await?;
    let Some(header) = header_cache::load(header_cache::default_dir().as_deref(), &facts.id) else {
        eprintln!(
            "{}: the ELF header of image {image} is not cached yet; nothing to fill",
            job_note(job)
        );
        return Ok(());
    };
    let spec = container_plan::base_spec(settings, job, &image, &names)?;
    let plan = container_plan::plan(settings, (&image, &facts), platform.as_ref(), &header, spec)?;
    let key = pool_key(settings, &plan, &names, &facts);
    docker
        .create_volume(&names.cache_volume, &names::shared_labels(job))
        .await?;

    let labels = extra_labels(settings);
    let request = FillRequest {
        job,
        pooled: pool::pooled_spec(&plan.spec, &names.builds_volume),
        key: &key,
        size: settings.pool_size,
        extra_labels: &labels,
        marker: READY_MARKER,
        startup_limit: STARTUP_TIME_LIMIT,
    };
    let docker = &docker;
    let created = pool::fill(docker, request, |name| async move {
        match &settings.user {
            Some(user) => prepare::give_directories_to(docker, &name, user, settings).await,
            None => Ok(()),
        }
    })
    .await
    .with_context(|| format!("pool of image `{image}`, key {key}"))?;
    for name in &created {
        eprintln!("{}: started pooled container {name}", job_note(job));
    }
    if created.is_empty() {
        eprintln!(
            "{}: every slot of pool {key} already has a running container",
            job_note(job)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn subcommand_name_matches_cli() {
        let cli = Cli::try_parse_from(["cross-executor", SUBCOMMAND]).unwrap();
        assert!(matches!(cli.command, Command::PoolFill));
    }

    #[test]
    fn log_rotates_above_limit() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("pool-fill.log");
        std::fs::write(&log, vec![b'x'; LOG_ROTATE_BYTES as usize + 1]).unwrap();
        drop(open_log(dir.path()).unwrap());
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
        let rotated = std::fs::metadata(dir.path().join("pool-fill.log.1")).unwrap();
        assert_eq!(rotated.len(), LOG_ROTATE_BYTES + 1);
    }
}
