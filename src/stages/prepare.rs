//! The `prepare` stage: makes the image available, creates the job's volumes and
//! container, sets up emulation for the image's architecture and proves that the container
//! can run its own binaries.
//!
//! The emulation depends on the ELF header of the image's shell (see [`container_plan`]),
//! which can only be read from a container. The first job with an image therefore creates
//! the container, reads the header and, when the emulation needs another configuration,
//! creates the container again. Later jobs find the header in [`header_cache`] and create
//! the container once, or take a started one from the [`pool`] when `pool_size` is set.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use crate::container_options;
use crate::container_plan::{self, Plan, IMAGE_SHELL, READY_MARKER, STARTUP_TIME_LIMIT};
use crate::docker::{ContainerSpec, Docker, ImageFacts, Startup};
use crate::elf;
use crate::failure::Failure;
use crate::gc::{self, GcPolicy};
use crate::header_cache;
use crate::job::JobContext;
use crate::names::{self, JobNames};
use crate::platform::Platform;
use crate::pool;
use crate::progress;
use crate::registry_auth;
use crate::settings::{PullPolicy, Settings};
use crate::shutdown::Shutdown;
use crate::stages::{cleanup, pool_fill};

/// Maximum time an interrupted prepare waits for its Docker requests before removing.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(5);
/// Maximum time the garbage collection sweep may add to `prepare`.
const SWEEP_TIME_LIMIT: Duration = Duration::from_secs(5);

/// Creates and starts the job container. On failure or interruption it removes what it
/// created, so a retried attempt starts clean.
pub async fn run(
    settings: &Settings,
    job: &JobContext,
    shutdown: &mut Shutdown,
) -> Result<(), Failure> {
    prepare_with(settings, job, shutdown, settings.pool_size > 0)
        .await
        .map(|_| ())
}

/// Summary of what `prepare` set up, for callers that report on it (`doctor --image`).
#[derive(Debug, Clone)]
pub struct Prepared {
    pub platform: String,
    pub emulation: String,
    /// Output of `uname -m` in the container.
    pub machine: String,
}

/// Does the work of [`run`] without the container pool, and returns what it set up.
pub async fn prepare_job(
    settings: &Settings,
    job: &JobContext,
    shutdown: &mut Shutdown,
) -> Result<Prepared, Failure> {
    prepare_with(settings, job, shutdown, false).await
}

async fn prepare_with(
    settings: &Settings,
    job: &JobContext,
    shutdown: &mut Shutdown,
    use_pool: bool,
) -> Result<Prepared, Failure> {
    let image = job_image(settings, job)?;
    container_options::check_image_allowed(settings, &image)?;
    let policy = container_options::choose_pull_policy(settings, &job.pull_policies)?;
    let platform = job.platform.as_deref().map(Platform::parse).transpose()?;
    let docker = Docker::connect_for_job(job.state_dir.as_deref()).await?;
    // With the pool, the refill after cleanup sweeps instead.
    if !use_pool {
        sweep_abandoned(&docker, settings).await;
    }

    let request = JobRequest {
        settings,
        job,
        image: &image,
        policy,
        platform: platform.as_ref(),
        use_pool,
    };
    let work = create_job_container(&docker, request);
    tokio::pin!(work);
    let outcome = tokio::select! {
        outcome = &mut work => outcome.map_err(Failure::System),
        () = shutdown.wait() => {
            // A request already sent completes in the daemon even when its future is
            // dropped. The current step therefore gets time to finish before the removal
            // below, because otherwise a container could appear after it.
            let _ = tokio::time::timeout(IN_FLIGHT_GRACE, &mut work).await;
            Err(Failure::Interrupted)
        }
    };
    if outcome.is_err() {
        if let Err(error) = cleanup::remove_job_resources(&docker, job).await {
            progress::warning(&format!("{error:#}"));
        }
    }
    outcome
}

/// Returns the job's image, or the settings' `default_image` when the job names none.
pub(crate) fn job_image(settings: &Settings, job: &JobContext) -> anyhow::Result<String> {
    job.image
        .clone()
        .or_else(|| settings.default_image.clone())
        .ok_or_else(|| {
            anyhow!(
                "the job names no image and the settings have no `default_image`; add \
                 `image:` to the job or set `default_image` in the settings file"
            )
        })
}

