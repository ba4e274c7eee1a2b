//! The `run` stage: runs one script of the job in the job container.
//!
//! The script reaches the container's shell over the exec's standard input, never as a
//! file or an argument, and its output is forwarded byte for byte to the driver's own
//! standard output and standard error. A non-zero exit of the script is a build failure;
//! a missing container, a lost daemon or a container that stopped is a system failure.

use std::fs::File;
use std::io::ErrorKind;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::docker::{Docker, ExecRequest, OutputSink};
use crate::env::{self, EnvSnapshot};
use crate::failure::Failure;
use crate::job::JobContext;
use crate::names::JobNames;
use crate::progress;
use crate::routing::{self, Target};
use crate::settings::Settings;
use crate::shell_state;
use crate::shutdown::Shutdown;

/// How long a script exit code above 128 waits for Docker to report a stopped container.
const SIGNAL_EXIT_SETTLE_TIME: Duration = Duration::from_secs(2);
/// Shells tried in order; the runner's scripts run in bash and in POSIX sh.
const SHELLS: [&str; 3] = ["/bin/bash", "/usr/bin/bash", "/bin/sh"];

/// Runs the script at `script_path`; `stage` names the runner's sub-stage and only
/// labels messages, so unknown stage names work like any other.
pub async fn run(
    settings: &Settings,
    job: &JobContext,
    snapshot: &EnvSnapshot,
    script_path: &Path,
    stage: &str,
    shutdown: &mut Shutdown,
) -> Result<(), Failure> {
    // A code left by an earlier stage must not be read as this stage's code.
    let code_file = snapshot.path(env::BUILD_EXIT_CODE_FILE);
    if let Some(path) = &code_file {
        remove_if_present(path)?;
    }
    let script = std::fs::read(script_path).with_context(|| {
        format!(
            "failed to read the script `{}` of stage `{stage}`",
            script_path.display()
        )
    })?;

    let names = JobNames::for_job(job);
    let docker = Docker::connect_for_job(job.state_dir.as_deref()).await?;
    let target = routing::target_for(stage, settings.helper_image.is_some());
    let container = match target {
        Target::Job => &names.container,
        Target::Helper => &names.helper_container,
    };
    if settings.helper_image.is_some() {
        let place = match target {
            Target::Job => "job container",
            Target::Helper => "helper container",
        };
        progress::line(&format!("Running {stage} in the {place} {container}"));
    }
    let shell = match shell_state::load(job.state_dir.as_deref(), container) {
        Some(shell) => shell,
        None => pick_shell(&docker, container).await?,
    };

    let request = ExecRequest {
        command: vec![shell.to_owned()],
        input: Some(script),
        user: settings.user.clone(),
        ..Default::default()
    };
    // Standard output and standard error are written unbuffered, so every byte reaches
    // the runner as soon as the container sent it.
    let mut stdout = raw_stream(1);
    let mut stderr = raw_stream(2);
    let mut sink = OutputSink {
        stdout: &mut *stdout,
        stderr: &mut *stderr,
    };
    let outcome = tokio::select! {
        outcome = docker.exec(container, request, &mut sink) => outcome.with_context(|| {
            format!("stage `{stage}` failed in container `{container}`")
        })?,
        () = shutdown.wait() => {
            stop_after_signal(&docker, container, stage, settings).await;
            return Err(Failure::Interrupted);
        }
    };
    if outcome.exit_code == 0 {
        return Ok(());
    }

    if !outcome.started {
        return Err(anyhow!(
            "the shell `{shell}` could not start in container `{container}` (exit code {})",
            outcome.exit_code
        )
        .into());
    }
    check_container_alive(&docker, container, stage, outcome.exit_code).await?;
    if outcome.exit_code == 137 && settings.memory.is_some() {
        check_memory_limit(&docker, container, stage).await?;
    }
    let exit_code = i32::try_from(outcome.exit_code).unwrap_or(1);
    if let Some(path) = &code_file {
        std::fs::write(path, format!("{exit_code}\n"))
            .with_context(|| format!("failed to write the exit code to `{}`", path.display()))?;
    }
    Err(Failure::Build { exit_code })
}

