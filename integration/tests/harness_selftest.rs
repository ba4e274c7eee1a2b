//! Self-tests of the harness against `tests/fake-driver.sh`, a bash driver that
//! runs job scripts locally. No Docker is needed.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cross_executor_integration::{
    Attempt, CancelAt, CancelToken, DriverCommand, Harness, Image, Job, Outcome, ProcessEnd,
    RunOptions, StageError, StageKind, StopConditions, StopReason, StreamSummary, SubStage,
    Variable,
};
use tempfile::TempDir;

fn fake_driver() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-driver.sh")
}

/// A harness around the fake driver, with its files in a fresh directory.
struct Fixture {
    root: TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            root: tempfile::tempdir().unwrap(),
        }
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    fn driver(&self) -> DriverCommand {
        DriverCommand::new(fake_driver()).env("FAKE_ROOT", self.root())
    }

    fn harness(&self) -> Harness {
        self.harness_with(self.driver())
    }

    fn harness_with(&self, driver: DriverCommand) -> Harness {
        Harness::new(driver)
            .retry_delay(Duration::ZERO)
            .kill_timeouts(Duration::from_secs(5), Duration::from_secs(5))
    }

    /// Returns the stages the fake driver was called for, in order.
    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.root().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Returns the environment the fake driver received in its last call for `label`.
    fn driver_env(&self, label: &str) -> HashMap<OsString, OsString> {
        let dump = fs::read(self.root().join(format!("env.{label}"))).unwrap();
        dump.split(|&byte| byte == 0)
            .filter(|entry| !entry.is_empty())
            .filter_map(|entry| {
                let position = entry.iter().position(|&byte| byte == b'=')?;
                Some((
                    OsString::from_vec(entry[..position].to_vec()),
                    OsString::from_vec(entry[position + 1..].to_vec()),
                ))
            })
            .collect()
    }

    fn read(&self, name: &str) -> Vec<u8> {
        fs::read(self.root().join(name)).unwrap()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn env_value<'a>(env: &'a HashMap<OsString, OsString>, key: &str) -> Option<&'a OsStr> {
    env.get(OsStr::new(key)).map(OsString::as_os_str)
}

#[test]
fn successful_job_stage_order() {
    let fixture = Fixture::new();
    let job = Job::new(11)
        .build_script(["echo building"])
        .after_script(["echo after"]);
    let result = fixture.harness().run_job(&job);

    assert_eq!(result.outcome, Outcome::Success);
    let expected = [
        "config",
        "prepare",
        "prepare_script",
        "get_sources",
        "build_script",
        "after_script",
        "cleanup_file_variables",
        "cleanup",
    ];
    assert_eq!(result.stage_names(), expected);
    assert_eq!(fixture.calls(), expected);
    assert_eq!(result.attempts, 1);
    let config = result.config.as_ref().unwrap();
    assert_eq!(config.hostname.as_deref(), Some("fake-host"));
    assert_eq!(
        result.dirs.as_ref().unwrap().project_dir,
        format!("{}/builds/group/project", fixture.root().display())
    );
}

#[test]
fn job_log_routes_stage_output() {
    let fixture = Fixture::new();
    let result = fixture
        .harness()
        .run_job(&Job::new(12).build_script(["echo building"]));
    let log = result.job_log_text();

    // stdout and stderr are read from two pipes, so their relative order
    // within one stage is not fixed.
    assert!(log.starts_with("fake-driver: config stage\n"), "{log}");
    assert!(log.contains("fake-driver: prepare stage\n"), "{log}");
    assert!(log.contains("fake-driver: prepare diagnostics\n"), "{log}");
    assert!(log.contains("Running on "), "{log}");
    assert!(log.contains(" via fake-host...\n"), "{log}");
    assert!(log.contains("$ echo building\x1b[0;m\nbuilding\n"), "{log}");
    assert!(!log.contains("cleanup stage"), "{log}");
    let cleanup = result.stage("cleanup").unwrap();
    assert_eq!(cleanup.stdout_text(), "fake-driver: cleanup stage\n");
    assert_eq!(cleanup.stderr_text(), "fake-driver: cleanup diagnostics\n");
    assert_eq!(result.cleanup_log, cleanup.combined);
}

