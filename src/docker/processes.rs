//! Stopping the job's processes inside a container while keeping the container itself.
//!
//! Killing a `docker exec` client does not stop the process it started, so a canceled
//! stage must signal the processes in the container. A job container holds only the
//! keep-alive shell (PID 1) and the job's processes, so `kill -1` from a shell in the
//! container reaches exactly the job's processes: Linux skips PID 1 and the caller. Docker's
//! `top` lists the remaining processes from the host, without starting an emulated process.

use std::time::Duration;

use anyhow::Context;
use bollard::query_parameters::TopOptions;

use super::{Docker, OutputSink};

/// How often the remaining processes are counted during the grace period.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Result of stopping the job's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopReport {
    /// Whether processes were still alive after the grace period and got SIGKILL.
    pub killed: bool,
}

impl Docker {
    /// Sends SIGTERM to every process but PID 1, waits up to `grace` for them to exit, then
    /// sends SIGKILL to what is left.
    pub async fn stop_job_processes(
        &self,
        container: &str,
        grace: Duration,
    ) -> anyhow::Result<StopReport> {
        self.signal_all(container, "TERM").await?;
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            if self.live_process_count(container).await? <= 1 {
                return Ok(StopReport { killed: false });
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        self.signal_all(container, "KILL").await?;
        Ok(StopReport { killed: true })
    }

    /// Counts the container's processes that have not exited, PID 1 included.
    pub async fn live_process_count(&self, container: &str) -> anyhow::Result<usize> {
        let options = TopOptions {
            ps_args: "-o pid,stat".to_owned(),
        };
        let top = self
            .client
            .top_processes(container, Some(options))
            .await
            .with_context(|| format!("failed to list the processes of container `{container}`"))?;
        let titles = top.titles.unwrap_or_default();
        let stat_column = titles.iter().position(|title| title == "STAT");
        let processes = top.processes.unwrap_or_default();
        Ok(processes
            .iter()
            .filter(|process| {
                // Zombies have exited already; only their parent can remove them.
                let state = stat_column.and_then(|column| process.get(column));
                !state.is_some_and(|state| state.starts_with('Z'))
            })
            .count())
    }

    async fn signal_all(&self, container: &str, signal: &str) -> anyhow::Result<()> {
        let script = format!("kill -{signal} -1 2>/dev/null; exit 0");
        let mut ignored = Vec::new();
        let mut ignored_errors = Vec::new();
        let mut sink = OutputSink {
            stdout: &mut ignored,
            stderr: &mut ignored_errors,
        };
        let request = super::ExecRequest {
            command: vec!["/bin/sh".to_owned(), "-c".to_owned(), script],
            user: Some("0".to_owned()),
            ..Default::default()
        };
        self.exec(container, request, &mut sink)
            .await
            .with_context(|| format!("failed to send SIG{signal} to the job's processes"))?;
        Ok(())
    }
}
