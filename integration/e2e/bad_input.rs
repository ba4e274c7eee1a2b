//! A corpus of bad input: broken settings, missing or odd environment, unusable scripts and
//! odd output. Each case checks the driver's exit code (0, 1 for a build failure, 2 for a
//! system failure), a message that names the value, and that nothing panicked.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::process::Command;

use cross_executor_integration::StageKind;

use crate::support::*;

/// One call of the driver and what it must do.
struct Case {
    name: &'static str,
    args: Vec<String>,
    env: Vec<(OsString, OsString)>,
    exit_code: i32,
    /// Text the standard error (or, for exit code 0, standard output) must contain.
    needle: &'static str,
}

fn base_env(job_id: u64) -> Vec<(OsString, OsString)> {
    [
        ("CUSTOM_ENV_CI_JOB_ID", job_id.to_string()),
        ("CUSTOM_ENV_CI_PROJECT_ID", "4242".to_owned()),
        ("CUSTOM_ENV_CI_RUNNER_SHORT_TOKEN", RUNNER_TOKEN.to_owned()),
        ("CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID", "0".to_owned()),
        ("CUSTOM_ENV_CI_JOB_IMAGE", BUSYBOX_ARMHF.to_owned()),
        ("CROSS_EXECUTOR_CONFIG", SETTINGS.to_owned()),
        ("BUILD_FAILURE_EXIT_CODE", "1".to_owned()),
        ("SYSTEM_FAILURE_EXIT_CODE", "2".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.into(), value.into()))
    .collect()
}

fn with(
    mut env: Vec<(OsString, OsString)>,
    key: &str,
    value: impl Into<OsString>,
) -> Vec<(OsString, OsString)> {
    env.retain(|(existing, _)| existing != key);
    env.push((key.into(), value.into()));
    env
}

fn without(mut env: Vec<(OsString, OsString)>, key: &str) -> Vec<(OsString, OsString)> {
    env.retain(|(existing, _)| existing != key);
    env
}

fn run_case(case: &Case) {
    let output = Command::new(DRIVER)
        .args(&case.args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(case.env.iter().map(|(key, value)| (key, value)))
        .output()
        .expect("the driver runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(case.exit_code),
        "{}: stdout {stdout}\nstderr {stderr}",
        case.name
    );
    assert!(!stderr.contains("panicked"), "{}: {stderr}", case.name);
    let text = if case.exit_code == 0 {
        &stdout
    } else {
        &stderr
    };
    assert!(
        text.contains(case.needle),
        "{}: expected `{}` in {text}",
        case.name,
        case.needle
    );
}

fn settings_case(
    name: &'static str,
    text: &str,
    needle: &'static str,
) -> (Case, tempfile::NamedTempFile) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    let env = with(
        base_env(unique_job_id()),
        "CROSS_EXECUTOR_CONFIG",
        file.path(),
    );
    let case = Case {
        name,
        args: vec!["config".into()],
        env,
        exit_code: 2,
        needle,
    };
    (case, file)
}