#[test]
fn env_layers_and_precedence() {
    let fixture = Fixture::new();
    let config_json = format!(
        r#"{{"builds_dir":"{root}/builds","cache_dir":"{root}/cache",
            "job_env":{{"FAKE_JOB_ENV":"from-config","HOST_ONLY":"from-job-env",
                        "JOB_RESPONSE_FILE":"/shadowed","CUSTOM_ENV_CI_JOB_ID":"shadow"}}}}"#,
        root = fixture.root().display()
    );
    let driver = fixture
        .driver()
        .env("FAKE_CONFIG_JSON", config_json)
        .env("HOST_ONLY", "from-host")
        .env("BUILD_FAILURE_EXIT_CODE", "9");
    let job = Job::new(21)
        .image(Image::new("alpine:3.20"))
        .var("USER_VAR", "user-value")
        .build_script(["true"]);
    let result = fixture.harness_with(driver).run_job(&job);
    assert_eq!(result.outcome, Outcome::Success);

    let config = fixture.driver_env("config");
    assert_eq!(env_value(&config, "HOST_ONLY").unwrap(), "from-host");
    assert!(env_value(&config, "FAKE_JOB_ENV").is_none());
    assert_eq!(env_value(&config, "CUSTOM_ENV_CI_BUILDS_DIR").unwrap(), "");
    assert_eq!(env_value(&config, "CUSTOM_ENV_CI_PROJECT_DIR").unwrap(), "");
    assert_eq!(env_value(&config, "BUILD_FAILURE_EXIT_CODE").unwrap(), "1");

    for label in ["prepare", "build_script", "cleanup"] {
        let env = fixture.driver_env(label);
        assert_eq!(
            env_value(&env, "FAKE_JOB_ENV").unwrap(),
            "from-config",
            "{label}"
        );
        assert_eq!(
            env_value(&env, "HOST_ONLY").unwrap(),
            "from-job-env",
            "{label}"
        );
        assert_eq!(
            env_value(&env, "JOB_RESPONSE_FILE").unwrap(),
            "/shadowed",
            "{label}"
        );
        assert_eq!(
            env_value(&env, "CUSTOM_ENV_CI_JOB_ID").unwrap(),
            "21",
            "{label}"
        );
        assert_eq!(
            env_value(&env, "BUILD_FAILURE_EXIT_CODE").unwrap(),
            "1",
            "{label}"
        );
        assert_eq!(
            env_value(&env, "SYSTEM_FAILURE_EXIT_CODE").unwrap(),
            "2",
            "{label}"
        );
        assert_eq!(
            env_value(&env, "CUSTOM_ENV_USER_VAR").unwrap(),
            "user-value",
            "{label}"
        );
        assert_eq!(
            env_value(&env, "CUSTOM_ENV_CI_JOB_IMAGE").unwrap(),
            "alpine:3.20",
            "{label}"
        );
        assert_eq!(
            env_value(&env, "CUSTOM_ENV_CI_JOB_SERVICES").unwrap(),
            "",
            "{label}"
        );
        assert_eq!(
            env_value(&env, "CUSTOM_ENV_CI_SHARED_ENVIRONMENT").unwrap(),
            "true",
            "{label}"
        );
        assert_eq!(
            env_value(&env, "CUSTOM_ENV_CI_PROJECT_DIR").unwrap(),
            OsString::from(format!("{}/builds/group/project", fixture.root().display()))
                .as_os_str(),
            "{label}"
        );
    }

    let prepare = fixture.driver_env("prepare");
    let temp_dir = env_value(&prepare, "TMPDIR").unwrap();
    assert!(Path::new(temp_dir)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("custom-executor"));
    assert_eq!(
        env_value(&prepare, "BUILD_EXIT_CODE_FILE").unwrap(),
        Path::new(temp_dir).join("build_exit_code").as_os_str()
    );
    assert!(
        !Path::new(temp_dir).exists(),
        "the temp dir is removed after cleanup"
    );
    assert_eq!(
        result.stage("prepare").unwrap().env_value("TMPDIR"),
        Some(temp_dir),
        "the record holds the environment the driver received"
    );
}

#[test]
fn job_image_variable_absent_without_image() {
    let fixture = Fixture::new();
    let result = fixture.harness().run_job(&Job::new(22));
    assert_eq!(result.outcome, Outcome::Success);
    let env = fixture.driver_env("prepare");
    assert!(env_value(&env, "CUSTOM_ENV_CI_JOB_IMAGE").is_none());
}

