//! The `config` stage: reports to the runner where builds and caches live in the job container.
//! Standard output carries exactly one JSON object and nothing else.

use std::io::Write;

use anyhow::Context;
use serde::Serialize;

use crate::job::JobContext;
use crate::names::JobNames;
use crate::settings::Settings;

#[derive(Debug, Serialize)]
struct ConfigOutput<'a> {
    builds_dir: &'a str,
    cache_dir: &'a str,
    builds_dir_is_shared: bool,
    hostname: &'a str,
    driver: Driver,
    shell: &'a str,
}

#[derive(Debug, Serialize)]
struct Driver {
    name: &'static str,
    version: &'static str,
}

/// Prints the runner's configuration overrides as one JSON line.
pub fn run(settings: &Settings, job: &JobContext) -> anyhow::Result<()> {
    let names = JobNames::for_job(job);
    let output = ConfigOutput {
        builds_dir: &settings.builds_dir,
        cache_dir: &settings.cache_dir,
        // Every job gets its own container and builds volume.
        builds_dir_is_shared: false,
        hostname: &names.container,
        driver: Driver {
            name: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
        },
        // The runner writes POSIX-compatible bash scripts; `run` picks bash or sh.
        shell: "bash",
    };
    let json = serde_json::to_string(&output).context("failed to encode the config JSON")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{json}")
        .and_then(|()| stdout.flush())
        .context("failed to write the config JSON to standard output")
}
