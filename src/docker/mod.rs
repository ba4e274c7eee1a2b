//! The one place that talks to the Docker Engine API. Stages call the domain verbs here
//! and never build bollard request types themselves; every error names the operation and
//! the object.

mod exec;
mod files;
mod image;
mod processes;
mod startup;

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, DeviceMapping, HostConfig, Mount, MountType,
    ResourcesUlimits, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, ListVolumesOptions,
    RemoveContainerOptions, RemoveVolumeOptions, StatsOptions,
};
use bollard::ClientVersion;
use futures_util::StreamExt;

use crate::container_options::HostOptions;

pub use exec::{ExecOutcome, ExecRequest, OutputSink};
pub use image::ImageFacts;
pub use processes::StopReport;
pub use startup::Startup;

/// A connected Docker client whose API version was negotiated with the daemon.
pub struct Docker {
    client: bollard::Docker,
}

/// Outcome of [`Docker::rename_container`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rename {
    Done,
    /// No container has the old name, for example because another job renamed it first.
    NoSuchContainer,
    /// Another container has the new name.
    NameTaken,
}

/// A container or volume found by its labels.
#[derive(Debug, Clone)]
pub struct LabelledObject {
    pub name: String,
    pub labels: HashMap<String, String>,
    /// Whether the object is a running container; always false for volumes.
    pub running: bool,
}

/// Configuration of a job container.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub labels: HashMap<String, String>,
    pub entrypoint: Vec<String>,
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub hostname: Option<String>,
    /// Keep the container's standard input open, so a shell entrypoint waits on it forever.
    pub keep_stdin_open: bool,
    pub network_mode: Option<String>,
    /// Volumes as (volume, path in the container); an empty volume name means an anonymous
    /// volume.
    pub volumes: Vec<(String, String)>,
    /// Read-only bind mounts as (host path, path in the container).
    pub read_only_binds: Vec<(String, String)>,
    /// Limits, capabilities and mounts from the settings.
    pub host: HostOptions,
}

impl Docker {
    /// Connects through `DOCKER_HOST` (default: the local Unix socket) and negotiates the
    /// API version, so Docker 20.10 (API 1.41) and current engines both work.
    pub async fn connect() -> anyhow::Result<Self> {
        let host = docker_host();
        let client = bollard::Docker::connect_with_defaults()
            .with_context(|| format!("failed to set up a Docker client for `{host}`"))?;
        let client = client.negotiate_version().await.with_context(|| {
            format!("failed to reach the Docker daemon at `{host}`; is dockerd running?")
        })?;
        Ok(Docker { client })
    }

    /// Connects like [`Docker::connect`], but reuses a negotiated API version. Docker 20.10
    /// serves the version request by running `runc --version`, which costs 5-10 ms a stage.
    ///
    /// The version comes from `state_dir`, where an earlier stage of the same preparation
    /// attempt recorded it, or else from the driver's cache directory, where an earlier job
    /// recorded it for the same `DOCKER_HOST`. The daemon may have changed since that job,
    /// so a ping with that version confirms it first; it costs under a millisecond.
    // NOTE: bollard 0.21 joins each request path onto its versioned base URL in a way that
    // drops the `/v1.xx` prefix, so the daemon serves every request at its own version and
    // the ping accepts any cached version. The check matters once bollard sends the prefix.
    pub async fn connect_for_job(state_dir: Option<&Path>) -> anyhow::Result<Self> {
        let host = docker_host();
        let job_file = state_dir.map(|dir| dir.join("cross-executor-api-version"));
        let recorded = job_file
            .as_deref()
            .and_then(|file| std::fs::read_to_string(file).ok())
            .and_then(|text| parse_api_version(&text));
        if let Some(version) = recorded {
            if let Some(client) = connect_with_version(&version)? {
                return Ok(Docker { client });
            }
        }

        let host_file = crate::header_cache::driver_cache_dir().map(|dir| dir.join("api-version"));
        let cached = host_file
            .as_deref()
            .and_then(|file| std::fs::read_to_string(file).ok())
            .and_then(|text| {
                let (cached_host, version) = text.trim().rsplit_once(' ')?;
                (cached_host == host).then(|| parse_api_version(version))?
            });
        let confirmed = match cached {
            Some(version) => match connect_with_version(&version)? {
                Some(client) if client.ping().await.is_ok() => Some(Docker { client }),
                _ => None,
            },
            None => None,
        };
        let docker = match confirmed {
            Some(docker) => docker,
            None => Self::connect().await?,
        };
        let version = docker.client.client_version();
        let text = format!("{}.{}", version.major_version, version.minor_version);
        for (file, content) in [
            (job_file, text.clone()),
            (host_file, format!("{host} {text}")),
        ] {
            let Some(file) = file else { continue };
            if let Err(error) = crate::atomic_file::write(&file, content.as_bytes()) {
                tracing::debug!(%error, file = %file.display(), "could not record the Docker API version");
            }
        }
        Ok(docker)
    }