/// Removes objects of earlier jobs whose cleanup never came. A time limit keeps a slow
/// daemon from holding up the job, and failures only produce a warning.
pub(crate) async fn sweep_abandoned(docker: &Docker, settings: &Settings) {
    let policy = GcPolicy {
        max_age: settings.gc_max_age.map(Duration::from_secs),
        dry_run: false,
        runner: None,
        pool_max_idle: Duration::from_secs(settings.pool_max_idle),
    };
    let mut report_line = |line: &str| progress::line(&format!("Garbage collection: {line}"));
    let sweep = gc::collect(docker, policy, &mut report_line);
    match tokio::time::timeout(SWEEP_TIME_LIMIT, sweep).await {
        Ok(Ok(report)) if report.errors.is_empty() => {}
        Ok(Ok(report)) => progress::warning(&format!(
            "garbage collection failed for some objects: {}",
            report.errors.join("; ")
        )),
        Ok(Err(error)) => progress::warning(&format!("garbage collection failed: {error:#}")),
        Err(_) => progress::warning(&format!(
            "garbage collection stopped after {}s; run `cross-executor gc` to finish it",
            SWEEP_TIME_LIMIT.as_secs()
        )),
    }
}

/// Inputs of [`create_job_container`].
#[derive(Clone, Copy)]
struct JobRequest<'a> {
    settings: &'a Settings,
    job: &'a JobContext,
    image: &'a str,
    policy: PullPolicy,
    platform: Option<&'a Platform>,
    use_pool: bool,
}

async fn create_job_container(
    docker: &Docker,
    request: JobRequest<'_>,
) -> anyhow::Result<Prepared> {
    let JobRequest {
        settings,
        job,
        image,
        policy,
        ..
    } = request;
    let names = JobNames::for_job(job);
    let credentials = registry_auth::credentials_for(
        image,
        &job.registry_secrets,
        settings.docker_auth_config.as_deref(),
    )?;
    let facts = docker
        .ensure_image(
            image,
            policy,
            job.platform.as_deref(),
            credentials,
            &mut |line| progress::line(line),
        )
        .await?;

    let spec = container_plan::base_spec(settings, job, image, &names)?;
    // A pooled container already mounts the project's cache volume. It has an anonymous
    // builds volume, so the job's named one stays empty, but its labels record when the job
    // took the container, which garbage collection needs.
    if request.use_pool {
        docker
            .create_volume(&names.builds_volume, &names::job_labels(job))
            .await?;
        if let Some(prepared) = take_from_pool(docker, request, &facts, &spec).await? {
            return Ok(prepared);
        }
    }
    if docker.remove_container(&names.container).await? {
        progress::line(&format!(
            "Removed container {} left by an earlier attempt",
            names.container
        ));
    }
    docker
        .create_volume(&names.cache_volume, &names::shared_labels(job))
        .await?;
    docker
        .create_volume(&names.builds_volume, &names::job_labels(job))
        .await?;

    // The helper container needs nothing from the job container, so both start at once.
    let helper = async {
        match &settings.helper_image {
            Some(helper_image) => {
                start_helper(docker, settings, job, &spec, helper_image, policy).await
            }
            None => Ok(()),
        }
    };
    let (prepared, ()) = tokio::try_join!(
        start_job_container(docker, request, &facts, spec.clone()),
        helper
    )?;
    Ok(prepared)
}

/// Creates the job container, sets up emulation for its architecture, starts it and
/// proves that it runs its own binaries.
async fn start_job_container(
    docker: &Docker,
    request: JobRequest<'_>,
    facts: &ImageFacts,
    spec: ContainerSpec,
) -> anyhow::Result<Prepared> {
    let JobRequest {
        settings,
        job,
        image,
        platform,
        ..
    } = request;
    let names = JobNames::for_job(job);
    let cache_dir = header_cache::default_dir();
    let cached = header_cache::load(cache_dir.as_deref(), &facts.id);
    let created = cached.is_none();
    let header = match cached {
        Some(header) => header,
        None => {
            docker.create_container(&spec).await?;
            let header = read_shell_header(docker, &names.container, image).await?;
            header_cache::store(cache_dir.as_deref(), &facts.id, &header);
            header
        }
    };
    let plan = container_plan::plan(settings, (image, facts), platform, &header, spec)?;
    if created && plan.changes_spec() {
        docker.remove_container(&names.container).await?;
    }
    if !created || plan.changes_spec() {
        docker.create_container(&plan.spec).await?;
    }

    let machine = start_and_probe(docker, &names.container, image, job)
        .await
        .with_context(|| plan.start_failure(image))?;
    if let Some(user) = &settings.user {
        give_directories_to(docker, &names.container, user, settings).await?;
    }
    plan.report(image, &machine, "");
    Ok(prepared(&plan, machine))
}

