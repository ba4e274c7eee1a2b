//! Making the job's image available according to the pull policy.

use anyhow::{bail, Context};
use bollard::auth::DockerCredentials;
use futures_util::StreamExt;

use super::{is_not_found, Docker};
use crate::settings::PullPolicy;

impl Docker {
    /// Makes `reference` available locally according to `policy`, printing short progress
    /// lines to `progress`. `platform` selects the variant of a multi-architecture image.
    pub async fn ensure_image(
        &self,
        reference: &str,
        policy: PullPolicy,
        platform: Option<&str>,
        credentials: Option<DockerCredentials>,
        progress: &mut dyn FnMut(&str),
    ) -> anyhow::Result<()> {
        let present = self.image_exists(reference).await?;
        match (policy, present) {
            (PullPolicy::Never, false) => bail!(
                "image `{reference}` is not present on this host and the pull policy is \
                 `never`; build or load it on the host, or allow another pull policy"
            ),
            (PullPolicy::Never, true) | (PullPolicy::IfNotPresent, true) => Ok(()),
            (PullPolicy::Always, _) | (PullPolicy::IfNotPresent, false) => self
                .pull(reference, platform, credentials, progress)
                .await
                .with_context(|| {
                    if present {
                        format!("failed to pull image `{reference}` (pull policy `always`)")
                    } else {
                        format!(
                            "image `{reference}` is not present on this host and could not be \
                             pulled"
                        )
                    }
                }),
        }
    }

    async fn image_exists(&self, reference: &str) -> anyhow::Result<bool> {
        match self.client.inspect_image(reference).await {
            Ok(_) => Ok(true),
            Err(error) if is_not_found(&error) => Ok(false),
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