    /// Returns whether the container reached its memory limit at some point, and the limit
    /// in bytes. cgroup v1 reports a hit count (`failcnt`) and the peak usage. The count is
    /// left out when zero and stays zero when swap is limited too, so a peak at the limit
    /// also counts.
    pub async fn memory_limit_reached(
        &self,
        container: &str,
    ) -> anyhow::Result<(bool, Option<u64>)> {
        let options = StatsOptions {
            stream: false,
            one_shot: true,
        };
        let mut stream = self.client.stats(container, Some(options));
        let stats = stream
            .next()
            .await
            .context("Docker returned no statistics")?
            .with_context(|| format!("failed to read statistics of container `{container}`"))?;
        let memory = stats.memory_stats.unwrap_or_default();
        let counted = memory.failcnt.unwrap_or(0) > 0
            || memory
                .stats
                .as_ref()
                .and_then(|values| values.get("oom_kill"))
                .is_some_and(|kills| *kills > 0);
        let peaked =
            matches!((memory.max_usage, memory.limit), (Some(peak), Some(limit)) if peak >= limit);
        Ok((counted || peaked, memory.limit))
    }

    /// Returns the daemon's version and API version.
    pub async fn server_version(&self) -> anyhow::Result<(String, String)> {
        let version = self
            .client
            .version()
            .await
            .context("failed to read the Docker daemon's version")?;
        Ok((
            version.version.unwrap_or_default(),
            version.api_version.unwrap_or_default(),
        ))
    }

