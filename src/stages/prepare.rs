//! The `prepare` stage: makes the image available, creates the job's volumes and
//! container, sets up emulation for the image's architecture and proves that the container
//! can run its own binaries.
//!
//! The architecture comes from the ELF header of the image's `/bin/sh`, because the kernel
//! picks the interpreter from that header and Docker before 23.0 labels imported images
//! with the host's architecture. The header can only be read from a container. The first
//! job with an image therefore creates the container, reads the header and, when the
//! interpreter must be injected, creates the container again with the bind mount. Later
//! jobs find the header in [`header_cache`] and create the container once.
//!
//! The container's entrypoint prints `uname -m` and the path of bash, then becomes the
//! keep-alive shell. `prepare` reads those lines as the container starts.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use crate::binfmt::{self, Emulation};
use crate::container_options;
use crate::docker::{ContainerSpec, Docker, ImageFacts, Startup};
use crate::elf::{self, Arch};
use crate::failure::Failure;
use crate::gc::{self, GcPolicy};
use crate::header_cache;
use crate::job::JobContext;
use crate::names::{self, JobNames};
use crate::platform::{self, Platform};
use crate::progress;
use crate::registry_auth;
use crate::settings::{PullPolicy, Settings};
use crate::shell_state;
use crate::shutdown::Shutdown;
use crate::stages::cleanup;

/// The shell every image must have; the entrypoint uses it.
const IMAGE_SHELL: &str = "/bin/sh";
/// Printed by the entrypoint after the probe's lines.
const READY_MARKER: &str = "cross-executor: container ready";
/// Maximum time from the start of a container to its ready line.
const STARTUP_TIME_LIMIT: Duration = Duration::from_secs(120);
/// Path of `gitlab_runner_binary` in the job container, which is on PATH in common images.
const GITLAB_RUNNER_PATH: &str = "/usr/local/bin/gitlab-runner";
/// Maximum time an interrupted prepare waits for its Docker requests before removing.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(5);
/// Maximum time the garbage collection sweep may add to `prepare`.
const SWEEP_TIME_LIMIT: Duration = Duration::from_secs(5);
/// Bytes of the shell read to decide its architecture.
const ELF_HEADER_BYTES: usize = 64;

/// Creates and starts the job container. On failure or interruption it removes what it
/// created, so a retried attempt starts clean.
pub async fn run(
    settings: &Settings,
    job: &JobContext,
    shutdown: &mut Shutdown,
) -> Result<(), Failure> {
    prepare_job(settings, job, shutdown).await.map(|_| ())
}

/// Summary of what `prepare` set up, for callers that report on it (`doctor --image`).
#[derive(Debug, Clone)]
pub struct Prepared {
    pub platform: String,
    pub emulation: String,
    /// Output of `uname -m` in the container.
    pub machine: String,
}

