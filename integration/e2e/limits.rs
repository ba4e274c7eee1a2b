//! Container settings against the real daemon: limits visible in `docker inspect` and
//! enforced, safe defaults, allow-lists and the job user.

use cross_executor_integration::{Image, Outcome};

use crate::support::*;

/// Runs config and prepare, returns `docker inspect` of the container as JSON, then cleans up.
fn inspect_prepared(settings: &str) -> serde_json::Value {
    let (harness, _file) = harness_with_settings(settings);
    let job = job(BUSYBOX_ARMHF).build_script(["true"]);
    let mut attempt = prepared_attempt(&harness, &job);

    let (ok, output) = docker(&["inspect", &container_name(job.id)]);
    attempt.cleanup();
    assert!(ok, "{output}");
    let parsed: serde_json::Value = serde_json::from_str(&output).unwrap();
    parsed[0].clone()
}

#[test]
fn defaults_are_safe() {
    let details = inspect_prepared("");
    let host = &details["HostConfig"];
    assert_eq!(host["Privileged"], false);
    assert_eq!(host["SecurityOpt"][0], "no-new-privileges");
    assert_eq!(host["PidsLimit"], 4096);
    assert!(host["Binds"].is_null(), "{}", host["Binds"]);
    let mounts = host["Mounts"].as_array().unwrap();
    let binds: Vec<_> = mounts
        .iter()
        .filter(|mount| mount["Type"] == "bind")
        .collect();
    assert_eq!(
        binds.len(),
        1,
        "only the interpreter is bind-mounted: {mounts:?}"
    );
    assert_eq!(binds[0]["ReadOnly"], true);
    for mount in mounts {
        let source = mount["Source"].as_str().unwrap_or_default();
        assert!(!source.contains("docker.sock"), "{mount}");
    }
}

#[test]
fn limits_visible_in_inspect() {
    let details = inspect_prepared(
        "memory = \"96m\"\nmemory_swap = \"128m\"\ncpus = 0.5\npids_limit = 99\n\
         shm_size = \"16m\"\ncap_drop = [\"NET_RAW\"]\n\
         [ulimits]\nnofile = \"512:1024\"\n[labels]\n\"team\" = \"arm\"\n",
    );
    let host = &details["HostConfig"];
    assert_eq!(host["Memory"], 96 * 1024 * 1024);
    assert_eq!(host["MemorySwap"], 128 * 1024 * 1024);
    assert_eq!(host["NanoCpus"], 500_000_000);
    assert_eq!(host["PidsLimit"], 99);
    assert_eq!(host["ShmSize"], 16 * 1024 * 1024);
    assert_eq!(host["CapDrop"][0], "NET_RAW");
    assert_eq!(host["Ulimits"][0]["Name"], "nofile");
    assert_eq!(host["Ulimits"][0]["Soft"], 512);
    assert_eq!(host["Ulimits"][0]["Hard"], 1024);
    assert_eq!(details["Config"]["Labels"]["team"], "arm");
}

#[test]
fn fork_bomb_stopped_by_pids_limit() {
    let (harness, _file) = harness_with_settings("pids_limit = 40\n");
    let job = job(BUSYBOX_ARM64).build_script([
        "i=0; while [ $i -lt 200 ]; do sleep 60 & i=$((i+1)); done",
        "echo all-forked",
    ]);
    let result = harness.run_job(&job);
    let log = result.job_log_text();
    assert!(
        matches!(result.outcome, Outcome::BuildFailure { .. }),
        "{:?}\n{log}",
        result.outcome
    );
    assert!(!log.contains("all-forked"), "{log}");
    assert!(log.contains("fork"), "{log}");
    assert!(leftovers(job.id).is_empty());
}

#[test]
fn memory_limit_kill_is_system_failure() {
    let (harness, _file) = harness_with_settings("memory = \"48m\"\nmemory_swap = \"48m\"\n");
    let job = job(BUSYBOX_ARM64).build_script([
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a)",
        "echo survived",
    ]);
    let result = harness.run_job(&job);
    let Outcome::SystemFailure { stage, .. } = &result.outcome else {
        panic!(
            "expected a system failure, got {:?}\n{}",
            result.outcome,
            result.job_log_text()
        );
    };
    assert_eq!(stage, "build_script");
    let log = result.job_log_text();
    // The OOM killer picks the script's shell, or sometimes the container's PID 1, which
    // stops the container; both messages name the memory limit.
    assert!(
        log.contains("memory limit of 48 MiB") || log.contains("exceeding its memory limit (OOM)"),
        "{log}"
    );
}

#[test]
fn disallowed_image_is_rejected() {
    let (harness, _file) =
        harness_with_settings("allowed_images = [\"cross-executor-test/busybox-arm64:*\"]\n");
    let job = job(BUSYBOX_ARMHF).build_script(["true"]);
    let result = harness.run_job(&job);
    assert!(
        matches!(result.outcome, Outcome::SystemFailure { .. }),
        "{:?}",
        result.outcome
    );
    let log = result.job_log_text();
    assert!(log.contains("not allowed by `allowed_images`"), "{log}");
    assert!(leftovers(job.id).is_empty());
}

#[test]
fn disallowed_pull_policy_is_rejected() {
    let (harness, _file) =
        harness_with_settings("allowed_pull_policies = [\"never\", \"if-not-present\"]\n");
    let job = job(BUSYBOX_ARMHF)
        .image(Image::new(BUSYBOX_ARMHF).pull_policy(["always"]))
        .build_script(["true"]);
    let result = harness.run_job(&job);
    assert!(
        matches!(result.outcome, Outcome::SystemFailure { .. }),
        "{:?}",
        result.outcome
    );
    assert!(result
        .job_log_text()
        .contains("is not allowed on this runner"));
}

#[test]
fn job_user_owns_checkout() {
    let (harness, _file) = harness_with_settings("user = \"nobody\"\n");
    let job = job(BUSYBOX_ARMHF)
        .stage("get_sources", ["echo from-sources > owned.txt"])
        .build_script(["id -u", "echo more >> owned.txt", "cat owned.txt"]);
    let result = harness.run_job(&job);
    assert_success(&result);
    let stdout =
        String::from_utf8_lossy(&result.stage("build_script").unwrap().stdout).into_owned();
    assert!(stdout.contains("65534"), "{stdout}");
    assert!(stdout.contains("from-sources\nmore"), "{stdout}");
}

#[test]
fn settings_volume_and_environment_reach_job() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(directory.path().join("shared.txt"), "from-host").unwrap();
    let settings = format!(
        "volumes = [\"{}:/mnt/host:ro\"]\nenvironment = [\"ADMIN_SETTING=on\"]\n",
        directory.path().display()
    );
    let (harness, _file) = harness_with_settings(&settings);
    let job = job(BUSYBOX_ARMHF).build_script([
        "cat /mnt/host/shared.txt",
        "echo \"setting=$ADMIN_SETTING\"",
        "touch /mnt/host/new 2>/dev/null && echo writable || echo read-only",
    ]);
    let result = harness.run_job(&job);
    assert_success(&result);
    let stdout =
        String::from_utf8_lossy(&result.stage("build_script").unwrap().stdout).into_owned();
    assert!(stdout.contains("from-host"), "{stdout}");
    assert!(stdout.contains("setting=on"), "{stdout}");
    assert!(stdout.contains("read-only"), "{stdout}");
}