#[test]
fn response_file_and_script_paths() {
    let fixture = Fixture::new();
    let job = Job::new(23)
        .image(
            Image::new("debian:12")
                .platform("linux/riscv64")
                .pull_policy(["if-not-present"]),
        )
        .build_script(["true"]);
    let result = fixture.harness().run_job(&job);
    assert_eq!(result.outcome, Outcome::Success);

    assert_eq!(text(&fixture.read("response.mode")).trim(), "600");
    let response: serde_json::Value =
        serde_json::from_slice(&fixture.read("response.json")).unwrap();
    assert_eq!(response["id"], 23);
    assert_eq!(response["image"]["name"], "debian:12");
    assert_eq!(
        response["image"]["executor_opts"]["docker"]["platform"],
        "linux/riscv64"
    );
    assert_eq!(response["image"]["pull_policy"][0], "if-not-present");
    assert_eq!(response["runner_info"]["timeout"], 3600);

    let script_path = PathBuf::from(text(&fixture.read("script-path.build_script")).trim());
    assert_eq!(script_path.file_name().unwrap(), "script");
    let script_dir = script_path.parent().unwrap();
    assert!(script_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("script"));
    let temp_dir = fixture.driver_env("build_script")[OsStr::new("TMPDIR")].clone();
    assert_eq!(script_dir.parent().unwrap().as_os_str(), temp_dir);
    assert_eq!(
        text(&fixture.read("script-dir-mode.build_script")).trim(),
        "700"
    );
}

#[test]
fn variables_round_trip_through_script() {
    let fixture = Fixture::new();
    let mut tricky =
        b"it's \"quoted\" $HOME `id` \\back\\slash\nline2\ttab \xc3\xa9\xe2\x9c\x93 \x01 end\n"
            .to_vec();
    tricky.push(0xff);
    let tricky = OsString::from_vec(tricky);
    let file_content = OsString::from("-----BEGIN-----\n$NOT_EXPANDED 'x'\n-----END-----\n");
    let job = Job::new(7)
        .variable(Variable::new("TRICKY", tricky.clone()).raw())
        .variable(
            Variable::new("CERT_FILE", file_content.clone())
                .file()
                .raw(),
        )
        .var("EXPANDED", "job-$CI_JOB_ID-$$")
        .build_script([
            r#"printf '%s' "$TRICKY" > "$FAKE_OUT/tricky.out""#,
            r#"cp "$CERT_FILE" "$FAKE_OUT/cert.out""#,
            r#"printf '%s' "$CERT_FILE" > "$FAKE_OUT/cert-path.out""#,
            r#"printf '%s' "$EXPANDED" > "$FAKE_OUT/expanded.out""#,
        ])
        .variable(Variable::new(
            "FAKE_OUT",
            fixture.root().as_os_str().to_owned(),
        ));
    let result = fixture.harness().run_job(&job);
    assert_eq!(
        result.outcome,
        Outcome::Success,
        "{}",
        result.job_log_text()
    );

    assert_eq!(fixture.read("tricky.out"), tricky.as_bytes());
    assert_eq!(fixture.read("cert.out"), file_content.as_bytes());
    assert_eq!(
        text(&fixture.read("cert-path.out")),
        format!(
            "{}/builds/group/project.tmp/CERT_FILE",
            fixture.root().display()
        )
    );
    assert_eq!(text(&fixture.read("expanded.out")), "job-7-$");

    let env = fixture.driver_env("build_script");
    assert_eq!(
        env_value(&env, "CUSTOM_ENV_TRICKY").unwrap(),
        tricky.as_os_str()
    );
    assert_eq!(
        env_value(&env, "CUSTOM_ENV_CERT_FILE").unwrap(),
        file_content.as_os_str()
    );
    assert_eq!(env_value(&env, "CUSTOM_ENV_EXPANDED").unwrap(), "job-7-$");
}

