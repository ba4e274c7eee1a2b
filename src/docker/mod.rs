//! The one place that talks to the Docker Engine API. Stages call the domain verbs here
//! and never build bollard request types themselves; every error names the operation and
//! the object.

mod exec;
mod files;
mod image;
mod processes;

use std::collections::HashMap;

use anyhow::Context;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, HostConfig, Mount, MountType,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, ListVolumesOptions,
    RemoveContainerOptions, RemoveVolumeOptions,
};

pub use exec::{ExecOutcome, ExecRequest, OutputSink};
pub use processes::StopReport;

/// A connected Docker client whose API version was negotiated with the daemon.
pub struct Docker {
    client: bollard::Docker,
}

/// A container or volume found by its labels.
#[derive(Debug, Clone)]
pub struct LabelledObject {
    pub name: String,
    pub labels: HashMap<String, String>,
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
    /// Named volumes as (volume, path in the container).
    pub volumes: Vec<(String, String)>,
    /// Read-only bind mounts as (host path, path in the container).
    pub read_only_binds: Vec<(String, String)>,
}

impl Docker {
    /// Connects through `DOCKER_HOST` (default: the local Unix socket) and negotiates the
    /// API version, so Docker 20.10 (API 1.41) and current engines both work.
    pub async fn connect() -> anyhow::Result<Self> {
        let host = std::env::var("DOCKER_HOST")
            .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned());
        let client = bollard::Docker::connect_with_defaults()
            .with_context(|| format!("failed to set up a Docker client for `{host}`"))?;
        let client = client.negotiate_version().await.with_context(|| {
            format!("failed to reach the Docker daemon at `{host}`; is dockerd running?")
        })?;
        Ok(Docker { client })
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
        let mut mounts: Vec<Mount> = spec
            .volumes
            .iter()
            .map(|(volume, target)| Mount {
                typ: Some(MountType::VOLUME),
                source: Some(volume.clone()),
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
            host_config: Some(HostConfig {
                mounts: Some(mounts),
                network_mode: spec.network_mode.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let created = self
            .client
            .create_container(Some(options), body)
            .await
            .with_context(|| {
                format!(
                    "failed to create container `{}` from image `{}`",
                    spec.name, spec.image
                )
            })?;
        Ok(created.id)
    }

    pub async fn start_container(&self, name: &str) -> anyhow::Result<()> {
        self.client
            .start_container(name, None)
            .await
            .with_context(|| format!("failed to start container `{name}`"))
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

    /// Returns the architecture and variant recorded in the image's metadata, which may be
    /// wrong for imported images.
    pub async fn image_platform(
        &self,
        reference: &str,
    ) -> anyhow::Result<(Option<String>, Option<String>)> {
        let image = self
            .client
            .inspect_image(reference)
            .await
            .with_context(|| format!("failed to inspect image `{reference}`"))?;
        Ok((image.architecture, image.variant))
    }

    /// All containers, running or not, that carry every `key=value` label given.
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
                })
            })
            .collect())
    }

    /// All volumes that carry every `key=value` label given.
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
            })
            .collect())
    }
}

fn status_code(error: &BollardError) -> Option<u16> {
    match error {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn is_not_found(error: &BollardError) -> bool {
    status_code(error) == Some(404)
}

fn is_conflict(error: &BollardError) -> bool {
    status_code(error) == Some(409)
}
