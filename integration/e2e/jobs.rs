//! The protocol and streaming cases: exit codes, output fidelity, variables, stages and
//! cleanup.

use std::time::Duration;

use cross_executor_integration::{DriverCommand, Image, Outcome, StageBody, SubStage, Variable};
use sha2::{Digest, Sha256};

use crate::support::*;

/// A job whose build_script body is `body` inside the runner's script frame, without the
/// runner's variable exports and command echoes.
fn raw_build_job(image: &str, body: Vec<u8>) -> cross_executor_integration::Job {
    job(image).sub_stage(SubStage {
        name: "build_script".into(),
        body: StageBody::Raw(body),
    })
}

#[test]
fn script_exit_code_is_build_failure() {
    let job = job(BUSYBOX_ARMHF).build_script(["echo before", "exit 42"]);
    let result = harness().run_job(&job);

    let Outcome::BuildFailure {
        stage, exit_code, ..
    } = &result.outcome
    else {
        panic!("expected a build failure, got {:?}", result.outcome);
    };
    assert_eq!(stage, "build_script");
    assert_eq!(*exit_code, 42);
    let build = result.stage("build_script").unwrap();
    assert_eq!(build.exit_code(), Some(1));
}

#[test]
fn missing_image_is_system_failure() {
    let image = "cross-executor-test/does-not-exist:never";
    let job = job(image)
        .image(Image::new(image).pull_policy(["never"]))
        .build_script(["true"]);
    let result = harness().run_job(&job);

    let Outcome::SystemFailure { stage, .. } = &result.outcome else {
        panic!("expected a system failure, got {:?}", result.outcome);
    };
    assert_eq!(stage, "prepare");
    assert_eq!(result.attempts, 3, "the runner retries system failures");
    let log = result.job_log_text();
    assert!(log.contains(image), "{log}");
    assert!(log.contains("pull policy is `never`"), "{log}");
    assert!(leftovers(job.id).is_empty());
}

#[test]
fn unpullable_image_names_image() {
    // Nothing listens on this loopback port, so the pull fails at once.
    let image = "127.0.0.1:9/cross-executor-test/absent:1";
    let result = harness().run_job(&job(image).build_script(["true"]));
    assert!(
        matches!(result.outcome, Outcome::SystemFailure { .. }),
        "{:?}",
        result.outcome
    );
    let log = result.job_log_text();
    assert!(log.contains("could not be pulled"), "{log}");
    assert!(log.contains(image), "{log}");
}

#[test]
fn missing_image_and_default_is_system_failure() {
    let mut job = job(BUSYBOX_ARMHF).build_script(["true"]);
    job.image = None;
    let result = harness().run_job(&job);
    assert!(
        matches!(result.outcome, Outcome::SystemFailure { .. }),
        "{:?}",
        result.outcome
    );
    assert!(result.job_log_text().contains("default_image"));
}

#[test]
fn all_byte_values_pass_unchanged() {
    let body = b"i=0; while [ $i -lt 256 ]; do printf \"\\\\$(printf %o $i)\"; i=$((i+1)); done; printf 'E' >&2".to_vec();
    let job = raw_build_job(BUSYBOX_ARMHF, body);
    let result = harness().run_job(&job);
    assert_success(&result);

    let build = result.stage("build_script").unwrap();
    let expected: Vec<u8> = (0..=255u8).collect();
    assert_eq!(build.stdout, expected);
    assert_eq!(build.stderr, b"E");
}

#[test]
fn hundred_megabytes_match_checksum() {
    const SIZE: usize = 100 * 1024 * 1024;
    let body = format!("head -c {SIZE} /dev/zero | tr '\\0' 'x'").into_bytes();
    let job = raw_build_job(BUSYBOX_ARM64, body);
    let result = harness().digest_stdout("build_script").run_job(&job);
    assert_success(&result);

    let summary = result
        .stage("build_script")
        .unwrap()
        .stdout_summary
        .clone()
        .unwrap();
    assert_eq!(summary.len, SIZE as u64);
    let mut hasher = Sha256::new();
    let block = vec![b'x'; 1024 * 1024];
    for _ in 0..100 {
        hasher.update(&block);
    }
    let expected: String = hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert_eq!(summary.sha256, expected);
}

#[test]
fn output_without_newline_and_streams_apart() {
    let body = b"printf 'out-no-newline'; printf 'err-no-newline' >&2".to_vec();
    let job = raw_build_job(BUSYBOX_ARMHF, body);
    let result = harness().run_job(&job);
    assert_success(&result);
    let build = result.stage("build_script").unwrap();
    assert_eq!(build.stdout, b"out-no-newline");
    assert_eq!(build.stderr, b"err-no-newline");
}

#[test]
fn tricky_variable_reaches_job_unchanged() {
    let value = "quote\" single' dollar$HOME `backtick` \\back\nnew line ünïcödé ✓";
    let job = job(DEBIAN_ARMHF)
        .variable(Variable::new("TRICKY", value).raw())
        .build_script(["printf '[%s]' \"$TRICKY\""]);
    let result = harness().run_job(&job);
    assert_success(&result);

    let stdout = result.stage("build_script").unwrap().stdout.clone();
    let expected = format!("[{value}]");
    let found = stdout
        .windows(expected.len())
        .any(|window| window == expected.as_bytes());
    assert!(found, "{}", String::from_utf8_lossy(&stdout));
}

#[test]
fn file_from_get_sources_visible_later() {
    let job = job(BUSYBOX_ARMHF)
        .stage("get_sources", ["echo checked-out > source.txt"])
        .build_script(["cat source.txt", "pwd"]);
    let result = harness().run_job(&job);
    assert_success(&result);
    let stdout =
        String::from_utf8_lossy(&result.stage("build_script").unwrap().stdout).into_owned();
    assert!(stdout.contains("checked-out"), "{stdout}");
    assert!(stdout.contains("/builds/e2e/cross-executor"), "{stdout}");
}