    /// Returns the container, or `None` when no container has that name or id.
    pub async fn inspect_container(
        &self,
        name: &str,
    ) -> anyhow::Result<Option<ContainerInspectResponse>> {
        match self
            .client
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(details) => Ok(Some(details)),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => {
                Err(error).with_context(|| format!("failed to inspect container `{name}`"))
            }
        }
    }

    /// Creates a stopped container and returns its id.
    pub async fn create_container(&self, spec: &ContainerSpec) -> anyhow::Result<String> {
        self.create(spec)
            .await
            .map(|created| created.id)
            .with_context(|| creation_failed(spec))
    }

    /// Creates a stopped container like [`Docker::create_container`]. Returns false when a
    /// container of that name exists already.
    pub async fn create_container_unless_taken(
        &self,
        spec: &ContainerSpec,
    ) -> anyhow::Result<bool> {
        match self.create(spec).await {
            Ok(_) => Ok(true),
            Err(error) if is_conflict(&error) => Ok(false),
            Err(error) => Err(error).with_context(|| creation_failed(spec)),
        }
    }

    async fn create(
        &self,
        spec: &ContainerSpec,
    ) -> Result<bollard::models::ContainerCreateResponse, BollardError> {
        let mut mounts: Vec<Mount> = spec
            .volumes
            .iter()
            .map(|(volume, target)| Mount {
                typ: Some(MountType::VOLUME),
                // An empty name means an anonymous volume, which Docker removes with the container.
                source: (!volume.is_empty()).then(|| volume.clone()),
                target: Some(target.clone()),
                ..Default::default()
            })
            .collect();
        mounts.extend(spec.read_only_binds.iter().map(|(source, target)| Mount {
            typ: Some(MountType::BIND),
            source: Some(source.clone()),
            target: Some(target.clone()),
            read_only: Some(true),
            ..Default::default()
        }));
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            labels: Some(spec.labels.clone()),
            entrypoint: Some(spec.entrypoint.clone()),
            cmd: Some(spec.command.clone()),
            env: Some(spec.env.clone()),
            hostname: spec.hostname.clone(),
            open_stdin: Some(spec.keep_stdin_open),
            host_config: Some(host_config(spec, mounts)),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        self.client.create_container(Some(options), body).await
    }

    pub async fn start_container(&self, name: &str) -> anyhow::Result<()> {
        self.client
            .start_container(name, None)
            .await
            .with_context(|| format!("failed to start container `{name}`"))
    }

    /// Renames a container.
    pub async fn rename_container(&self, name: &str, new_name: &str) -> anyhow::Result<Rename> {
        let options = bollard::query_parameters::RenameContainerOptions {
            name: new_name.to_owned(),
        };
        match self.client.rename_container(name, options).await {
            Ok(()) => Ok(Rename::Done),
            Err(error) if is_not_found(&error) => Ok(Rename::NoSuchContainer),
            Err(error) if is_conflict(&error) => Ok(Rename::NameTaken),
            Err(error) => Err(error)
                .with_context(|| format!("failed to rename container `{name}` to `{new_name}`")),
        }
    }

    /// Force-removes a container with its anonymous volumes. Returns false when it did not
    /// exist, which is not an error.
    pub async fn remove_container(&self, name: &str) -> anyhow::Result<bool> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match self.client.remove_container(name, Some(options)).await {
            Ok(()) => Ok(true),
            Err(error) if is_not_found(&error) => Ok(false),
            // A removal already under way (a concurrent cleanup) ends in the same state.
            Err(error) if is_conflict(&error) && error.to_string().contains("in progress") => {
                Ok(true)
            }
            Err(error) => {
                Err(error).with_context(|| format!("failed to remove container `{name}`"))
            }
        }
    }

    /// Creates a named volume; an existing volume of that name is reused.
    pub async fn create_volume(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
    ) -> anyhow::Result<()> {
        let request = VolumeCreateRequest {
            name: Some(name.to_owned()),
            labels: Some(labels.clone()),
            ..Default::default()
        };
        self.client
            .create_volume(request)
            .await
            .with_context(|| format!("failed to create volume `{name}`"))?;
        Ok(())
    }

    /// Removes a volume. Returns false when it did not exist.
    pub async fn remove_volume(&self, name: &str) -> anyhow::Result<bool> {
        let options = RemoveVolumeOptions { force: true };
        match self.client.remove_volume(name, Some(options)).await {
            Ok(()) => Ok(true),
            Err(error) if is_not_found(&error) => Ok(false),
            Err(error) => Err(error).with_context(|| format!("failed to remove volume `{name}`")),
        }
    }

    /// Returns all containers, running or not, that carry every `key=value` label given.
    pub async fn containers_with_labels(
        &self,
        labels: &[String],
    ) -> anyhow::Result<Vec<LabelledObject>> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_owned(), labels.to_vec())])),
            ..Default::default()
        };
        let containers = self
            .client
            .list_containers(Some(options))
            .await
            .context("failed to list containers")?;
        Ok(containers
            .into_iter()
            .filter_map(|container| {
                let name = container.names?.into_iter().next()?;
                Some(LabelledObject {
                    name: name.trim_start_matches('/').to_owned(),
                    labels: container.labels.unwrap_or_default(),
                    running: container.state
                        == Some(bollard::models::ContainerSummaryStateEnum::RUNNING),
                })
            })
            .collect())
    }

    /// Returns all volumes that carry every `key=value` label given.
    pub async fn volumes_with_labels(
        &self,
        labels: &[String],
    ) -> anyhow::Result<Vec<LabelledObject>> {
        let options = ListVolumesOptions {
            filters: Some(HashMap::from([("label".to_owned(), labels.to_vec())])),
        };
        let response = self
            .client
            .list_volumes(Some(options))
            .await
            .context("failed to list volumes")?;
        Ok(response
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|volume| LabelledObject {
                name: volume.name,
                labels: volume.labels,
                running: false,
            })
            .collect())
    }
}

