//! cross-executor: a GitLab Runner custom executor driver that runs each job in its own
//! Docker container of a foreign CPU architecture (ARM first) through QEMU user emulation.
//!
//! Layout:
//! - [`cli`] parses arguments; [`stages`] has one module per runner stage.
//! - [`job`], [`settings`] and [`env`] turn the environment and the settings file into typed
//!   values; [`names`] derives Docker object names and labels from the job.
//! - [`elf`], [`binfmt`] and [`platform`] decide how the image's binaries will run.
//! - [`docker`] is the only module that talks to the Docker Engine API.
//! - [`admin`] has the commands for runner admins (`doctor`, `binfmt`, `image import`).
//! - [`gc`] removes what jobs without a cleanup left behind.
//! - [`failure`] sorts outcomes into build and system failures; [`shutdown`] handles
//!   SIGTERM and SIGINT; [`progress`] writes the driver's lines to the job log.

pub mod admin;
pub mod atomic_file;
pub mod binfmt;
pub mod cli;
pub mod container_options;
pub mod container_plan;
pub mod docker;
pub mod elf;
pub mod env;
pub mod failure;
pub mod gc;
pub mod header_cache;
pub mod hex;
pub mod job;
pub mod names;
pub mod platform;
pub mod pool;
pub mod progress;
pub mod registry_auth;
pub mod routing;
pub mod settings;
pub mod shell_state;
pub mod shutdown;
pub mod stages;

use std::time::Duration;

use cli::{BinfmtCommand, Cli, Command, ImageCommand};
use env::EnvSnapshot;
use failure::{ExitCodes, Failure};
use job::JobContext;
use settings::Settings;
use shutdown::Shutdown;

/// Runs the stage named on the command line and returns the process exit code.
pub fn main_with(cli: Cli) -> u8 {
    let snapshot = EnvSnapshot::capture();
    let codes = ExitCodes::from_env(&snapshot);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            progress::line(&format!(
                "ERROR: failed to start the async runtime: {error}"
            ));
            return codes.system_failure;
        }
    };
    let outcome = runtime.block_on(run_stage(cli, &snapshot));
    if let Err(failure) = &outcome {
        match failure {
            // The job's own output already explains a failed script.
            Failure::Build { .. } => {}
            Failure::Interrupted => progress::line("Stage interrupted by a signal"),
            Failure::System(error) => progress::line(&format!("ERROR: {error:#}")),
        }
    }
    codes.for_outcome(&outcome)
}

async fn run_stage(cli: Cli, snapshot: &EnvSnapshot) -> Result<(), Failure> {
    let mut shutdown = Shutdown::install()
        .map_err(|error| anyhow::anyhow!("failed to install signal handlers: {error}"))?;
    if let Command::Image {
        command:
            ImageCommand::Import {
                rootfs,
                platform,
                tag,
            },
    } = &cli.command
    {
        return tokio::select! {
            outcome = admin::image_import::run(rootfs, platform, tag) => Ok(outcome?),
            () = shutdown.wait() => Err(Failure::Interrupted),
        };
    }
    if let Command::Binfmt { command } = &cli.command {
        return Ok(run_binfmt(command)?);
    }
    // Cleanup needs no settings, so a broken settings file cannot leave a job behind. Only
    // the pool's refill, which starts after the removal, reads them.
    if let Command::Cleanup = cli.command {
        let job = JobContext::load(snapshot)?;
        let outcome = tokio::select! {
            outcome = stages::cleanup::run(&job) => Ok(outcome?),
            () = shutdown.wait() => Err(Failure::Interrupted),
        };
        if let Ok(settings) = Settings::load(cli.config.as_deref(), snapshot) {
            if settings.pool_size > 0 && outcome.is_ok() {
                stages::pool_fill::start_in_background(&settings, &job);
            }
        }
        return outcome;
    }
    let settings = Settings::load(cli.config.as_deref(), snapshot)?;
    if let Command::Gc {
        max_age,
        dry_run,
        runner,
    } = cli.command
    {
        let policy = gc::GcPolicy {
            max_age: max_age.or(settings.gc_max_age).map(Duration::from_secs),
            dry_run,
            runner,
            pool_max_idle: Duration::from_secs(settings.pool_max_idle),
        };
        return tokio::select! {
            outcome = stages::gc::run(policy) => Ok(outcome?),
            () = shutdown.wait() => Err(Failure::Interrupted),
        };
    }

    if let Command::Doctor { image, json } = &cli.command {
        let healthy = admin::doctor::run(&settings, image.as_deref(), *json, &mut shutdown).await?;
        if !healthy {
            return Err(anyhow::anyhow!("doctor found errors; see the fixes above").into());
        }
        return Ok(());
    }

    let job = JobContext::load(snapshot)?;
    match cli.command {
        Command::Config => Ok(stages::config::run(&settings, &job)?),
        Command::Prepare => stages::prepare::run(&settings, &job, &mut shutdown).await,
        Command::PoolFill => Ok(stages::pool_fill::run(&settings, &job, snapshot).await?),
        Command::Run { script, stage } => {
            stages::run::run(&settings, &job, snapshot, &script, &stage, &mut shutdown).await
        }
        Command::Cleanup
        | Command::Gc { .. }
        | Command::Image { .. }
        | Command::Doctor { .. }
        | Command::Binfmt { .. } => {
            unreachable!("handled before the settings or the job context are loaded")
        }
    }
}

fn run_binfmt(command: &BinfmtCommand) -> anyhow::Result<()> {
    use admin::binfmt_register::{self, BinfmtRequest, DEFAULT_ARCHES};

    let (arches, credentials) = match command {
        BinfmtCommand::Install { arches, credential } => (arches, *credential),
        BinfmtCommand::Uninstall { arches } => (arches, false),
    };
    let request = BinfmtRequest {
        arches: if arches.is_empty() {
            DEFAULT_ARCHES.iter().map(|name| name.to_string()).collect()
        } else {
            arches.clone()
        },
        credentials,
        root: binfmt::DEFAULT_ROOT.into(),
    };
    match command {
        BinfmtCommand::Install { .. } => binfmt_register::install(&request),
        BinfmtCommand::Uninstall { .. } => binfmt_register::uninstall(&request),
    }
}
