//! Running processes in a container: short captured commands, and job scripts whose output
//! is forwarded byte for byte as it arrives.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context};
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::Docker;

/// Read buffer for exec output; Docker sends frames of up to 32 KiB.
const OUTPUT_BUFFER_BYTES: usize = 64 * 1024;
/// How long to wait for Docker to record an exit code after the output stream ended.
const EXIT_CODE_WAIT: Duration = Duration::from_secs(10);

/// Destinations for a process's standard output and standard error.
pub struct OutputSink<'a> {
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
}

/// A process to start in a container.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub command: Vec<String>,
    /// Extra `NAME=value` environment entries.
    pub env: Vec<String>,
    /// User name or id; the image's user when `None`.
    pub user: Option<String>,
    /// Bytes for standard input, which is closed afterwards; no standard input when `None`.
    pub input: Option<Vec<u8>>,
}

/// Exit status of an exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecOutcome {
    pub exit_code: i64,
    /// Whether the process started; Docker reports a failed start as exit code 126 or
    /// 127 with no process id.
    pub started: bool,
}

impl Docker {
    /// Runs `command` and returns its exit code with standard output and standard error
    /// captured together.
    pub async fn exec_capture(
        &self,
        container: &str,
        command: &[&str],
    ) -> anyhow::Result<(ExecOutcome, Vec<u8>)> {
        self.exec_capture_with(container, None, command).await
    }

    /// Like [`Docker::exec_capture`], as the given user.
    pub async fn exec_capture_as(
        &self,
        container: &str,
        user: &str,
        command: &[&str],
    ) -> anyhow::Result<(ExecOutcome, Vec<u8>)> {
        self.exec_capture_with(container, Some(user), command).await
    }

    async fn exec_capture_with(
        &self,
        container: &str,
        user: Option<&str>,
        command: &[&str],
    ) -> anyhow::Result<(ExecOutcome, Vec<u8>)> {
        let mut captured = Vec::new();
        let mut errors = Vec::new();
        let outcome = {
            let mut sink = OutputSink {
                stdout: &mut captured,
                stderr: &mut errors,
            };
            let request = ExecRequest {
                command: command.iter().map(|part| part.to_string()).collect(),
                user: user.map(str::to_owned),
                ..Default::default()
            };
            self.exec(container, request, &mut sink).await?
        };
        captured.extend_from_slice(&errors);
        Ok((outcome, captured))
    }

    /// Runs the request's command with its input on standard input, closes the input so
    /// the process reads end of file, and forwards output to `sink` as each frame arrives.
    /// Memory use does not grow with the amount of output.
    pub async fn exec(
        &self,
        container: &str,
        request: ExecRequest,
        sink: &mut OutputSink<'_>,
    ) -> anyhow::Result<ExecOutcome> {
        let ExecRequest {
            command,
            env,
            user,
            input,
        } = request;
        let options = CreateExecOptions {
            cmd: Some(command.clone()),
            env: Some(env),
            user,
            attach_stdin: Some(input.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            ..Default::default()
        };
        let exec = match self.client.create_exec(container, options).await {
            Ok(exec) => exec,
            Err(error) if super::is_not_found(&error) => bail!(
                "container `{container}` does not exist; the prepare stage did not create it or \
                 cleanup already removed it"
            ),
            Err(error) if super::is_conflict(&error) => {
                bail!("container `{container}` is not running: {error}")
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("failed to create an exec in container `{container}`")
                })
            }
        };
        let start = StartExecOptions {
            output_capacity: Some(OUTPUT_BUFFER_BYTES),
            ..Default::default()
        };
        let started = self
            .client
            .start_exec(&exec.id, Some(start))
            .await
            .with_context(|| {
                format!(
                    "failed to start `{}` in container `{container}`",
                    command.join(" ")
                )
            })?;
        let StartExecResults::Attached {
            mut output,
            input: mut writer,
        } = started
        else {
            bail!("Docker started the exec detached, so its output cannot be read");
        };

        // Feed the input concurrently with reading output: a large script may not fit
        // into the pipe before the shell starts writing.
        let feeder = async move {
            if let Some(bytes) = input {
                writer.write_all(&bytes).await?;
            }
            writer.shutdown().await
        };
        let forwarder = async {
            while let Some(frame) = output.next().await {
                let frame = frame.context("lost the connection to Docker while reading output")?;
                match frame {
                    LogOutput::StdErr { message } => sink.stderr.write_all(&message),
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        sink.stdout.write_all(&message)
                    }
                    LogOutput::StdIn { .. } => Ok(()),
                }
                .context("failed to write the job's output")?;
            }
            anyhow::Ok(())
        };
        let (fed, forwarded) = tokio::join!(feeder, forwarder);
        forwarded?;
        if let Err(error) = fed {
            // The process may exit without reading all of its input; that is its choice.
            tracing::debug!(%error, "exec input closed early");
        }

        self.wait_exit_code(&exec.id).await
    }

    async fn wait_exit_code(&self, exec_id: &str) -> anyhow::Result<ExecOutcome> {
        let deadline = tokio::time::Instant::now() + EXIT_CODE_WAIT;
        loop {
            let details = self
                .client
                .inspect_exec(exec_id)
                .await
                .with_context(|| format!("failed to inspect exec `{exec_id}`"))?;
            if details.running != Some(true) {
                if let Some(exit_code) = details.exit_code {
                    let started = details.pid.is_some_and(|pid| pid > 0);
                    return Ok(ExecOutcome { exit_code, started });
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("Docker reported no exit code for exec `{exec_id}` after its output ended");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