#[test]
fn bad_settings_fail_config() {
    let cases = [
        (
            "unknown key",
            "build_dir = \"/b\"\n",
            "unknown field `build_dir`",
        ),
        ("syntax error", "builds_dir = \n", "invalid settings file"),
        ("wrong type", "stop_timeout = \"ten\"\n", "stop_timeout"),
        (
            "relative builds_dir",
            "builds_dir = \"builds\"\n",
            "`builds_dir`",
        ),
        (
            "same dirs",
            "builds_dir = \"/x\"\ncache_dir = \"/x\"\n",
            "must differ",
        ),
        ("pull policy", "pull_policy = \"sometimes\"\n", "sometimes"),
        ("memory size", "memory = \"lots\"\n", "`memory` `lots`"),
        (
            "swap below memory",
            "memory = \"1g\"\nmemory_swap = \"1m\"\n",
            "`memory_swap`",
        ),
        ("swap alone", "memory_swap = \"1g\"\n", "needs `memory`"),
        ("negative cpus", "cpus = -2.0\n", "`cpus`"),
        ("ulimit form", "[ulimits]\nnofile = \"many\"\n", "`ulimits`"),
        (
            "volume form",
            "volumes = [\"relative:/x\"]\n",
            "`volumes` entry `relative:/x`",
        ),
        (
            "device form",
            "devices = [\"fuse\"]\n",
            "`devices` entry `fuse`",
        ),
        (
            "image glob",
            "allowed_images = [\"a[\"]\n",
            "image pattern `a[`",
        ),
        (
            "image platform",
            "[[image_platforms]]\nimage = \"x\"\nplatform = \"linux/z80\"\n",
            "z80",
        ),
        (
            "qemu_cpu key",
            "[qemu_cpu]\n\"plan9/arm\" = \"arm1176\"\n",
            "plan9/arm",
        ),
        ("architectures", "architectures = [\"vax\"]\n", "vax"),
        (
            "auth config",
            "docker_auth_config = \"{\"\n",
            "`docker_auth_config`",
        ),
        (
            "environment form",
            "environment = [\"=x\"]\n",
            "`environment` entry `=x`",
        ),
    ];
    for (name, text, needle) in cases {
        let (case, _file) = settings_case(name, text, needle);
        run_case(&case);
    }
}

#[test]
fn bad_environment_is_system_failure() {
    let job_id = unique_job_id();
    let directory = tempfile::tempdir().unwrap();
    let broken_payload = directory.path().join("response.json");
    std::fs::write(&broken_payload, b"{\"id\": \"not a number\"").unwrap();
    let odd_payload = directory.path().join("odd.json");
    std::fs::write(
        &odd_payload,
        format!(
            r#"{{"id": {job_id}, "image": {{"name": "{BUSYBOX_ARMHF}", "pull_policy": ["sometimes"]}}}}"#
        ),
    )
    .unwrap();

    let cases = [
        Case {
            name: "settings file missing",
            args: vec!["config".into()],
            env: with(
                base_env(job_id),
                "CROSS_EXECUTOR_CONFIG",
                "/nonexistent/settings.toml",
            ),
            exit_code: 2,
            needle: "/nonexistent/settings.toml",
        },
        Case {
            name: "job id missing",
            args: vec!["config".into()],
            env: without(base_env(job_id), "CUSTOM_ENV_CI_JOB_ID"),
            exit_code: 2,
            needle: "job id is missing",
        },
        Case {
            name: "payload missing",
            args: vec!["config".into()],
            env: with(
                base_env(job_id),
                "JOB_RESPONSE_FILE",
                "/nonexistent/response.json",
            ),
            exit_code: 2,
            needle: "/nonexistent/response.json",
        },
        Case {
            name: "payload malformed",
            args: vec!["config".into()],
            env: with(base_env(job_id), "JOB_RESPONSE_FILE", &broken_payload),
            exit_code: 2,
            needle: "invalid job payload",
        },
        Case {
            name: "job pull policy",
            args: vec!["prepare".into()],
            env: with(base_env(job_id), "JOB_RESPONSE_FILE", &odd_payload),
            exit_code: 2,
            needle: "invalid pull policy `sometimes`",
        },
        Case {
            name: "invalid image reference",
            args: vec!["prepare".into()],
            env: with(
                base_env(job_id),
                "CUSTOM_ENV_CI_JOB_IMAGE",
                "Not A//Valid:Image",
            ),
            exit_code: 2,
            needle: "Not A//Valid:Image",
        },
        Case {
            name: "run without container",
            args: vec!["run".into(), "/dev/null".into(), "build_script".into()],
            env: base_env(job_id),
            exit_code: 2,
            needle: "does not exist",
        },
        Case {
            name: "cleanup without container",
            args: vec!["cleanup".into()],
            env: base_env(job_id),
            exit_code: 0,
            needle: "",
        },
        Case {
            name: "unknown subcommand",
            args: vec!["deploy".into()],
            env: base_env(job_id),
            exit_code: 2,
            needle: "deploy",
        },
    ];
    for case in &cases {
        run_case(case);
    }
}

