//! The container pool (setting `pool_size`): a job takes a started container with a fresh
//! builds directory, and cleanup and `gc` leave nothing behind.

use std::process::Command;
use std::time::{Duration, Instant};

use cross_executor_integration::{DriverCommand, Job};

use crate::support::*;

/// Runner token of these tests, so no other test's objects mix with the pool's.
const POOL_RUNNER: &str = "pooltest";

fn pool_job() -> Job {
    job(BUSYBOX_ARMHF).runner_short_token(POOL_RUNNER)
}

/// Names of the pool's containers that wait for a job: running, with their slot's name.
fn waiting_containers() -> Vec<String> {
    let (ok, output) = docker(&[
        "ps",
        "--filter",
        &format!("label=io.cross-executor.runner={POOL_RUNNER}"),
        "--filter",
        "label=io.cross-executor.scope=pool",
        "--format",
        "{{.Names}} {{.Label \"io.cross-executor.pool-slot\"}}",
    ]);
    assert!(ok, "{output}");
    output
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(name, slot)| name == slot)
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// Waits until the refill that `prepare` started has a container waiting.
fn wait_for_waiting_container() -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(name) = waiting_containers().into_iter().next() {
            return name;
        }
        assert!(Instant::now() < deadline, "no pooled container after 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Returns the name of the anonymous volume mounted at /builds in `container`.
fn builds_volume_of(container: &str) -> String {
    let format = "{{range .Mounts}}{{if eq .Destination \"/builds\"}}{{.Name}}{{end}}{{end}}";
    let (ok, output) = docker(&["inspect", "--format", format, container]);
    assert!(ok, "{output}");
    output.trim().to_owned()
}

#[test]
fn pool_gives_jobs_started_containers() {
    let cache = tempfile::tempdir().unwrap();
    let settings = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(settings.path(), "network_mode = \"none\"\npool_size = 1\n").unwrap();
    let harness = harness_with(
        DriverCommand::new(DRIVER)
            .env("CROSS_EXECUTOR_CONFIG", settings.path())
            .env("XDG_CACHE_HOME", cache.path()),
    );

    // The first job finds no pool and starts its own container. Its prepare starts the
    // refill.
    let first = pool_job().build_script(["touch /builds/left-by-first-job"]);
    let result = harness.run_job(&first);
    assert_success(&result);
    assert!(!result.job_log_text().contains("pre-started"));
    assert!(leftovers(first.id).is_empty());

    let waiting = wait_for_waiting_container();
    // The slot gets a new container with the same name, so the id identifies this one.
    let (ok, waiting_id) = docker(&["inspect", "--format", "{{.Id}}", &waiting]);
    assert!(ok, "{waiting_id}");
    let waiting_id = waiting_id.trim().to_owned();
    let volume = builds_volume_of(&waiting);
    assert!(!volume.is_empty(), "{waiting} has no /builds volume");

    // The second job takes that container, with an empty builds directory of its own.
    let second = pool_job().build_script(["uname -m", "ls -A /builds"]);
    let result = harness.run_job(&second);
    assert_success(&result);
    let log = result.job_log_text();
    assert!(log.contains("in a pre-started container"), "{log}");
    assert!(log.contains("arm-binfmt-P"), "{log}");
    let output =
        String::from_utf8_lossy(&result.stage("build_script").unwrap().stdout).into_owned();
    assert!(output.contains("armv7l"), "{output}");
    assert!(!output.contains("left-by-first-job"), "{output}");

    // Cleanup removed the taken container and its anonymous builds volume.
    let (exists, _) = docker(&["container", "inspect", &waiting_id]);
    assert!(!exists, "the taken container {waiting_id} still exists");
    let (exists, _) = docker(&["volume", "inspect", &volume]);
    assert!(
        !exists,
        "the builds volume {volume} of the taken container still exists"
    );

    // The refill after the second job fills the slot again, and gc removes what waits.
    let refilled = wait_for_waiting_container();
    let gc = Command::new(DRIVER)
        .args(["gc", "--runner", POOL_RUNNER, "--max-age", "0"])
        .output()
        .unwrap();
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    let gc_output = String::from_utf8_lossy(&gc.stdout);
    assert!(gc_output.contains(&refilled), "{gc_output}");
    assert!(waiting_containers().is_empty());
    docker(&[
        "volume",
        "rm",
        &format!("cross-executor-cache-{POOL_RUNNER}-4242"),
    ]);
}
