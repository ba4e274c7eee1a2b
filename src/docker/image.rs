//! Making the job's image available according to the pull policy.

use anyhow::{bail, Context};
use bollard::auth::DockerCredentials;
use futures_util::StreamExt;

use super::{is_not_found, Docker};
use crate::settings::PullPolicy;

/// Facts of a local image that `prepare` needs.
#[derive(Debug, Clone, Default)]
pub struct ImageFacts {
    /// The image ID, a digest of its configuration and therefore of its files.
    pub id: String,
    /// Architecture and variant recorded in the metadata, which may be wrong for imported
    /// images.
    pub architecture: Option<String>,
    pub variant: Option<String>,
}

impl Docker {
    /// Makes `reference` available locally according to `policy`, printing short progress
    /// lines to `progress`, and returns its facts. `platform` selects the variant of a
    /// multi-architecture image.
    pub async fn ensure_image(
        &self,
        reference: &str,
        policy: PullPolicy,
        platform: Option<&str>,
        credentials: Option<DockerCredentials>,
        progress: &mut dyn FnMut(&str),
    ) -> anyhow::Result<ImageFacts> {
        let local = self.image_facts(reference).await?;
        let present = local.is_some();
        match (policy, local) {
            (PullPolicy::Never, Some(facts)) | (PullPolicy::IfNotPresent, Some(facts)) => {
                return Ok(facts)
            }
            (PullPolicy::Never, None) => bail!(
                "image `{reference}` is not present on this host and the pull policy is \
                 `never`; build or load it on the host, or allow another pull policy"
            ),
            (PullPolicy::Always, _) | (PullPolicy::IfNotPresent, None) => {}
        }
        self.pull(reference, platform, credentials, progress)
            .await
            .with_context(|| {
                if present {
                    format!("failed to pull image `{reference}` (pull policy `always`)")
                } else {
                    format!(
                        "image `{reference}` is not present on this host and could not be pulled"
                    )
                }
            })?;
        self.image_facts(reference)
            .await?
            .with_context(|| format!("image `{reference}` is missing right after its pull"))
    }

    /// Returns the facts of a local image, or `None` when the host does not have it.
    async fn image_facts(&self, reference: &str) -> anyhow::Result<Option<ImageFacts>> {
        match self.client.inspect_image(reference).await {
            Ok(image) => Ok(Some(ImageFacts {
                id: image.id.unwrap_or_default(),
                architecture: image.architecture,
                variant: image.variant,
            })),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => {
                Err(error).with_context(|| format!("failed to inspect image `{reference}`"))
            }
        }
    }

    async fn pull(
        &self,
        reference: &str,
        platform: Option<&str>,
        credentials: Option<DockerCredentials>,
        progress: &mut dyn FnMut(&str),
    ) -> anyhow::Result<()> {
        let with = if credentials.is_some() {
            " with credentials"
        } else {
            ""
        };
        progress(&format!("Pulling image {reference}{with}..."));
        let options = bollard::query_parameters::CreateImageOptions {
            from_image: Some(with_default_tag(reference)),
            platform: platform.unwrap_or_default().to_owned(),
            ..Default::default()
        };
        let mut stream = self.client.create_image(Some(options), None, credentials);
        let mut last_status = String::new();
        while let Some(item) = stream.next().await {
            let info = item?;
            if let Some(message) = info.error_detail.and_then(|detail| detail.message) {
                bail!("{message}");
            }
            // Per-layer lines carry an id; the image-level lines are the concise ones.
            if info.id.is_none() {
                if let Some(status) = info.status {
                    if status != last_status {
                        progress(&status);
                        last_status = status;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Adds `:latest` when the reference has neither a tag nor a digest, as `docker pull` does.
fn with_default_tag(reference: &str) -> String {
    let last_component = reference.rsplit('/').next().unwrap_or(reference);
    if reference.contains('@') || last_component.contains(':') {
        reference.to_owned()
    } else {
        format!("{reference}:latest")
    }
}

impl Docker {
    /// Sends an image archive in the format of `docker save` to the daemon's load endpoint.
    pub async fn load_image_archive(&self, archive: &std::path::Path) -> anyhow::Result<()> {
        let file = tokio::fs::File::open(archive)
            .await
            .with_context(|| format!("failed to open `{}`", archive.display()))?;
        let body = tokio_util::io::ReaderStream::new(file);
        let options = bollard::query_parameters::ImportImageOptions {
            quiet: true,
            platform: None,
        };
        let mut stream = self.client.import_image_stream(options, body, None);
        while let Some(item) = stream.next().await {
            item.context("the Docker daemon failed to load the image archive")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_tag_only_when_missing() {
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(
            with_default_tag("reg:5000/team/img"),
            "reg:5000/team/img:latest"
        );
        assert_eq!(
            with_default_tag("reg:5000/team/img:v1"),
            "reg:5000/team/img:v1"
        );
        assert_eq!(with_default_tag("img@sha256:abc"), "img@sha256:abc");
    }
}