/// Does the work of [`run`] and returns what it set up.
pub async fn prepare_job(
    settings: &Settings,
    job: &JobContext,
    shutdown: &mut Shutdown,
) -> Result<Prepared, Failure> {
    let image = job
        .image
        .clone()
        .or_else(|| settings.default_image.clone())
        .ok_or_else(|| {
            anyhow!(
                "the job names no image and the settings have no `default_image`; add \
                 `image:` to the job or set `default_image` in the settings file"
            )
        })?;
    container_options::check_image_allowed(settings, &image)?;
    let policy = container_options::choose_pull_policy(settings, &job.pull_policies)?;
    let platform = job.platform.as_deref().map(Platform::parse).transpose()?;
    let docker = Docker::connect_for_job(job.state_dir.as_deref()).await?;
    sweep_abandoned(&docker, settings).await;

    let work = create_job_container(&docker, settings, job, &image, policy, platform.as_ref());
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

/// Removes objects of earlier jobs whose cleanup never came. A time limit keeps a slow
/// daemon from holding up the job, and failures only produce a warning.
async fn sweep_abandoned(docker: &Docker, settings: &Settings) {
    let policy = GcPolicy {
        max_age: settings.gc_max_age.map(Duration::from_secs),
        dry_run: false,
        runner: None,
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

async fn create_job_container(
    docker: &Docker,
    settings: &Settings,
    job: &JobContext,
    image: &str,
    policy: PullPolicy,
    platform: Option<&Platform>,
) -> anyhow::Result<Prepared> {
    let names = JobNames::for_job(job);
    let platform_text = job.platform.as_deref();
    let credentials = registry_auth::credentials_for(
        image,
        &job.registry_secrets,
        settings.docker_auth_config.as_deref(),
    )?;
    let facts = docker
        .ensure_image(image, policy, platform_text, credentials, &mut |line| {
            progress::line(line)
        })
        .await?;

    if docker.remove_container(&names.container).await? {
        progress::line(&format!(
            "Removed container {} left by an earlier attempt",
            names.container
        ));
    }
    docker
        .create_volume(&names.builds_volume, &names::job_labels(job))
        .await?;
    docker
        .create_volume(&names.cache_volume, &names::shared_labels(job))
        .await?;

    let mut labels: HashMap<String, String> = settings
        .labels
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    labels.extend(names::job_labels(job));
    let mut spec = ContainerSpec {
        name: names.container.clone(),
        image: image.to_owned(),
        labels,
        env: settings.environment.clone(),
        host: container_options::host_options(settings, image)?,
        entrypoint: vec![IMAGE_SHELL.to_owned(), "-c".to_owned(), startup_script()],
        command: Vec::new(),
        keep_stdin_open: true,
        network_mode: settings.network_mode.clone(),
        volumes: vec![
            (names.builds_volume.clone(), settings.builds_dir.clone()),
            (names.cache_volume.clone(), settings.cache_dir.clone()),
        ],
        ..ContainerSpec::default()
    };
    if let Some(binary) = &settings.gitlab_runner_binary {
        spec.read_only_binds.push((
            checked_runner_binary(binary)?,
            GITLAB_RUNNER_PATH.to_owned(),
        ));
    }

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
        start_job_container(
            docker,
            settings,
            job,
            (image, &facts),
            platform,
            spec.clone()
        ),
        helper
    )?;
    Ok(prepared)
}

/// Creates the job container, sets up emulation for its architecture, starts it and
/// proves that it runs its own binaries.
async fn start_job_container(
    docker: &Docker,
    settings: &Settings,
    job: &JobContext,
    (image, facts): (&str, &ImageFacts),
    platform: Option<&Platform>,
    mut spec: ContainerSpec,
) -> anyhow::Result<Prepared> {
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
    let arch = elf::parse_header(&header)
        .map_err(|error| anyhow!("`{IMAGE_SHELL}` in image `{image}`: {error}"))?
        .arch;
    let metadata = metadata_platform(image, facts, arch);
    let (effective, source) = platform::effective_platform(
        arch,
        platform,
        settings.platform_for_image(image).as_ref(),
        metadata.as_ref(),
    )
    .with_context(|| format!("image `{image}` cannot run as requested"))?;

    let emulation = binfmt::plan(binfmt::DEFAULT_ROOT.as_ref(), &header, arch)
        .with_context(|| format!("image `{image}` contains {arch} binaries"))?;
    let cpu = match emulation {
        Emulation::Native => None,
        _ => settings.qemu_cpu_for(&effective),
    };
    if let Emulation::Inject { entry, host_path } = &emulation {
        spec.read_only_binds.push((
            host_path.display().to_string(),
            entry.interpreter.display().to_string(),
        ));
    }
    if let Some(cpu) = &cpu {
        // QEMU reads the CPU model from the environment of every process it starts.
        spec.env.push(format!("QEMU_CPU={cpu}"));
    }
    let changed = matches!(emulation, Emulation::Inject { .. }) || cpu.is_some();
    if created && changed {
        docker.remove_container(&names.container).await?;
    }
    if !created || changed {
        docker.create_container(&spec).await?;
    }

    let machine = start_and_probe(docker, &names.container, image, job)
        .await
        .with_context(|| match &cpu {
            Some(cpu) => format!(
                "under QEMU_CPU={cpu} for {}, an illegal instruction means that the image's \
                 binaries were built for a newer CPU than that platform has",
                effective.canonical()
            ),
            None => format!("image `{image}` cannot run in its container"),
        })?;
    if let Some(user) = &settings.user {
        give_directories_to(docker, &names.container, user, settings).await?;
    }
    let cpu_note = cpu
        .map(|cpu| format!(", QEMU_CPU={cpu}"))
        .unwrap_or_default();
    progress::line(&format!(
        "Using image {image} as {} ({}, uname -m: {machine}) with {}{cpu_note}",
        effective.canonical(),
        source.describe(),
        emulation.describe()
    ));
    if let Some(entry) = emulation.entry() {
        if !entry.credentials() {
            progress::warning(&format!(
                "binfmt_misc entry `{}` lacks the C flag, so setuid programs such as sudo \
                 fail in this job",
                entry.name
            ));
        }
    }
    Ok(Prepared {
        platform: effective.canonical(),
        emulation: emulation.describe(),
        machine,
    })
}

/// Reads the first bytes of the image's shell from the created `container`, checking that
/// they are an ELF header.
async fn read_shell_header(
    docker: &Docker,
    container: &str,
    image: &str,
) -> anyhow::Result<Vec<u8>> {
    let (shell_path, header) = docker
        .read_file_start(container, IMAGE_SHELL, ELF_HEADER_BYTES)
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

/// Reads the platform from the image's metadata and notes, without failing, when it names
/// another architecture than the binaries, as it does for images imported on Docker before
/// 23.0.
fn metadata_platform(image: &str, facts: &ImageFacts, arch: Arch) -> Option<Platform> {
    let recorded = facts.architecture.as_deref()?;
    let variant = facts.variant.as_deref();
    if Arch::from_oci_name(recorded) != Some(arch) {
        progress::line(&format!(
            "Image {image} is labelled {recorded}, but its files are {arch}; using {arch}"
        ));
        return None;
    }
    let text = match variant.filter(|variant| !variant.is_empty()) {
        Some(variant) => format!("linux/{recorded}/{variant}"),
        None => format!("linux/{recorded}"),
    };
    Platform::parse(&text).ok()
}

/// Checks that the configured gitlab-runner is statically linked, because a dynamically
/// linked host binary cannot run inside a container of another distribution or architecture.
fn checked_runner_binary(path: &str) -> anyhow::Result<String> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("failed to read `gitlab_runner_binary` `{path}`"))?;
    let is_static = elf::is_statically_linked(&bytes)
        .map_err(|error| anyhow!("`gitlab_runner_binary` `{path}`: {error}"))?;
    if !is_static {
        bail!(
            "`gitlab_runner_binary` `{path}` is dynamically linked and cannot run inside the job \
             container; use the statically linked gitlab-runner-linux-amd64 release binary"
        );
    }
    Ok(path.to_owned())
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
async fn give_directories_to(
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

/// Returns the entrypoint's script. It prints the machine and, when the image has bash, its
/// path, which proves that the container runs its own binaries, then a marker line. Then it
/// becomes a shell waiting on an open, empty standard input, which stays alive with no
/// child process in any image that has a shell, busybox-only ones included.
fn startup_script() -> String {
    format!("uname -m; command -v bash || true; echo '{READY_MARKER}'; exec {IMAGE_SHELL}")
}

/// Starts `container` and reads the lines of [`startup_script`]. Returns the machine, and
/// records the shell for the `run` stages.
async fn start_and_probe(
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
    let text = String::from_utf8_lossy(&output);
    let mut lines = text.lines();
    let machine = lines.next().unwrap_or_default().trim().to_owned();
    let shell = shell_state::from_probe(lines.next().unwrap_or_default());
    shell_state::save(job.state_dir.as_deref(), container, shell);
    Ok(machine)
}
