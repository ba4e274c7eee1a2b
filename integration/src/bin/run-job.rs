//! Runs one job through a custom executor driver, as gitlab-runner would, and
//! prints the job log the way GitLab shows it.
//!
//! Exit status: 0 when the job succeeds, 1 when it fails (build failure,
//! configuration error, cancel or timeout), 2 on a system failure, 3 when the
//! arguments are invalid.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::Parser;
use cross_executor_integration::transcript::render_event;
use cross_executor_integration::{DriverCommand, Harness, Image, Job, JobEvent, RunOptions};

/// Run one job with the given driver and print its job log.
#[derive(Parser, Debug)]
#[command(name = "run-job", version)]
struct Args {
    /// Path of the driver executable.
    #[arg(long)]
    driver: PathBuf,

    /// Driver settings file, passed to every stage as `--config FILE`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Job image (`image:` in .gitlab-ci.yml).
    #[arg(long)]
    image: String,

    /// Image platform (`image:docker:platform`), for example linux/arm64.
    #[arg(long)]
    platform: Option<String>,

    /// A `script:` command; repeat for several commands.
    #[arg(long = "script", value_name = "COMMAND")]
    scripts: Vec<String>,

    /// A job variable as KEY=VALUE; repeat for several.
    #[arg(long = "var", value_name = "KEY=VALUE")]
    variables: Vec<String>,

    /// Job id, used for CI_JOB_ID and in names the driver derives from it.
    #[arg(long, default_value_t = 1)]
    job_id: u64,

    /// Job timeout in seconds.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,

    /// Seconds between preparation attempts.
    #[arg(long, default_value_t = 3)]
    retry_delay: u64,
}

fn build_job(args: &Args) -> anyhow::Result<Job> {
    let mut image = Image::new(&args.image);
    if let Some(platform) = &args.platform {
        image = image.platform(platform);
    }
    let mut job = Job::new(args.job_id)
        .image(image)
        .timeout(Duration::from_secs(args.timeout))
        .build_script(args.scripts.clone());
    for pair in &args.variables {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("invalid --var {pair:?}: expected KEY=VALUE");
        };
        if key.is_empty() {
            bail!("invalid --var {pair:?}: the key is empty");
        }
        job = job.var(key, value);
    }
    Ok(job)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let job = match build_job(&args) {
        Ok(job) => job,
        Err(error) => {
            eprintln!("run-job: {error:#}");
            return ExitCode::from(3);
        }
    };

    // Stages run with the job's temp directory as cwd, so a relative path would
    // no longer point at the driver.
    let driver_path = match std::path::absolute(&args.driver) {
        Ok(path) => path,
        Err(error) => {
            eprintln!(
                "run-job: invalid --driver {}: {error}",
                args.driver.display()
            );
            return ExitCode::from(3);
        }
    };
    let mut driver = DriverCommand::new(driver_path);
    if let Some(config) = &args.config {
        driver = driver.leading_args([OsString::from("--config"), config.clone().into_os_string()]);
    }
    let harness = Harness::new(driver).retry_delay(Duration::from_secs(args.retry_delay));

    let stdout = std::io::stdout();
    let mut write_error: Option<std::io::Error> = None;
    let mut print_event = |event: &JobEvent<'_>| {
        let mut lock = stdout.lock();
        if let Err(error) = lock
            .write_all(&render_event(event))
            .and_then(|()| lock.flush())
        {
            write_error.get_or_insert(error);
        }
    };
    let result = harness.run_job_with(
        &job,
        RunOptions {
            observer: Some(&mut print_event),
            ..RunOptions::default()
        },
    );

    if let Some(error) = write_error {
        let error = anyhow::Error::from(error).context("writing the job log to stdout failed");
        eprintln!("run-job: {error:#}");
    }
    ExitCode::from(result.outcome.exit_code() as u8)
}