#[test]
fn cleanup_leaves_nothing_but_cache() {
    let job = job(BUSYBOX_ARMHF).build_script(["echo cached > /cache/marker"]);
    let result = harness().run_job(&job);
    assert_success(&result);
    assert!(leftovers(job.id).is_empty(), "{:?}", leftovers(job.id));

    let (ok, volumes) = docker(&["volume", "ls", "-q"]);
    assert!(ok);
    assert!(
        volumes
            .lines()
            .any(|name| name == format!("cross-executor-cache-{RUNNER_TOKEN}-4242")),
        "the project's cache volume stays: {volumes}"
    );
}

#[test]
fn empty_and_exitless_scripts_finish() {
    let job = job(BUSYBOX_ARMHF)
        .sub_stage(SubStage {
            name: "build_script".into(),
            body: StageBody::RawScript(Vec::new()),
        })
        .sub_stage(SubStage {
            name: "step_release".into(),
            body: StageBody::RawScript(b"echo no exit at the end".to_vec()),
        });
    let result = harness().run_job(&job);
    assert_success(&result);

    for stage in ["build_script", "step_release"] {
        let record = result.stage(stage).unwrap();
        assert!(
            record.duration < Duration::from_secs(30),
            "{stage} took {:?}",
            record.duration
        );
    }
    let release = result.stage("step_release").unwrap();
    assert_eq!(release.stdout, b"no exit at the end\n");
}

#[test]
fn unknown_stage_name_runs() {
    let job = job(BUSYBOX_ARMHF).stage("some_future_stage", ["echo future"]);
    let result = harness().run_job(&job);
    assert_success(&result);
    let stdout = &result.stage("some_future_stage").unwrap().stdout;
    assert!(String::from_utf8_lossy(stdout).contains("future"));
}

#[test]
fn config_prints_only_json() {
    let job = job(BUSYBOX_ARMHF).build_script(["true"]);
    let result = harness().run_job(&job);
    assert_success(&result);

    let config = result.stage("config").unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&config.stdout).unwrap();
    assert_eq!(parsed["builds_dir"], "/builds");
    assert_eq!(parsed["cache_dir"], "/cache");
    assert_eq!(parsed["driver"]["name"], "cross-executor");
    assert_eq!(parsed["shell"], "bash");
    assert_eq!(parsed["hostname"], container_name(job.id));
}

#[test]
fn unreachable_docker_host_is_system_failure() {
    let driver = driver().env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    let job = job(BUSYBOX_ARMHF).build_script(["true"]);
    let result = harness_with(driver).run_job(&job);
    assert!(
        matches!(result.outcome, Outcome::SystemFailure { .. }),
        "{:?}",
        result.outcome
    );
    let log = result.job_log_text();
    assert!(log.contains("unix:///nonexistent/docker.sock"), "{log}");
}

#[test]
fn explicit_docker_host_is_used() {
    let driver = driver().env("DOCKER_HOST", "unix:///var/run/docker.sock");
    let result = harness_with(driver).run_job(&job(BUSYBOX_ARMHF).build_script(["true"]));
    assert_success(&result);
}

#[test]
fn invalid_settings_fail_config() {
    let settings = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        settings.path(),
        "network_mode = \"none\"\nbuilds_dri = \"/b\"\n",
    )
    .unwrap();
    let driver = DriverCommand::new(DRIVER).env("CROSS_EXECUTOR_CONFIG", settings.path());
    let result = harness_with(driver).run_job(&job(BUSYBOX_ARMHF).build_script(["true"]));

    let Outcome::SystemFailure { stage, .. } = &result.outcome else {
        panic!("expected a system failure, got {:?}", result.outcome);
    };
    assert_eq!(stage, "config");
    let log = result.job_log_text();
    assert!(log.contains("builds_dri"), "{log}");
    assert!(log.contains("line 2"), "{log}");
}

#[test]
fn default_image_serves_job_without_image() {
    let settings = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        settings.path(),
        format!("network_mode = \"none\"\ndefault_image = \"{BUSYBOX_ARM64}\"\n"),
    )
    .unwrap();
    let driver = DriverCommand::new(DRIVER).env("CROSS_EXECUTOR_CONFIG", settings.path());
    let mut job = job(BUSYBOX_ARMHF).build_script(["uname -m"]);
    job.image = None;
    let result = harness_with(driver).run_job(&job);
    assert_success(&result);
    let stdout =
        String::from_utf8_lossy(&result.stage("build_script").unwrap().stdout).into_owned();
    assert!(stdout.contains("aarch64"), "{stdout}");
}

#[test]
fn cached_api_version_damage_is_harmless() {
    // The driver caches the negotiated API version per DOCKER_HOST. An entry for another
    // host or a damaged one is replaced, and a version the daemon does not support still
    // gives a working job.
    let cache = tempfile::tempdir().unwrap();
    let file = cache.path().join("cross-executor/api-version");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let harness = harness_with(driver().env("XDG_CACHE_HOME", cache.path()));
    for content in [
        "unix:///elsewhere.sock 1.41",
        "garbage",
        "unix:///var/run/docker.sock 1.99",
    ] {
        std::fs::write(&file, content).unwrap();
        let result = harness.run_job(&job(BUSYBOX_ARMHF).build_script(["true"]));
        assert_success(&result);
        let recorded = std::fs::read_to_string(&file).unwrap();
        assert!(
            recorded.starts_with("unix:///var/run/docker.sock 1."),
            "{content}: {recorded}"
        );
    }
}