#[test]
fn odd_values_still_work() {
    let odd_id = format!("{}ü $`'\"/\\{}", unique_job_id(), "x".repeat(300));
    let huge = "v".repeat(120 * 1024);
    let non_utf8 = OsString::from_vec(vec![b'a', 0xff, 0xfe, b'z']);
    let cases = [
        Case {
            name: "odd job id and project path",
            args: vec!["config".into()],
            env: with(
                with(base_env(0), "CUSTOM_ENV_CI_JOB_ID", odd_id.as_str()),
                "CUSTOM_ENV_CI_PROJECT_PATH",
                "grüppe/sub group/../pröject",
            ),
            exit_code: 0,
            needle: "\"hostname\":\"cross-executor-",
        },
        Case {
            name: "huge variable",
            args: vec!["config".into()],
            env: with(base_env(unique_job_id()), "CUSTOM_ENV_HUGE", huge.as_str()),
            exit_code: 0,
            needle: "\"builds_dir\"",
        },
        Case {
            name: "non-UTF-8 variable",
            args: vec!["config".into()],
            env: with(
                base_env(unique_job_id()),
                "CUSTOM_ENV_BYTES",
                non_utf8.clone(),
            ),
            exit_code: 0,
            needle: "\"builds_dir\"",
        },
        Case {
            name: "non-UTF-8 job id",
            args: vec!["config".into()],
            env: with(base_env(0), "CUSTOM_ENV_CI_JOB_ID", non_utf8),
            exit_code: 0,
            needle: "\"hostname\":\"cross-executor-",
        },
        Case {
            name: "garbage exit code variables",
            args: vec!["config".into()],
            env: with(base_env(unique_job_id()), "SYSTEM_FAILURE_EXIT_CODE", "two"),
            exit_code: 0,
            needle: "\"shell\":\"bash\"",
        },
    ];
    for case in &cases {
        run_case(case);
    }
}

#[test]
fn bad_scripts_in_prepared_container() {
    let harness = harness();
    let job = job(BUSYBOX_ARMHF).build_script(["true"]);
    let mut attempt = prepared_attempt(&harness, &job);
    let env = attempt.environment(StageKind::Run);

    let directory = tempfile::tempdir().unwrap();
    let script = |name: &str, bytes: &[u8]| {
        let path = directory.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_string_lossy().into_owned()
    };
    let run = |path: String, stage: &str| vec!["run".to_owned(), path, stage.to_owned()];
    let cases = [
        Case {
            name: "missing script",
            args: run("/nonexistent/script".into(), "build_script"),
            env: env.clone(),
            exit_code: 2,
            needle: "/nonexistent/script",
        },
        Case {
            name: "unreadable script",
            args: run(
                directory.path().to_string_lossy().into_owned(),
                "build_script",
            ),
            env: env.clone(),
            exit_code: 2,
            needle: "failed to read the script",
        },
        Case {
            name: "empty script",
            args: run(script("empty", b""), "build_script"),
            env: env.clone(),
            exit_code: 0,
            needle: "",
        },
        Case {
            name: "CRLF script",
            args: run(script("crlf", b"echo crlf\r\nexit 5\r\n"), "build_script"),
            env: env.clone(),
            exit_code: 1,
            needle: "",
        },
        Case {
            name: "NUL bytes in output",
            args: run(script("nul", b"printf 'a\\000b\\n'"), "build_script"),
            env: env.clone(),
            exit_code: 0,
            needle: "a\0b",
        },
        Case {
            name: "odd stage name",
            args: run(
                script("odd-stage", b"echo odd-stage-ok"),
                "step_ünïcode stage/../x",
            ),
            env: env.clone(),
            exit_code: 0,
            needle: "odd-stage-ok",
        },
    ];
    for case in &cases {
        run_case(case);
    }
    attempt.cleanup();
    assert!(leftovers(job.id).is_empty());
}
