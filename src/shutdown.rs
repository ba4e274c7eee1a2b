//! SIGTERM and SIGINT handling.
//!
//! The runner sends SIGTERM to a stage's process group when the job is canceled or times
//! out, and SIGKILL after `graceful_kill_timeout`. Each stage receives a [`Shutdown`] and
//! races its work against [`Shutdown::wait`], so it can stop the work it started (for `run`,
//! the job's processes inside the container) and exit before the SIGKILL comes. The
//! handlers are installed before any work starts, so a signal is never lost.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// Receives the runner's request to stop the current stage.
pub struct Shutdown {
    terminate: Signal,
    interrupt: Signal,
}

impl Shutdown {
    /// Installs handlers for SIGTERM and SIGINT; must run inside the tokio runtime.
    pub fn install() -> std::io::Result<Self> {
        Ok(Shutdown {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Completes when SIGTERM or SIGINT arrives.
    pub async fn wait(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => tracing::debug!("received SIGTERM"),
            _ = self.interrupt.recv() => tracing::debug!("received SIGINT"),
        }
    }
}
