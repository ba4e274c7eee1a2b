//! Reading files of a container, started or not, through the archive endpoint. This runs
//! no process in the container, so it works before emulation is set up.

use anyhow::{bail, Context};
use bollard::query_parameters::{ContainerArchiveInfoOptions, DownloadFromContainerOptions};
use std::io::Read;

use futures_util::StreamExt;

use super::{is_not_found, Docker};

/// Archive bytes read past the needed start before the connection is closed anyway.
const MAX_DRAIN_BYTES: usize = 64 * 1024 * 1024;
/// Symbolic links followed at most when resolving a path (Linux allows 40).
const MAX_LINK_DEPTH: usize = 40;

impl Docker {
    /// Returns whether `path` exists in the container; a dangling symbolic link counts as missing.
    pub async fn path_exists(&self, container: &str, path: &str) -> anyhow::Result<bool> {
        Ok(self.resolve_path(container, path).await?.is_some())
    }

    /// Follows symbolic links and returns the final path, or `None` when it does not exist.
    async fn resolve_path(&self, container: &str, path: &str) -> anyhow::Result<Option<String>> {
        let mut current = path.to_owned();
        for _ in 0..MAX_LINK_DEPTH {
            let options = ContainerArchiveInfoOptions {
                path: current.clone(),
            };
            let stat = match self
                .client
                .get_container_archive_info(container, Some(options))
                .await
            {
                Ok(stat) => stat,
                Err(error) if is_not_found(&error) => return Ok(None),
                Err(error) => {
                    return Err(error).with_context(|| {
                        format!("failed to look up `{current}` in container `{container}`")
                    })
                }
            };
            if stat.link_target.is_empty() {
                return Ok(Some(current));
            }
            // Docker returns the link target resolved to an absolute path.
            current = stat.link_target;
        }
        bail!("too many levels of symbolic links at `{path}` in container `{container}`")
    }

    /// Returns the resolved path and the first `limit` bytes of a file, or `None` when the
    /// file does not exist.
    pub async fn read_file_start(
        &self,
        container: &str,
        path: &str,
        limit: usize,
    ) -> anyhow::Result<Option<(String, Vec<u8>)>> {
        let Some(resolved) = self.resolve_path(container, path).await? else {
            return Ok(None);
        };
        let options = DownloadFromContainerOptions {
            path: resolved.clone(),
        };
        let mut stream = self
            .client
            .download_from_container(container, Some(options));

        // The archive contains the file's tar header (after a PAX header when Docker adds
        // one) and its contents. Only the start is kept, but the rest is read too: closing
        // the connection early makes the daemon log a broken pipe for every job.
        let wanted = 4 * 512 + limit;
        let mut archive = Vec::new();
        let mut total = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(|| {
                format!("failed to read `{resolved}` from container `{container}`")
            })?;
            total += chunk.len();
            if archive.len() < wanted {
                archive.extend_from_slice(&chunk);
            }
            if total > MAX_DRAIN_BYTES {
                break;
            }
        }
        drop(stream);

        let bytes = first_entry_start(&archive, limit).with_context(|| {
            format!("Docker returned an unreadable archive of `{resolved}` from container `{container}`")
        })?;
        Ok(Some((resolved, bytes)))
    }
}

/// Reads up to `limit` bytes of the first file in a possibly truncated tar archive.
fn first_entry_start(archive: &[u8], limit: usize) -> std::io::Result<Vec<u8>> {
    let mut reader = tar::Archive::new(archive);
    let mut entries = reader.entries()?;
    let Some(entry) = entries.next() else {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    };
    let mut contents = Vec::with_capacity(limit);
    let mut entry = entry?.take(limit as u64);
    loop {
        let mut buffer = [0u8; 4096];
        match entry.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => contents.extend_from_slice(&buffer[..count]),
            // A truncated archive ends early; what arrived is what the caller gets.
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(error) => return Err(error),
        }
    }
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive_of(contents: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        builder.append_data(&mut header, "dash", contents).unwrap();
        builder.into_inner().unwrap()
    }

    #[test]
    fn first_entry_reads_prefix() {
        let archive = archive_of(&[7u8; 10_000]);
        assert_eq!(first_entry_start(&archive, 64).unwrap(), vec![7u8; 64]);
    }

    #[test]
    fn first_entry_tolerates_truncation() {
        let archive = archive_of(&[1u8; 10_000]);
        let truncated = &archive[..512 + 100];
        assert_eq!(first_entry_start(truncated, 64).unwrap(), vec![1u8; 64]);
    }
}