fn docker_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned())
}

fn parse_api_version(text: &str) -> Option<ClientVersion> {
    let (major, minor) = text.trim().split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

/// Builds a client for `DOCKER_HOST` with a known API version; `None` for host forms that
/// need the negotiating path (for example SSH or TLS).
fn connect_with_version(version: &ClientVersion) -> anyhow::Result<Option<bollard::Docker>> {
    const TIMEOUT_SECONDS: u64 = 120;
    let host = docker_host();
    let client = if host.starts_with("unix://") {
        bollard::Docker::connect_with_unix(&host, TIMEOUT_SECONDS, version)
    } else if (host.starts_with("tcp://") || host.starts_with("http://"))
        && std::env::var_os("DOCKER_TLS_VERIFY").is_none()
    {
        bollard::Docker::connect_with_http(&host, TIMEOUT_SECONDS, version)
    } else {
        return Ok(None);
    };
    client
        .map(Some)
        .with_context(|| format!("failed to set up a Docker client for `{host}`"))
}

fn host_config(spec: &ContainerSpec, mounts: Vec<Mount>) -> HostConfig {
    let host = &spec.host;
    let non_empty = |values: &Vec<String>| (!values.is_empty()).then(|| values.clone());
    HostConfig {
        mounts: Some(mounts),
        network_mode: spec.network_mode.clone(),
        memory: host.memory,
        memory_swap: host.memory_swap,
        nano_cpus: host.nano_cpus,
        pids_limit: host.pids_limit,
        shm_size: host.shm_size,
        ulimits: (!host.ulimits.is_empty()).then(|| {
            host.ulimits
                .iter()
                .map(|(name, soft, hard)| ResourcesUlimits {
                    name: Some(name.clone()),
                    soft: Some(*soft),
                    hard: Some(*hard),
                })
                .collect()
        }),
        cap_add: non_empty(&host.cap_add),
        cap_drop: non_empty(&host.cap_drop),
        security_opt: non_empty(&host.security_opt),
        privileged: Some(host.privileged),
        dns: non_empty(&host.dns),
        extra_hosts: non_empty(&host.extra_hosts),
        binds: non_empty(&host.binds),
        tmpfs: (!host.tmpfs.is_empty()).then(|| host.tmpfs.clone().into_iter().collect()),
        devices: (!host.devices.is_empty()).then(|| {
            host.devices
                .iter()
                .map(|(host_path, container_path, permissions)| DeviceMapping {
                    path_on_host: Some(host_path.clone()),
                    path_in_container: Some(container_path.clone()),
                    cgroup_permissions: Some(permissions.clone()),
                })
                .collect()
        }),
        ..Default::default()
    }
}

fn status_code(error: &BollardError) -> Option<u16> {
    match error {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn creation_failed(spec: &ContainerSpec) -> String {
    format!(
        "failed to create container `{}` from image `{}`",
        spec.name, spec.image
    )
}

fn is_not_found(error: &BollardError) -> bool {
    status_code(error) == Some(404)
}

fn is_conflict(error: &BollardError) -> bool {
    status_code(error) == Some(409)
}