/// Prefers bash, as the runner's scripts are written for it, and falls back to sh.
async fn pick_shell(docker: &Docker, container: &str) -> anyhow::Result<&'static str> {
    let Some(details) = docker.inspect_container(container).await? else {
        return Err(anyhow!(
            "container `{container}` does not exist; the prepare stage did not create it or \
             cleanup already removed it"
        ));
    };
    if details.state.and_then(|state| state.running) != Some(true) {
        return Err(anyhow!("container `{container}` is not running"));
    }
    for shell in SHELLS {
        if docker.path_exists(container, shell).await? {
            return Ok(shell);
        }
    }
    Err(anyhow!(
        "container `{container}` has no shell at {}",
        SHELLS.join(", ")
    ))
}

/// Fails when the container stopped, because then the exit code does not come from
/// the script (for example 137 after an out-of-memory kill).
async fn check_container_alive(
    docker: &Docker,
    container: &str,
    stage: &str,
    exit_code: i64,
) -> anyhow::Result<()> {
    // A killed container ends the exec with 128 + signal before Docker has recorded that
    // the container stopped, so such codes get a short grace period to show it.
    let settle_time = if exit_code > 128 {
        SIGNAL_EXIT_SETTLE_TIME
    } else {
        Duration::ZERO
    };
    let deadline = tokio::time::Instant::now() + settle_time;
    let state = loop {
        let details = docker.inspect_container(container).await?;
        let Some(state) = details.and_then(|details| details.state) else {
            return Err(anyhow!(
                "container `{container}` was removed while stage `{stage}` ran"
            ));
        };
        if state.running != Some(true) {
            break state;
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reason = if state.oom_killed == Some(true) {
        "it was killed for exceeding its memory limit (OOM)".to_owned()
    } else {
        format!(
            "it stopped with exit code {}",
            state.exit_code.unwrap_or_default()
        )
    };
    Err(anyhow!(
        "container `{container}` stopped while stage `{stage}` ran: {reason}"
    ))
}

/// Fails when a process killed with SIGKILL ran in a container that hit its memory limit:
/// then the kernel's OOM killer ended it, not the script.
// NOTE: page cache counts towards the peak, so a script that kills itself with SIGKILL in a
// container whose cache filled the limit is reported as an out-of-memory kill too.
async fn check_memory_limit(docker: &Docker, container: &str, stage: &str) -> anyhow::Result<()> {
    let (reached, limit) = match docker.memory_limit_reached(container).await {
        Ok(values) => values,
        Err(error) => {
            tracing::warn!(%error, "could not read memory statistics");
            return Ok(());
        }
    };
    tracing::debug!(reached, ?limit, "memory statistics after exit code 137");
    if !reached {
        return Ok(());
    }
    let limit = limit
        .map(|bytes| format!(" of {} MiB", bytes / (1024 * 1024)))
        .unwrap_or_default();
    Err(anyhow!(
        "a process of stage `{stage}` was killed (exit code 137) after container `{container}` \
         reached its memory limit{limit}; raise the `memory` setting or make the job use less memory"
    ))
}

/// Stops the job's processes after SIGTERM or SIGINT; the container stays for the stages
/// that the runner still runs after a cancel (after_script, uploads).
async fn stop_after_signal(docker: &Docker, container: &str, stage: &str, settings: &Settings) {
    let grace = Duration::from_secs(settings.stop_timeout);
    progress::line(&format!(
        "Stopping stage {stage}: sending SIGTERM to the job's processes in {container}"
    ));
    match docker.stop_job_processes(container, grace).await {
        Ok(report) if report.killed => progress::line(&format!(
            "Processes still running after {}s received SIGKILL",
            settings.stop_timeout
        )),
        Ok(_) => {}
        Err(error) => progress::warning(&format!("{error:#}")),
    }
}

fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != ErrorKind::NotFound => Err(error)
            .with_context(|| format!("failed to remove the exit code file `{}`", path.display())),
        _ => Ok(()),
    }
}

/// Returns a writer on an inherited file descriptor without Rust's line buffering; the descriptor
/// stays open when the writer is dropped.
fn raw_stream(fd: i32) -> ManuallyDrop<File> {
    // SAFETY: descriptors 1 and 2 are open for the whole process, and ManuallyDrop keeps
    // this File from closing them.
    ManuallyDrop::new(unsafe { File::from_raw_fd(fd) })
}
