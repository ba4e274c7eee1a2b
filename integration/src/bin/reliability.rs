//! Reliability trials for cancellation and crashes: runs jobs that are canceled, or whose
//! driver is killed with SIGKILL in the middle of a stage, and counts what they leave behind:
//! containers and volumes with the driver's job label, and job processes on the host.
//!
//! Usage: reliability --driver PATH [--config FILE] [--image IMG] [--trials N]
//! Exits 1 when anything was left behind.

use std::process::Command;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use cross_executor_integration::{
    Attempt, CancelAt, DriverCommand, Harness, Image, Job, RunOptions, StopConditions,
};

#[derive(Parser)]
struct Args {
    /// The driver binary under test.
    #[arg(long)]
    driver: std::path::PathBuf,
    /// Driver settings file.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    #[arg(long, default_value = "cross-executor-test/busybox-armhf:latest")]
    image: String,
    /// Trials of each kind.
    #[arg(long, default_value_t = 20)]
    trials: u32,
}

const RUNNER_TOKEN: &str = "reliab";
/// The job's processes, recognisable on the host in the emulated command lines.
const JOB_COMMAND: &str = "sleep 1000 & sleep 900";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let driver_path = std::fs::canonicalize(&args.driver)
        .with_context(|| format!("driver `{}` not found", args.driver.display()))?;
    // The settings go to a file of this run's own, named on the driver's command line, so
    // the SIGKILL trials find exactly this run's driver processes.
    let settings = tempfile::Builder::new()
        .prefix("reliability-settings")
        .suffix(".toml")
        .tempfile()?;
    if let Some(config) = &args.config {
        std::fs::copy(config, settings.path())
            .with_context(|| format!("failed to read `{}`", config.display()))?;
    }
    let settings_path = settings.path().to_string_lossy().into_owned();
    let driver =
        DriverCommand::new(&driver_path).leading_args(["--config", settings_path.as_str()]);
    let harness = Harness::new(driver)
        .retry_delay(Duration::ZERO)
        .kill_timeouts(Duration::from_secs(30), Duration::from_secs(10));
    let first_id = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() * 100;

    let mut leaks = Vec::new();
    for trial in 0..args.trials {
        let job = job(first_id + u64::from(trial), &args.image);
        let after = Duration::from_millis(500 + u64::from(trial % 5) * 500);
        let options = RunOptions {
            cancel: Some(CancelAt {
                stage: "build_script".into(),
                after,
            }),
            observer: None,
        };
        harness.run_job_with(&job, options);
        leaks.extend(leftovers(job.id, &format!("cancel trial {trial}"))?);
    }

    for trial in 0..args.trials {
        let id = first_id + 1000 + u64::from(trial);
        let job = job(id, &args.image);
        let stage = if trial % 2 == 0 { "prepare" } else { "run" };
        let with_cleanup = trial % 4 < 2;
        let delay = Duration::from_millis(200 + u64::from(trial % 3) * 300);
        kill_trial(&harness, &job, stage, delay, with_cleanup, &settings_path)?;
        if !with_cleanup {
            // The runner died with the driver, so no cleanup comes: gc must find the job.
            let status = Command::new(&driver_path)
                .args(["gc", "--runner", RUNNER_TOKEN, "--max-age", "0"])
                .status()?;
            if !status.success() {
                bail!("gc failed with {status}");
            }
        }
        let kind = if with_cleanup { "cleanup" } else { "gc" };
        leaks.extend(leftovers(
            id,
            &format!("SIGKILL in {stage}, then {kind}, trial {trial}"),
        )?);
    }

    println!(
        "{} cancel trials, {} SIGKILL trials: {} leftovers",
        args.trials,
        args.trials,
        leaks.len()
    );
    for leak in &leaks {
        println!("  {leak}");
    }
    if !leaks.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}

fn job(id: u64, image: &str) -> Job {
    Job::new(id)
        .project(777, "reliability/trials")
        .runner_short_token(RUNNER_TOKEN)
        .image(Image::new(image))
        .build_script([JOB_COMMAND])
}

/// Runs one preparation attempt by hand and sends SIGKILL to the driver process of `stage`
/// after `delay`, as a crash of the driver or the runner would.
fn kill_trial(
    harness: &Harness,
    job: &Job,
    stage: &str,
    delay: Duration,
    with_cleanup: bool,
    settings_path: &str,
) -> anyhow::Result<()> {
    let mut attempt = Attempt::new(harness, job, 1, None)?;
    let stop = StopConditions::default();
    let (_, configured) = attempt.configure(&stop);
    configured.map_err(|error| anyhow::anyhow!("config failed: {}", error.message()))?;

    let pattern = format!("cross-executor --config {settings_path} {stage}( |$)");
    let killer = thread::spawn(move || {
        thread::sleep(delay);
        Command::new("pkill")
            .args(["-KILL", "-f", &pattern])
            .status()
    });
    if stage == "prepare" {
        attempt.prepare(&stop);
    } else {
        attempt.prepare(&StopConditions::default());
        let build = job
            .find_stage("build_script")
            .context("the job has a build_script")?;
        // The script never ends on its own; the killer ends the driver.
        attempt.run_stage(build, &stop);
    }
    killer.join().expect("killer thread")?;
    if with_cleanup {
        attempt.cleanup();
    }
    attempt.close()?;
    Ok(())
}

/// Lists containers, volumes and host processes that the job left behind.
fn leftovers(job_id: u64, trial: &str) -> anyhow::Result<Vec<String>> {
    let filter = format!("label=io.cross-executor.job-id={job_id}");
    let mut found = Vec::new();
    for (kind, args) in [
        ("container", vec!["ps", "-aq", "--filter", filter.as_str()]),
        (
            "volume",
            vec!["volume", "ls", "-q", "--filter", filter.as_str()],
        ),
    ] {
        let output = Command::new("docker").args(&args).output()?;
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            found.push(format!("{trial}: {kind} {line}"));
        }
    }
    // A container's processes die with it, so a job process on the host means a leak.
    let output = Command::new("pgrep")
        .args(["-f", "sleep (1000|900)$"])
        .output()?;
    for pid in String::from_utf8_lossy(&output.stdout).lines() {
        found.push(format!("{trial}: process {pid}"));
    }
    Ok(found)
}
