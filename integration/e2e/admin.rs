//! The admin commands against the real kernel interface and daemon: doctor, binfmt
//! registration and image import.

use std::process::{Command, Output};

use cross_executor_integration::{DriverCommand, Image};

use crate::support::*;

fn driver_command(args: &[&str]) -> Output {
    Command::new(DRIVER)
        .args(args)
        .output()
        .expect("the driver runs")
}

fn settings_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

fn doctor_json(args: &[&str]) -> (bool, serde_json::Value) {
    let output = driver_command(args);
    let checks = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "doctor printed no JSON ({error}): {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.success(), checks)
}

fn find_check<'a>(checks: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    checks
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == name)
        .unwrap_or_else(|| panic!("no check `{name}` in {checks}"))
}

#[test]
fn doctor_reports_both_binfmt_modes() {
    let settings = settings_file("architectures = [\"arm\", \"aarch64\"]\n");
    let config = settings.path().to_str().unwrap();
    let (healthy, checks) = doctor_json(&["--config", config, "doctor", "--json"]);
    assert!(healthy, "{checks}");

    assert_eq!(find_check(&checks, "docker")["status"], "ok");
    let arm = find_check(&checks, "arch arm");
    assert_eq!(arm["status"], "warning", "{arm}");
    assert!(
        arm["detail"].as_str().unwrap().contains("no F flag"),
        "{arm}"
    );
    assert_eq!(arm["fix"], "cross-executor binfmt install --arch arm");
    let aarch64 = find_check(&checks, "arch aarch64");
    assert!(
        aarch64["detail"]
            .as_str()
            .unwrap()
            .contains("qemu-aarch64 version"),
        "{aarch64}"
    );
}

#[test]
fn doctor_image_smoke_run() {
    let settings = settings_file("architectures = [\"aarch64\"]\nnetwork_mode = \"none\"\n");
    let config = settings.path().to_str().unwrap();
    let (healthy, checks) = doctor_json(&[
        "--config",
        config,
        "doctor",
        "--json",
        "--image",
        BUSYBOX_ARM64,
    ]);
    assert!(healthy, "{checks}");
    let image = find_check(&checks, &format!("image {BUSYBOX_ARM64}"));
    assert_eq!(image["status"], "ok", "{image}");
    assert!(
        image["detail"].as_str().unwrap().contains("aarch64"),
        "{image}"
    );
}

#[test]
fn doctor_fails_for_unknown_image() {
    let settings = settings_file("architectures = [\"aarch64\"]\npull_policy = \"never\"\n");
    let config = settings.path().to_str().unwrap();
    let image = "cross-executor-test/absent:doctor";
    let (healthy, checks) =
        doctor_json(&["--config", config, "doctor", "--json", "--image", image]);
    assert!(!healthy, "{checks}");
    assert_eq!(
        find_check(&checks, &format!("image {image}"))["status"],
        "error"
    );
}

/// Reads the s390x entry so the test can restore it, or `None` when none exists.
fn s390x_registration() -> Option<String> {
    let text = std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-s390x").ok()?;
    let field = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    let escape = |hex: String| {
        (0..hex.len())
            .step_by(2)
            .map(|at| format!("\\x{}", &hex[at..at + 2]))
            .collect::<String>()
    };
    Some(format!(
        ":qemu-s390x:M:{}:{}:{}:{}:{}",
        field("offset "),
        escape(field("magic ")),
        escape(field("mask ")),
        field("interpreter "),
        field("flags:").replace('O', "")
    ))
}

#[test]
fn binfmt_install_is_idempotent() {
    // s390x is used by no other test, so changing its entry disturbs nothing running.
    let original = s390x_registration();

    let installed = driver_command(&["binfmt", "install", "--arch", "s390x", "--credential"]);
    assert!(
        installed.status.success(),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let flags = binfmt_flags("qemu-s390x");
    assert!(flags.contains('F'), "{flags}");
    assert!(flags.contains('C'), "{flags}");

    let again = driver_command(&["binfmt", "install", "--arch", "s390x", "--credential"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already registered"));

    let settings = settings_file("architectures = [\"s390x\"]\n");
    let config = settings.path().to_str().unwrap();
    let (healthy, checks) = doctor_json(&["--config", config, "doctor", "--json"]);
    assert!(healthy, "{checks}");
    assert_eq!(find_check(&checks, "arch s390x")["status"], "ok");

    let removed = driver_command(&["binfmt", "uninstall", "--arch", "s390x"]);
    assert!(removed.status.success());
    assert!(!std::path::Path::new("/proc/sys/fs/binfmt_misc/qemu-s390x").exists());
    let (healthy, checks) = doctor_json(&["--config", config, "doctor", "--json"]);
    assert!(!healthy, "{checks}");
    let missing = find_check(&checks, "arch s390x");
    assert!(missing["fix"]
        .as_str()
        .unwrap()
        .contains("binfmt install --arch s390x"));

    if let Some(registration) = original {
        std::fs::write("/proc/sys/fs/binfmt_misc/register", registration).unwrap();
    }
}

#[test]
fn binfmt_rejects_unknown_arch() {
    let output = driver_command(&["binfmt", "install", "--arch", "z80"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unsupported architecture `z80`"));
}

#[test]
fn image_import_sets_platform_metadata() {
    let directory = tempfile::tempdir().unwrap();
    let rootfs = directory.path().join("rootfs.tar");
    let source = format!("cross-executor-import-source-{}", unique_job_id());
    let (ok, output) = docker(&["create", "--name", &source, BUSYBOX_ARMHF]);
    assert!(ok, "{output}");
    let (ok, output) = docker(&["export", "-o", rootfs.to_str().unwrap(), &source]);
    docker(&["rm", "-f", &source]);
    assert!(ok, "{output}");

    let tag = format!("cross-executor-test/imported:{}", unique_job_id());
    let imported = driver_command(&[
        "image",
        "import",
        rootfs.to_str().unwrap(),
        "--platform",
        "linux/arm/v7",
        "--tag",
        &tag,
    ]);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let (ok, platform) = docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Architecture}}/{{.Variant}}",
        &tag,
    ]);
    assert!(ok, "{platform}");
    assert_eq!(platform.trim(), "arm/v7");

    let job = job(&tag).image(Image::new(&tag)).build_script(["uname -m"]);
    let result = harness_with(DriverCommand::new(DRIVER).env("CROSS_EXECUTOR_CONFIG", SETTINGS))
        .run_job(&job);
    docker(&["image", "rm", &tag]);
    assert_success(&result);
    let log = result.job_log_text();
    assert!(
        log.contains("as linux/arm/v7 (from the image metadata"),
        "{log}"
    );
}

#[test]
fn image_import_rejects_non_tar() {
    let directory = tempfile::tempdir().unwrap();
    let bogus = directory.path().join("rootfs.tar");
    std::fs::write(&bogus, vec![b'x'; 2048]).unwrap();
    let output = driver_command(&[
        "image",
        "import",
        bogus.to_str().unwrap(),
        "--platform",
        "linux/arm/v6",
        "--tag",
        "cross-executor-test/never:1",
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a tar archive"));
}
