//! Command-line arguments. The runner calls the driver as `<exec> <args...>`, and for `run`
//! appends the script path and the stage name as the last two arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cross-executor",
    version,
    about = "GitLab Runner custom executor driver that runs jobs in foreign-architecture \
             Docker containers through QEMU user emulation"
)]
pub struct Cli {
    /// Settings file (TOML); defaults apply when neither this nor CROSS_EXECUTOR_CONFIG is set.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the runner's configuration overrides as JSON (config_exec).
    Config,
    /// Create and start the job container (prepare_exec).
    Prepare,
    /// Run one script of the job in its container (run_exec).
    Run {
        /// Script file written by the runner.
        script: PathBuf,
        /// Sub-stage name, such as build_script; any name is accepted.
        stage: String,
    },
    /// Remove the job's container and volumes (cleanup_exec).
    Cleanup,
    /// Fill the container pool for the job in the environment; `prepare` starts this.
    #[command(name = "pool-fill", hide = true)]
    PoolFill,
    /// Check Docker, binfmt_misc and QEMU for the configured architectures.
    Doctor {
        /// Also run `uname -m` in a container of this image, the way prepare does.
        #[arg(long, value_name = "IMAGE")]
        image: Option<String>,
        /// Print the checks as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Register or remove QEMU entries in binfmt_misc (needs root).
    Binfmt {
        #[command(subcommand)]
        command: BinfmtCommand,
    },
    /// Work with local images.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Remove containers and volumes of jobs whose cleanup never came, and pooled containers
    /// that waited too long.
    Gc {
        /// Remove job objects and waiting pooled containers older than this many seconds,
        /// instead of each job's timeout plus one hour and `pool_max_idle` (or the settings'
        /// gc_max_age).
        #[arg(long, value_name = "SECONDS")]
        max_age: Option<u64>,
        /// Print what would be removed without removing it.
        #[arg(long)]
        dry_run: bool,
        /// Only remove objects of the runner with this short token (CI_RUNNER_SHORT_TOKEN).
        #[arg(long, value_name = "TOKEN")]
        runner: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Turn a root filesystem archive into a local image with the right platform metadata,
    /// also on Docker before 23.0 where `docker import --platform` is ignored.
    Import {
        /// Root filesystem as a tar archive, optionally gzip-compressed.
        rootfs: PathBuf,
        /// Platform of the files, such as linux/arm/v6 for Raspberry Pi OS (Raspbian).
        #[arg(long)]
        platform: String,
        /// Name and tag of the new image, such as raspbian:bookworm.
        #[arg(long)]
        tag: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BinfmtCommand {
    /// Register the host's static QEMU for each architecture with the F flag; an equal
    /// entry is kept.
    Install {
        /// QEMU architecture names (arm, aarch64, riscv64, ppc64le, s390x); all of them
        /// when left out.
        #[arg(long = "arch", value_delimiter = ',')]
        arches: Vec<String>,
        /// Add the C flag, so sudo and other setuid programs work in jobs.
        #[arg(long)]
        credential: bool,
    },
    /// Remove the qemu-<arch> entries.
    Uninstall {
        /// QEMU architecture names; all supported ones when left out.
        #[arg(long = "arch", value_delimiter = ',')]
        arches: Vec<String>,
    },
}
