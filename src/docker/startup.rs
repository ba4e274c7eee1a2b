//! Starting a container while reading what its entrypoint prints first.
//!
//! `prepare` gives the job container an entrypoint that prints a few facts and a marker
//! line, then becomes the keep-alive shell. Reading those lines through an attach made
//! before the start saves the exec that would otherwise be needed after it.

use std::time::Duration;

use anyhow::{bail, Context};
use bollard::container::LogOutput;
use bollard::query_parameters::{AttachContainerOptions, LogsOptions};
use futures_util::StreamExt;

use super::Docker;

/// Output kept from an entrypoint that never prints the marker; the rest is dropped.
const KEPT_OUTPUT_BYTES: usize = 16 * 1024;

/// The end of a container's startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// The entrypoint printed the marker line; this is its output before that line.
    Ready(Vec<u8>),
    /// The container's output ended without the marker, usually because its entrypoint
    /// failed. `exit_code` is `None` when the container is still running.
    Ended {
        output: Vec<u8>,
        exit_code: Option<i64>,
    },
}

impl Docker {
    /// Starts `container` and reads its standard output and standard error until a line
    /// equal to `marker`, for at most `limit`.
    pub async fn start_until_marker(
        &self,
        container: &str,
        marker: &str,
        limit: Duration,
    ) -> anyhow::Result<Startup> {
        let options = AttachContainerOptions {
            stream: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let attached = self
            .client
            .attach_container(container, Some(options))
            .await
            .with_context(|| format!("failed to attach to container `{container}`"))?;
        self.start_container(container).await?;

        let mut output = Vec::new();
        let read = read_until_marker(attached.output, &mut output, marker, container);
        let Ok(ready) = tokio::time::timeout(limit, read).await else {
            bail!(
                "container `{container}` did not finish starting within {} s",
                limit.as_secs()
            );
        };
        if ready? {
            return Ok(Startup::Ready(output));
        }
        let exit_code = self
            .inspect_container(container)
            .await?
            .and_then(|details| details.state)
            .filter(|state| state.running != Some(true))
            .and_then(|state| state.exit_code);
        Ok(Startup::Ended { output, exit_code })
    }
}

impl Docker {
    /// Returns what a started container's entrypoint printed before a line equal to
    /// `marker`, read from its log and waiting at most `limit` for the line. Returns `None`
    /// when the container stopped or the time ran out without the line.
    pub async fn output_before_marker(
        &self,
        container: &str,
        marker: &str,
        limit: Duration,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            follow: true,
            ..Default::default()
        };
        let frames = self.client.logs(container, Some(options));
        let mut output = Vec::new();
        let read = read_until_marker(frames, &mut output, marker, container);
        match tokio::time::timeout(limit, read).await {
            Ok(Ok(true)) => Ok(Some(output)),
            Ok(Ok(false)) | Err(_) => Ok(None),
            Ok(Err(error)) => Err(error),
        }
    }
}

/// Collects output frames into `output` until a line equal to `marker`, and returns whether
/// that line came. `output` then contains what came before it.
async fn read_until_marker<S>(
    mut frames: S,
    output: &mut Vec<u8>,
    marker: &str,
    container: &str,
) -> anyhow::Result<bool>
where
    S: futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Unpin,
{
    while let Some(frame) = frames.next().await {
        let frame = frame
            .with_context(|| format!("failed to read the output of container `{container}`"))?;
        let room = KEPT_OUTPUT_BYTES.saturating_sub(output.len());
        let bytes = frame.into_bytes();
        output.extend_from_slice(&bytes[..bytes.len().min(room)]);
        if let Some(end) = output_before_marker(output, marker) {
            output.truncate(end);
            return Ok(true);
        }
    }
    Ok(false)
}

/// Returns the length of the output before a complete line equal to `marker`.
fn output_before_marker(output: &[u8], marker: &str) -> Option<usize> {
    let mut start = 0;
    for (at, byte) in output.iter().enumerate() {
        if *byte == b'\n' {
            if &output[start..at] == marker.as_bytes() {
                return Some(start);
            }
            start = at + 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_only_counts_as_a_whole_line() {
        assert_eq!(output_before_marker(b"armv7l\nREADY\n", "READY"), Some(7));
        assert_eq!(output_before_marker(b"READY\n", "READY"), Some(0));
        assert_eq!(output_before_marker(b"armv7l\nREADY", "READY"), None);
        assert_eq!(output_before_marker(b"not READY\n", "READY"), None);
        assert_eq!(output_before_marker(b"READY now\n", "READY"), None);
    }
}