#[test]
fn exit_42_is_build_failure() {
    let fixture = Fixture::new();
    let job = Job::new(31)
        .build_script(["echo before", "exit 42", "echo never"])
        .stage("step_release", ["echo release"])
        .after_script([r#"echo "status=$CI_JOB_STATUS""#]);
    let result = fixture.harness().run_job(&job);

    assert_eq!(
        result.outcome,
        Outcome::BuildFailure {
            stage: "build_script".to_string(),
            exit_code: 42,
            message: "exit status 42".to_string(),
        }
    );
    assert_eq!(result.outcome.summary(), "Job failed: exit status 42");
    let log = result.job_log_text();
    assert!(log.contains("before\n"), "{log}");
    assert!(!log.contains("never\n"), "{log}");
    assert!(log.contains("status=failed\n"), "{log}");
    assert!(!fixture.calls().contains(&"step_release".to_string()));
    assert_eq!(
        fixture.calls().last().map(String::as_str),
        Some("cleanup"),
        "cleanup runs last"
    );
    assert!(fixture
        .calls()
        .contains(&"cleanup_file_variables".to_string()));
}

#[test]
fn missing_code_file_means_exit_code_1() {
    let fixture = Fixture::new();
    let driver = fixture
        .driver()
        .env("FAKE_CODE_FILE_STAGE", "build_script")
        .env("FAKE_RUN_EXIT_STAGE", "build_script")
        .env("FAKE_RUN_EXIT", "1");
    let result = fixture
        .harness_with(driver)
        .run_job(&Job::new(32).build_script(["true"]));
    assert!(
        matches!(result.outcome, Outcome::BuildFailure { exit_code: 1, .. }),
        "{:?}",
        result.outcome
    );
}

#[test]
fn exit_2_is_system_failure() {
    let fixture = Fixture::new();
    let driver = fixture
        .driver()
        .env("FAKE_RUN_EXIT_STAGE", "build_script")
        .env("FAKE_RUN_EXIT", "2");
    let job = Job::new(33)
        .build_script(["true"])
        .after_script(["echo after"]);
    let result = fixture.harness_with(driver).run_job(&job);

    assert_eq!(
        result.outcome,
        Outcome::SystemFailure {
            stage: "build_script".to_string(),
            message: "exit status 2".to_string(),
        }
    );
    assert_eq!(result.outcome.exit_code(), 2);
    assert!(fixture.calls().contains(&"after_script".to_string()));
}

#[test]
fn unknown_exit_code_is_system_failure() {
    let fixture = Fixture::new();
    let driver = fixture
        .driver()
        .env("FAKE_RUN_EXIT_STAGE", "build_script")
        .env("FAKE_RUN_EXIT", "105");
    let result = fixture
        .harness_with(driver)
        .run_job(&Job::new(34).build_script(["true"]));
    let Outcome::SystemFailure { message, .. } = &result.outcome else {
        panic!("{:?}", result.outcome);
    };
    assert!(
        message.starts_with("unknown Custom executor executable exit code 105;"),
        "{message}"
    );
}

#[test]
fn unparsable_code_file_is_system_failure() {
    let fixture = Fixture::new();
    let driver = fixture
        .driver()
        .env("FAKE_CODE_FILE_STAGE", "build_script")
        .env("FAKE_CODE_FILE_CONTENT", "42 ");
    let result = fixture
        .harness_with(driver)
        .run_job(&Job::new(35).build_script(["true"]));
    assert_eq!(
        result.outcome,
        Outcome::SystemFailure {
            stage: "build_script".to_string(),
            message: "unknown Custom executor executable exit code 2; executable execution terminated with: exit status 1"
                .to_string(),
        }
    );
}

#[test]
fn prepare_retries_run_cleanup_between_attempts() {
    let fixture = Fixture::new();
    let driver = fixture.driver().env("FAKE_PREPARE_EXITS", "2 3 0");
    let result = fixture
        .harness_with(driver)
        .run_job(&Job::new(41).build_script(["true"]));

    assert_eq!(result.outcome, Outcome::Success);
    assert_eq!(result.attempts, 3);
    assert_eq!(
        fixture.calls()[..8],
        ["config", "prepare", "cleanup", "config", "prepare", "cleanup", "config", "prepare"]
    );
    assert_eq!(fixture.calls().last().map(String::as_str), Some("cleanup"));

    let temp_dirs: Vec<&OsStr> = result
        .stages_named("prepare")
        .map(|record| record.env_value("TMPDIR").unwrap())
        .collect();
    assert_eq!(temp_dirs.len(), 3);
    assert_ne!(
        temp_dirs[0], temp_dirs[1],
        "each attempt gets a new temp dir"
    );
    assert_ne!(
        temp_dirs[1], temp_dirs[2],
        "each attempt gets a new temp dir"
    );

    let retried_config = &result.stages_named("config").nth(1).unwrap();
    assert_ne!(
        retried_config
            .env_value("CUSTOM_ENV_CI_PROJECT_DIR")
            .unwrap(),
        "",
        "a retried config stage sees the directories of the earlier attempt"
    );
}

#[test]
fn prepare_failures_exhaust_three_attempts() {
    let fixture = Fixture::new();
    let driver = fixture.driver().env("FAKE_PREPARE_EXITS", "2");
    let result = fixture.harness_with(driver).run_job(&Job::new(42));

    assert_eq!(
        result.outcome,
        Outcome::SystemFailure {
            stage: "prepare".to_string(),
            message: "exit status 2".to_string(),
        }
    );
    assert_eq!(result.attempts, 3);
    assert_eq!(
        fixture
            .calls()
            .iter()
            .filter(|call| *call == "cleanup")
            .count(),
        3
    );
}

#[test]
fn prepare_build_failure_is_not_retried() {
    let fixture = Fixture::new();
    let driver = fixture.driver().env("FAKE_PREPARE_EXITS", "1");
    let result = fixture.harness_with(driver).run_job(&Job::new(43));

    assert!(
        matches!(&result.outcome, Outcome::BuildFailure { stage, exit_code: 1, .. } if stage == "prepare"),
        "{:?}",
        result.outcome
    );
    assert_eq!(fixture.calls(), ["config", "prepare", "cleanup"]);
}

#[test]
fn config_without_builds_dir_is_configuration_error() {
    let fixture = Fixture::new();
    let driver = fixture
        .driver()
        .env("FAKE_CONFIG_JSON", r#"{"cache_dir":"/cache"}"#);
    let result = fixture.harness_with(driver).run_job(&Job::new(44));

    assert_eq!(
        result.outcome,
        Outcome::ConfigurationError {
            stage: "config".to_string(),
            message: "the builds_dir is not configured".to_string(),
        }
    );
    assert_eq!(fixture.calls(), ["config", "cleanup"]);
}

#[test]
fn malformed_config_json_is_retried() {
    let fixture = Fixture::new();
    let driver = fixture.driver().env("FAKE_CONFIG_JSON", "not json");
    let result = fixture.harness_with(driver).run_job(&Job::new(45));

    let Outcome::SystemFailure { stage, message } = &result.outcome else {
        panic!("{:?}", result.outcome);
    };
    assert_eq!(stage, "config");
    assert!(
        message.starts_with("error while parsing JSON output: "),
        "{message}"
    );
    assert_eq!(
        fixture.calls(),
        ["config", "cleanup", "config", "cleanup", "config", "cleanup"]
    );
}

#[test]
fn stdout_and_stderr_kept_apart() {
    let fixture = Fixture::new();
    let job = Job::new(51).raw_stage(
        "build_script",
        &b"printf 'out-1\\n'; printf 'err-1\\n' >&2; printf 'bin\\377\\001\\n'; printf 'err-2' >&2\n"[..],
    );
    let result = fixture.harness().run_job(&job);
    assert_eq!(result.outcome, Outcome::Success);

    let record = result.stage("build_script").unwrap();
    assert_eq!(record.stdout, b"out-1\nbin\xff\x01\n");
    assert_eq!(record.stderr, b"err-1\nerr-2");
    assert_eq!(
        record.combined.len(),
        record.stdout.len() + record.stderr.len()
    );
    assert_eq!(
        record.stdout_summary,
        Some(StreamSummary::of(b"out-1\nbin\xff\x01\n"))
    );
}

#[test]
fn stage_waits_for_pipe_eof() {
    let fixture = Fixture::new();
    let job = Job::new(57).raw_stage("build_script", &b"sleep 1 &\necho started\n"[..]);
    let result = fixture.harness().run_job(&job);
    assert_eq!(result.outcome, Outcome::Success);

    let record = result.stage("build_script").unwrap();
    assert_eq!(record.stdout, b"started\n");
    let delay = record.pipe_eof_delay.unwrap();
    assert!(delay >= Duration::from_millis(700), "{delay:?}");
}

#[test]
fn digest_mode_passes_large_output() {
    const SIZE: usize = 32 * 1024 * 1024;
    let fixture = Fixture::new();
    let harness = fixture.harness().digest_stdout("build_script");
    let job = Job::new(52).raw_stage(
        "build_script",
        format!("head -c {SIZE} /dev/zero; echo done >&2\n").into_bytes(),
    );
    let result = harness.run_job(&job);
    assert_eq!(result.outcome, Outcome::Success);

    let record = result.stage("build_script").unwrap();
    assert!(record.stdout.is_empty());
    assert_eq!(record.stderr, b"done\n");
    assert_eq!(
        record.stdout_summary,
        Some(StreamSummary::of(&vec![0u8; SIZE]))
    );
    assert!(
        result.job_log.len() < 1024 * 1024,
        "digested output stays out of the job log"
    );
}

#[test]
fn get_sources_failure_skips_script_and_after_script() {
    let fixture = Fixture::new();
    let job = Job::new(53)
        .stage("get_sources", ["exit 3"])
        .build_script(["echo build"])
        .after_script(["echo after"])
        .stage("upload_artifacts_on_failure", ["echo upload"]);
    let result = fixture.harness().run_job(&job);

    assert!(
        matches!(&result.outcome, Outcome::BuildFailure { stage, exit_code: 3, .. } if stage == "get_sources"),
        "{:?}",
        result.outcome
    );
    assert_eq!(
        fixture.calls(),
        [
            "config",
            "prepare",
            "prepare_script",
            "get_sources",
            "upload_artifacts_on_failure",
            "cleanup_file_variables",
            "cleanup"
        ]
    );
}

#[test]
fn prepare_script_failure_ends_job_at_once() {
    let fixture = Fixture::new();
    let job = Job::new(54)
        .stage("prepare_script", ["exit 4"])
        .build_script(["true"]);
    let result = fixture.harness().run_job(&job);

    let Outcome::BuildFailure {
        stage,
        exit_code,
        message,
    } = &result.outcome
    else {
        panic!("{:?}", result.outcome);
    };
    assert_eq!((stage.as_str(), *exit_code), ("prepare_script", 4));
    assert!(
        message.starts_with("prepare environment: exit status 4. Check "),
        "{message}"
    );
    assert_eq!(
        fixture.calls(),
        ["config", "prepare", "prepare_script", "cleanup"]
    );
}

#[test]
fn after_script_failure_is_ignored() {
    let fixture = Fixture::new();
    let job = Job::new(55).build_script(["true"]).after_script(["exit 9"]);
    let result = fixture.harness().run_job(&job);

    assert_eq!(result.outcome, Outcome::Success);
    assert_eq!(result.warnings.len(), 1, "{:?}", result.warnings);
    assert!(result.warnings[0].starts_with("after_script failed, but job will continue unaffected"));
}

#[test]
fn unknown_stage_names_are_sent() {
    let fixture = Fixture::new();
    let job = Job::new(56)
        .stage("step_release", ["echo release"])
        .stage("future_stage", ["echo future"])
        .build_script(["true"]);
    let result = fixture.harness().run_job(&job);

    assert_eq!(result.outcome, Outcome::Success);
    assert!(result.job_log_text().contains("future\n"));
    let order: Vec<&str> = result.stage_names().into_iter().skip(4).take(3).collect();
    assert_eq!(order, ["step_release", "future_stage", "build_script"]);
}

#[test]
fn cancel_sends_sigterm_to_stage() {
    let fixture = Fixture::new();
    let harness = fixture.harness();
    let job = Job::new(61);
    let mut attempt = Attempt::new(&harness, &job, 1, None).unwrap();
    let (_, configured) = attempt.configure(&StopConditions::default());
    configured.unwrap();
    let get_sources = SubStage::commands("get_sources", Vec::<String>::new());
    let sources = attempt.run_stage(&get_sources, &StopConditions::default());
    assert_eq!(sources.result, Ok(()), "{}", text(&sources.combined));

    let token = CancelToken::new();
    token.cancel_after(Duration::from_millis(300));
    let stop = StopConditions {
        cancel: Some(token),
        kill: harness.kill,
        ..StopConditions::default()
    };
    let started = Instant::now();
    let stage = SubStage::commands("build_script", ["sleep 30"]);
    let record = attempt.run_stage(&stage, &stop);

    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(record.stop_reason, Some(StopReason::Cancelled));
    assert_eq!(record.signals.len(), 1, "{:?}", record.signals);
    assert_eq!(record.signals[0].signal, 15);
    assert_eq!(
        record.end,
        ProcessEnd::Signaled {
            signal: 15,
            core_dumped: false
        }
    );
    assert!(matches!(record.result, Err(StageError::System { .. })));

    let cleanup = attempt.cleanup().unwrap();
    assert_eq!(cleanup.env_value("FAKE_JOB_ENV").unwrap(), "from-config");
    assert_eq!(
        cleanup.env_value("TMPDIR").unwrap(),
        attempt.temp_dir().as_os_str()
    );
    let temp_dir = attempt.temp_dir().to_path_buf();
    attempt.close().unwrap();
    assert!(!temp_dir.exists());
}

#[test]
fn cancel_during_script_runs_after_script() {
    let fixture = Fixture::new();
    let job = Job::new(62)
        .build_script(["sleep 30"])
        .after_script([r#"echo "status=$CI_JOB_STATUS""#]);
    let started = Instant::now();
    let result = fixture.harness().run_job_with(
        &job,
        RunOptions {
            cancel: Some(CancelAt {
                stage: "build_script".to_string(),
                after: Duration::from_millis(300),
            }),
            ..RunOptions::default()
        },
    );

    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        result.outcome,
        Outcome::Canceled {
            stage: "build_script".to_string()
        }
    );
    assert!(result.job_log_text().contains("status=canceled\n"));
    assert_eq!(fixture.calls().last().map(String::as_str), Some("cleanup"));
}

#[test]
fn job_timeout_skips_to_cleanup() {
    let fixture = Fixture::new();
    let job = Job::new(63)
        .timeout(Duration::from_secs(2))
        .build_script(["sleep 30"]);
    let result = fixture.harness().run_job(&job);

    assert_eq!(
        result.outcome,
        Outcome::TimedOut {
            stage: "build_script".to_string(),
            timeout: Duration::from_secs(2),
        }
    );
    assert_eq!(
        fixture.calls()[fixture.calls().len() - 2..],
        ["build_script", "cleanup"]
    );
}

#[test]
fn skipped_stages_are_not_called() {
    let fixture = Fixture::new();
    let driver = fixture
        .driver()
        .skip_stage(StageKind::Prepare)
        .skip_stage(StageKind::Cleanup);
    let result = fixture
        .harness_with(driver)
        .run_job(&Job::new(64).without_cleanup_file_variables());

    assert_eq!(result.outcome, Outcome::Success);
    assert_eq!(fixture.calls(), ["config", "prepare_script", "get_sources"]);
}

#[test]
fn leading_args_precede_stage_word() {
    let fixture = Fixture::new();
    let extra = fixture.root().join("extra.sh");
    fs::write(
        &extra,
        format!("#!/usr/bin/env bash\n[ \"$1\" = --config ] && [ \"$2\" = settings.toml ] || exit 2\nshift 2\nexec {} \"$@\"\n", fake_driver().display()),
    )
    .unwrap();
    fs::set_permissions(&extra, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let driver = DriverCommand::new(&extra)
        .env("FAKE_ROOT", fixture.root())
        .leading_args(["--config", "settings.toml"]);
    let result = fixture
        .harness_with(driver)
        .run_job(&Job::new(65).build_script(["true"]));

    assert_eq!(result.outcome, Outcome::Success, "{:?}", result.outcome);
    let argv = &result.stage("build_script").unwrap().argv;
    assert_eq!(
        argv[1..4],
        [
            OsString::from("--config"),
            "settings.toml".into(),
            "run".into()
        ]
    );
    assert_eq!(argv.last().unwrap(), "build_script");
}

#[test]
fn run_job_cli_prints_job_log() {
    let fixture = Fixture::new();
    let run = |script: &str| {
        Command::new(env!("CARGO_BIN_EXE_run-job"))
            .env("FAKE_ROOT", fixture.root())
            .args([
                "--driver",
                fake_driver().to_str().unwrap(),
                "--image",
                "alpine:3.20",
            ])
            .args(["--platform", "linux/arm64", "--retry-delay", "0"])
            .args([
                "--script",
                "echo hello from $GREETING_TARGET",
                "--script",
                script,
            ])
            .args(["--var", "GREETING_TARGET=cli"])
            .output()
            .unwrap()
    };

    let success = run("true");
    let stdout = text(&success.stdout);
    assert_eq!(success.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.starts_with("Preparing the \"custom\" executor\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Using Custom executor with driver fake-driver 0.0.1...\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Executing \"step_script\" stage of the job script\n"),
        "{stdout}"
    );
    assert!(stdout.contains("hello from cli\n"), "{stdout}");
    assert!(stdout.ends_with("\nJob succeeded\n"), "{stdout}");

    let failure = run("exit 42");
    let stdout = text(&failure.stdout);
    assert_eq!(failure.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.ends_with("\nERROR: Job failed: exit status 42\n"),
        "{stdout}"
    );
}