/// Takes a started container from the pool when the image's shell header is known and a
/// container with the job's configuration waits. Returns `None` otherwise.
async fn take_from_pool(
    docker: &Docker,
    request: JobRequest<'_>,
    facts: &ImageFacts,
    spec: &ContainerSpec,
) -> anyhow::Result<Option<Prepared>> {
    let names = JobNames::for_job(request.job);
    let Some(header) = header_cache::load(header_cache::default_dir().as_deref(), &facts.id) else {
        return Ok(None);
    };
    let image = request.image;
    let plan = container_plan::plan(
        request.settings,
        (image, facts),
        request.platform,
        &header,
        spec.clone(),
    )?;
    let key = pool_fill::pool_key(request.settings, &plan, &names, facts);
    let startup_output =
        pool::take(docker, request.job, &key, &names.container, READY_MARKER).await?;
    let Some(output) = startup_output else {
        return Ok(None);
    };
    let machine = container_plan::record_probe(&output, request.job, &names.container);
    plan.report(image, &machine, ", in a pre-started container");
    Ok(Some(prepared(&plan, machine)))
}

fn prepared(plan: &Plan, machine: String) -> Prepared {
    Prepared {
        platform: plan.platform.canonical(),
        emulation: plan.emulation.describe(),
        machine,
    }
}

/// Reads the first bytes of the image's shell from the created `container`, checking that
/// they are an ELF header.
async fn read_shell_header(
    docker: &Docker,
    container: &str,
    image: &str,
) -> anyhow::Result<Vec<u8>> {
    let (shell_path, header) = docker
        .read_file_start(container, IMAGE_SHELL, container_plan::ELF_HEADER_BYTES)
        .await?
        .ok_or_else(|| {
            anyhow!(
                "image `{image}` has no `{IMAGE_SHELL}`; cross-executor needs a POSIX shell there"
            )
        })?;
    elf::parse_header(&header).map_err(|error| {
        anyhow!("`{IMAGE_SHELL}` in image `{image}` (resolved to `{shell_path}`): {error}")
    })?;
    Ok(header)
}

/// Creates and starts the helper container: the helper image with the job container's
/// volumes and host settings, minus the emulation mounts.
async fn start_helper(
    docker: &Docker,
    settings: &Settings,
    job: &JobContext,
    job_spec: &ContainerSpec,
    helper_image: &str,
    policy: PullPolicy,
) -> anyhow::Result<()> {
    let names = JobNames::for_job(job);
    let credentials = registry_auth::credentials_for(
        helper_image,
        &job.registry_secrets,
        settings.docker_auth_config.as_deref(),
    )?;
    docker
        .ensure_image(helper_image, policy, None, credentials, &mut |line| {
            progress::line(line)
        })
        .await
        .context("the helper image (setting `helper_image`) is not available")?;
    docker.remove_container(&names.helper_container).await?;

    let mut labels = job_spec.labels.clone();
    labels.insert(names::LABEL_ROLE.to_owned(), "helper".to_owned());
    let spec = ContainerSpec {
        name: names.helper_container.clone(),
        image: helper_image.to_owned(),
        labels,
        entrypoint: job_spec.entrypoint.clone(),
        command: Vec::new(),
        keep_stdin_open: true,
        env: settings.environment.clone(),
        network_mode: settings.network_mode.clone(),
        volumes: job_spec.volumes.clone(),
        host: container_options::host_options(settings, helper_image)?,
        ..ContainerSpec::default()
    };
    docker.create_container(&spec).await?;
    start_and_probe(docker, &names.helper_container, helper_image, job).await?;
    progress::line(&format!(
        "Started helper container {} from {helper_image} for the source, cache and artifact stages",
        names.helper_container
    ));
    Ok(())
}

/// Makes the builds and cache directories writable for the configured job user, because
/// Docker creates volumes owned by root.
pub(crate) async fn give_directories_to(
    docker: &Docker,
    container: &str,
    user: &str,
    settings: &Settings,
) -> anyhow::Result<()> {
    let (outcome, output) = docker
        .exec_capture_as(
            container,
            "0",
            &["chown", user, &settings.builds_dir, &settings.cache_dir],
        )
        .await?;
    if outcome.exit_code != 0 {
        bail!(
            "failed to give `{}` and `{}` to user `{user}` (setting `user`): {}",
            settings.builds_dir,
            settings.cache_dir,
            String::from_utf8_lossy(&output).trim()
        );
    }
    Ok(())
}

/// Starts `container` and reads the lines of its entrypoint's probe. Returns the machine,
/// and records the shell for the `run` stages.
pub(crate) async fn start_and_probe(
    docker: &Docker,
    container: &str,
    image: &str,
    job: &JobContext,
) -> anyhow::Result<String> {
    let output = match docker
        .start_until_marker(container, READY_MARKER, STARTUP_TIME_LIMIT)
        .await?
    {
        Startup::Ready(output) => output,
        Startup::Ended { output, exit_code } => {
            let text = String::from_utf8_lossy(&output).trim().to_owned();
            let code = exit_code.map_or_else(|| "unknown".to_owned(), |code| code.to_string());
            bail!(
                "the container of image `{image}` cannot run its own binaries (exit code \
                 {code}): {text}"
            );
        }
    };
    Ok(container_plan::record_probe(&output, job, container))
}
