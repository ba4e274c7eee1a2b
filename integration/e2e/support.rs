//! Shared helpers of the end-to-end tests: the driver under test, unique job ids, the test
//! images and Docker queries for leftovers.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cross_executor_integration::{
    Attempt, DriverCommand, Harness, Image, Job, JobResult, StopConditions,
};

/// Local images built by integration/build-images.sh.
pub const BUSYBOX_ARMHF: &str = "cross-executor-test/busybox-armhf:latest";
pub const BUSYBOX_ARM64: &str = "cross-executor-test/busybox-arm64:latest";
pub const DEBIAN_ARMHF: &str = "cross-executor-test/debian-armhf:bookworm";
pub const BUSYBOX_RISCV64: &str = "cross-executor-test/busybox-riscv64:latest";
pub const BUSYBOX_PPC64LE: &str = "cross-executor-test/busybox-ppc64le:latest";
/// armel busybox (ARMv5TE code) as the shell, plus the armhf busybox (ARMv7 Thumb-2 code) at
/// /opt/armv7/busybox.
pub const ARMV6_PROBE: &str = "cross-executor-test/armv6-probe:latest";

pub const DRIVER: &str = env!("CARGO_BIN_EXE_cross-executor");
pub const SETTINGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/integration/e2e/settings.toml");
pub const RUNNER_TOKEN: &str = "e2etest";

/// A harness that runs the driver under test with the test settings and no retry delay.
pub fn harness() -> Harness {
    harness_with(driver())
}

pub fn harness_with(driver: DriverCommand) -> Harness {
    Harness::new(driver)
        .retry_delay(Duration::ZERO)
        .kill_timeouts(Duration::from_secs(20), Duration::from_secs(10))
}

/// A harness whose driver reads `settings` plus `network_mode = "none"`; keep the returned
/// file alive while the harness runs.
pub fn harness_with_settings(settings: &str) -> (Harness, tempfile::NamedTempFile) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("network_mode = \"none\"\n{settings}")).unwrap();
    let driver = DriverCommand::new(DRIVER).env("CROSS_EXECUTOR_CONFIG", file.path());
    (harness_with(driver), file)
}

/// Runs config and prepare of `job` as the first attempt and panics unless both succeed.
pub fn prepared_attempt<'a>(harness: &'a Harness, job: &'a Job) -> Attempt<'a> {
    let mut attempt = Attempt::new(harness, job, 1, None).unwrap();
    let stop = StopConditions::default();
    attempt.configure(&stop).1.unwrap();
    let prepared = attempt.prepare(&stop).unwrap();
    assert!(
        prepared.result.is_ok(),
        "{}",
        String::from_utf8_lossy(&prepared.combined)
    );
    attempt
}

pub fn driver() -> DriverCommand {
    DriverCommand::new(DRIVER).env("CROSS_EXECUTOR_CONFIG", SETTINGS)
}

/// A job id no other test of this run or a concurrent run uses.
pub fn unique_job_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let process = u64::from(std::process::id()) % 100_000;
    1_000_000_000 + process * 1000 + COUNTER.fetch_add(1, Ordering::SeqCst)
}

/// A job with a fresh id in the test project, using `image`.
pub fn job(image: &str) -> Job {
    Job::new(unique_job_id())
        .project(4242, "e2e/cross-executor")
        .runner_short_token(RUNNER_TOKEN)
        .image(Image::new(image))
}

/// Panics with the job log unless the job succeeded.
pub fn assert_success(result: &JobResult) {
    assert_eq!(
        result.outcome,
        cross_executor_integration::Outcome::Success,
        "job log:\n{}\ncleanup log:\n{}",
        result.job_log_text(),
        String::from_utf8_lossy(&result.cleanup_log)
    );
}

/// Runs the docker CLI and returns its exit status and combined output.
pub fn docker(args: &[&str]) -> (bool, String) {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Names of containers and volumes that carry the driver's label for `job_id`.
pub fn leftovers(job_id: u64) -> Vec<String> {
    let filter = format!("label=io.cross-executor.job-id={job_id}");
    let (ok, containers) = docker(&["ps", "-aq", "--filter", &filter]);
    assert!(ok, "{containers}");
    let (ok, volumes) = docker(&["volume", "ls", "-q", "--filter", &filter]);
    assert!(ok, "{volumes}");
    containers
        .lines()
        .chain(volumes.lines())
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// The container name the driver derives for a job of the test project.
pub fn container_name(job_id: u64) -> String {
    format!("cross-executor-{RUNNER_TOKEN}-0-4242-{job_id}")
}

/// The flags of a binfmt_misc entry, for tests that depend on the emulation mode.
pub fn binfmt_flags(entry: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/sys/fs/binfmt_misc/{entry}")).unwrap_or_else(
        |error| {
            panic!(
                "binfmt_misc entry {entry} is missing ({error}); run integration/binfmt-modes.sh"
            )
        },
    );
    text.lines()
        .find_map(|line| line.strip_prefix("flags: "))
        .unwrap_or_default()
        .to_owned()
}
