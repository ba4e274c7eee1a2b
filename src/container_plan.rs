//! The configuration of a job container: what `prepare` creates, and what the container
//! pool creates ahead of time, so both give a job the same container.
//!
//! The architecture comes from the ELF header of the image's `/bin/sh`, because the kernel
//! picks the interpreter from that header and Docker before 23.0 labels imported images
//! with the host's architecture. The header decides the emulation: a bind mount of the
//! interpreter and a `QEMU_CPU` model where needed.
//!
//! The container's entrypoint prints `uname -m` and the path of bash, then a marker line,
//! then becomes the keep-alive shell. `prepare` reads those lines as the container starts.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use crate::binfmt::{self, Emulation};
use crate::container_options;
use crate::docker::{ContainerSpec, ImageFacts};
use crate::elf::{self, Arch};
use crate::job::JobContext;
use crate::names::{self, JobNames};
use crate::platform::{self, Platform, PlatformSource};
use crate::progress;
use crate::settings::Settings;
use crate::shell_state;

/// The shell every image must have; the entrypoint uses it.
pub const IMAGE_SHELL: &str = "/bin/sh";
/// Printed by the entrypoint after the probe's lines.
pub const READY_MARKER: &str = "cross-executor: container ready";
/// Maximum time from the start of a container to its ready line.
pub const STARTUP_TIME_LIMIT: Duration = Duration::from_secs(120);
/// Bytes of the shell read to decide its architecture.
pub const ELF_HEADER_BYTES: usize = 64;
/// Path of `gitlab_runner_binary` in the job container, which is on PATH in common images.
const GITLAB_RUNNER_PATH: &str = "/usr/local/bin/gitlab-runner";

/// A job container's configuration with the emulation its image needs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub spec: ContainerSpec,
    pub platform: Platform,
    pub source: PlatformSource,
    pub emulation: Emulation,
    /// `QEMU_CPU` model, when one applies.
    pub cpu: Option<String>,
    /// A note for the job log when the image's metadata names another architecture.
    pub metadata_note: Option<String>,
}

impl Plan {
    /// Returns whether the plan changed the configuration it started from.
    pub fn changes_spec(&self) -> bool {
        matches!(self.emulation, Emulation::Inject { .. }) || self.cpu.is_some()
    }

    /// Returns the context for a container that failed to start under this plan.
    pub fn start_failure(&self, image: &str) -> String {
        match &self.cpu {
            Some(cpu) => format!(
                "under QEMU_CPU={cpu} for {}, an illegal instruction means that the image's \
                 binaries were built for a newer CPU than that platform has",
                self.platform.canonical()
            ),
            None => format!("image `{image}` cannot run in its container"),
        }
    }

    /// Prints the job log's line about the container, and a warning when setuid programs
    /// cannot work under the emulation.
    pub fn report(&self, image: &str, machine: &str, container_note: &str) {
        if let Some(note) = &self.metadata_note {
            progress::line(note);
        }
        let cpu_note = self
            .cpu
            .as_ref()
            .map(|cpu| format!(", QEMU_CPU={cpu}"))
            .unwrap_or_default();
        progress::line(&format!(
            "Using image {image} as {} ({}, uname -m: {machine}) with {}{cpu_note}{container_note}",
            self.platform.canonical(),
            self.source.describe(),
            self.emulation.describe()
        ));
        if let Some(entry) = self.emulation.entry() {
            if !entry.credentials() {
                progress::warning(&format!(
                    "binfmt_misc entry `{}` lacks the C flag, so setuid programs such as sudo \
                     fail in this job",
                    entry.name
                ));
            }
        }
    }
}

/// Returns the job container's configuration before emulation: names, labels, volumes,
/// the settings' host options and the probing entrypoint.
pub fn base_spec(
    settings: &Settings,
    job: &JobContext,
    image: &str,
    names: &JobNames,
) -> anyhow::Result<ContainerSpec> {
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
    Ok(spec)
}

/// Decides the platform and emulation from the shell's ELF `header` and adds the
/// interpreter mount and `QEMU_CPU` to `spec` where needed.
pub fn plan(
    settings: &Settings,
    (image, facts): (&str, &ImageFacts),
    platform: Option<&Platform>,
    header: &[u8],
    mut spec: ContainerSpec,
) -> anyhow::Result<Plan> {
    let arch = elf::parse_header(header)
        .map_err(|error| anyhow!("`{IMAGE_SHELL}` in image `{image}`: {error}"))?
        .arch;
    let (metadata, metadata_note) = metadata_platform(image, facts, arch);
    let (effective, source) = platform::effective_platform(
        arch,
        platform,
        settings.platform_for_image(image).as_ref(),
        metadata.as_ref(),
    )
    .with_context(|| format!("image `{image}` cannot run as requested"))?;

    let emulation = binfmt::plan(binfmt::DEFAULT_ROOT.as_ref(), header, arch)
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
    Ok(Plan {
        spec,
        platform: effective,
        source,
        emulation,
        cpu,
        metadata_note,
    })
}

/// Reads the platform from the image's metadata. When it names another architecture than
/// the binaries, as it does for images imported on Docker before 23.0, returns a note for
/// the job log instead.
fn metadata_platform(
    image: &str,
    facts: &ImageFacts,
    arch: Arch,
) -> (Option<Platform>, Option<String>) {
    let Some(recorded) = facts.architecture.as_deref() else {
        return (None, None);
    };
    if Arch::from_oci_name(recorded) != Some(arch) {
        let note =
            format!("Image {image} is labelled {recorded}, but its files are {arch}; using {arch}");
        return (None, Some(note));
    }
    let text = match facts
        .variant
        .as_deref()
        .filter(|variant| !variant.is_empty())
    {
        Some(variant) => format!("linux/{recorded}/{variant}"),
        None => format!("linux/{recorded}"),
    };
    (Platform::parse(&text).ok(), None)
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

/// Returns the entrypoint's script. It prints the machine and, when the image has bash, its
/// path, which proves that the container runs its own binaries, then a marker line. Then it
/// becomes a shell waiting on an open, empty standard input, which stays alive with no
/// child process in any image that has a shell, busybox-only ones included.
fn startup_script() -> String {
    format!("uname -m; command -v bash || true; echo '{READY_MARKER}'; exec {IMAGE_SHELL}")
}

/// Reads the machine and the shell from the output of [`startup_script`] before the
/// marker. Returns the machine, and records the shell for the `run` stages.
pub fn record_probe(output: &[u8], job: &JobContext, container: &str) -> String {
    let text = String::from_utf8_lossy(output);
    let mut lines = text.lines();
    let machine = lines.next().unwrap_or_default().trim().to_owned();
    let shell = shell_state::from_probe(lines.next().unwrap_or_default());
    shell_state::save(job.state_dir.as_deref(), container, shell);
    machine
}
