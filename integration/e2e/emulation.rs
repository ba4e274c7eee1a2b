//! Jobs in armhf and arm64 containers under both binfmt_misc modes, and the architecture
//! checks.

use cross_executor_integration::{Image, Outcome};

use crate::support::*;

#[test]
fn armhf_without_f_flag_injects_interpreter() {
    assert!(
        !binfmt_flags("qemu-arm").contains('F'),
        "qemu-arm must be registered without F; run integration/binfmt-modes.sh"
    );
    let job = job(BUSYBOX_ARMHF).build_script(["uname -m"]);
    let result = harness().run_job(&job);
    assert_success(&result);

    let log = result.job_log_text();
    assert!(log.contains("without the F flag"), "{log}");
    assert!(
        log.contains("/usr/libexec/qemu-binfmt/arm-binfmt-P"),
        "{log}"
    );
    let build = result.stage("build_script").unwrap();
    assert!(
        String::from_utf8_lossy(&build.stdout).contains("armv7l"),
        "{log}"
    );
}

#[test]
fn header_cache_gives_the_same_emulation() {
    // The first job reads the shell's header from a container and records it. The second
    // creates its container once, from the record. Both need the interpreter mount.
    assert!(!binfmt_flags("qemu-arm").contains('F'));
    let cache = tempfile::tempdir().unwrap();
    let harness = harness_with(driver().env("XDG_CACHE_HOME", cache.path()));
    let entries = cache.path().join("cross-executor/image-headers");
    for round in ["miss", "hit"] {
        let job = job(BUSYBOX_ARMHF).build_script(["uname -m"]);
        let result = harness.run_job(&job);
        assert_success(&result);
        let log = result.job_log_text();
        assert!(
            log.contains("/usr/libexec/qemu-binfmt/arm-binfmt-P"),
            "{round}: {log}"
        );
        let build = result.stage("build_script").unwrap();
        let output = String::from_utf8_lossy(&build.stdout);
        assert!(output.trim_end().ends_with("\narmv7l"), "{round}: {output}");
        let recorded = std::fs::read_dir(&entries).unwrap().count();
        assert_eq!(recorded, 1, "{round}: one entry for the one image");
        assert!(leftovers(job.id).is_empty(), "{round}");
    }
}

#[test]
fn armhf_without_injection_fails() {
    // The same image in a plain container, without the interpreter mount, cannot start:
    // this is what the injection fixes.
    assert!(!binfmt_flags("qemu-arm").contains('F'));
    let (ok, output) = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        BUSYBOX_ARMHF,
        "/bin/true",
    ]);
    assert!(!ok, "{output}");
    assert!(output.contains("no such file or directory"), "{output}");
}

#[test]
fn arm64_with_f_flag_needs_no_injection() {
    assert!(
        binfmt_flags("qemu-aarch64").contains('F'),
        "qemu-aarch64 must be registered with F; run integration/binfmt-modes.sh"
    );
    let job = job(BUSYBOX_ARM64).build_script(["uname -m"]);
    let result = harness().run_job(&job);
    assert_success(&result);

    let log = result.job_log_text();
    assert!(log.contains("with the F flag, nothing injected"), "{log}");
    let build = result.stage("build_script").unwrap();
    assert!(
        String::from_utf8_lossy(&build.stdout).contains("aarch64"),
        "{log}"
    );
}

#[test]
fn debian_armhf_runs_bash() {
    let job = job(DEBIAN_ARMHF).build_script([
        "dpkg --print-architecture",
        "echo \"shell=${BASH_VERSION:+bash}\"",
        "uname -m",
    ]);
    let result = harness().run_job(&job);
    assert_success(&result);

    let stdout =
        String::from_utf8_lossy(&result.stage("build_script").unwrap().stdout).into_owned();
    assert!(stdout.contains("\narmhf\n"), "{stdout}");
    assert!(stdout.contains("shell=bash"), "{stdout}");
    assert!(stdout.contains("armv7l"), "{stdout}");
}

#[test]
fn platform_matching_files_passes_despite_metadata() {
    // Docker 20.10 labels imported images amd64; the files are arm, as the job requests.
    let job = job(BUSYBOX_ARMHF).image(Image::new(BUSYBOX_ARMHF).platform("linux/arm/v7"));
    let job = job.build_script(["uname -m"]);
    let result = harness().run_job(&job);
    assert_success(&result);
    let log = result.job_log_text();
    assert!(
        log.contains("labelled amd64, but its files are arm"),
        "{log}"
    );
}

#[test]
fn platform_mismatch_is_system_failure() {
    let job = job(BUSYBOX_ARM64).image(Image::new(BUSYBOX_ARM64).platform("linux/arm/v7"));
    let job = job.build_script(["uname -m"]);
    let result = harness().run_job(&job);

    let Outcome::SystemFailure { stage, .. } = &result.outcome else {
        panic!("expected a system failure, got {:?}", result.outcome);
    };
    assert_eq!(stage, "prepare");
    let log = result.job_log_text();
    assert!(
        log.contains("platform linux/arm/v7 (from the job)"),
        "{log}"
    );
    assert!(log.contains("which are for arm64"), "{log}");
    assert!(leftovers(job.id).is_empty());
}

#[test]
fn invalid_platform_is_system_failure() {
    let job = job(BUSYBOX_ARMHF).image(Image::new(BUSYBOX_ARMHF).platform("linux/z80"));
    let result = harness().run_job(&job.build_script(["true"]));
    assert!(
        matches!(result.outcome, Outcome::SystemFailure { .. }),
        "{:?}",
        result.outcome
    );
    assert!(result.job_log_text().contains("unknown architecture `z80`"));
}

#[test]
fn riscv64_and_ppc64le_jobs_run() {
    for (image, machine) in [(BUSYBOX_RISCV64, "riscv64"), (BUSYBOX_PPC64LE, "ppc64le")] {
        let result = harness().run_job(&job(image).build_script(["uname -m"]));
        assert_success(&result);
        let stdout =
            String::from_utf8_lossy(&result.stage("build_script").unwrap().stdout).into_owned();
        assert!(stdout.contains(machine), "{image}: {stdout}");
    }
}

#[test]
fn armv6_platform_uses_arm1176() {
    let job = job(ARMV6_PROBE)
        .image(Image::new(ARMV6_PROBE).platform("linux/arm/v6"))
        .build_script(["uname -m", "/opt/armv7/busybox true"]);
    let result = harness().run_job(&job);

    let log = result.job_log_text();
    assert!(log.contains("as linux/arm/v6 (from the job"), "{log}");
    assert!(log.contains("QEMU_CPU=arm1176"), "{log}");
    let stdout =
        String::from_utf8_lossy(&result.stage("build_script").unwrap().stdout).into_owned();
    assert!(stdout.contains("armv6l"), "{stdout}");
    // The ARMv7 binary dies with SIGILL (128 + 4), a failure of the job's own code.
    let Outcome::BuildFailure { exit_code, .. } = &result.outcome else {
        panic!("expected a build failure, got {:?}\n{log}", result.outcome);
    };
    assert_eq!(*exit_code, 132);
    assert!(log.contains("Illegal instruction"), "{log}");
}

#[test]
fn armv7_platform_runs_armv7_code() {
    let job = job(ARMV6_PROBE)
        .image(Image::new(ARMV6_PROBE).platform("linux/arm/v7"))
        .build_script(["uname -m", "/opt/armv7/busybox true", "echo armv7-ok"]);
    let result = harness().run_job(&job);
    assert_success(&result);
    let stdout =
        String::from_utf8_lossy(&result.stage("build_script").unwrap().stdout).into_owned();
    assert!(stdout.contains("armv7l"), "{stdout}");
    assert!(stdout.contains("armv7-ok"), "{stdout}");
    assert!(!result.job_log_text().contains("QEMU_CPU"));
}

#[test]
fn settings_image_pattern_selects_armv6() {
    let settings = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        settings.path(),
        "network_mode = \"none\"\n[[image_platforms]]\nimage = \"cross-executor-test/armv6-*\"\nplatform = \"linux/arm/v6\"\n",
    )
    .unwrap();
    let driver = cross_executor_integration::DriverCommand::new(DRIVER)
        .env("CROSS_EXECUTOR_CONFIG", settings.path());
    let result = harness_with(driver).run_job(&job(ARMV6_PROBE).build_script(["uname -m"]));
    assert_success(&result);
    let log = result.job_log_text();
    assert!(log.contains("as linux/arm/v6 (from the settings"), "{log}");
    let stdout =
        String::from_utf8_lossy(&result.stage("build_script").unwrap().stdout).into_owned();
    assert!(stdout.contains("armv6l"), "{stdout}");
}

#[test]
fn shell_without_loader_is_system_failure() {
    // An image whose /bin/sh is Debian's dynamically linked armhf dash without its loader:
    // the header says arm, so emulation is set up, but the entrypoint cannot start.
    let rootfs = tempfile::tempdir().unwrap();
    std::fs::create_dir(rootfs.path().join("bin")).unwrap();
    let (ok, source) = docker(&["create", DEBIAN_ARMHF]);
    assert!(ok, "{source}");
    let source = source.trim().to_owned();
    let shell = rootfs.path().join("bin/sh");
    let (copied, output) = docker(&[
        "cp",
        "-L",
        &format!("{source}:/bin/dash"),
        &shell.to_string_lossy(),
    ]);
    docker(&["rm", &source]);
    assert!(copied, "{output}");
    let image = format!("cross-executor-test/no-loader:{}", unique_job_id());
    let archive = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C '{}' -c . | docker import - '{image}'",
            rootfs.path().display()
        ))
        .output()
        .unwrap();
    assert!(
        archive.status.success(),
        "{}",
        String::from_utf8_lossy(&archive.stderr)
    );

    // A cache directory of its own keeps the header of this one-off image out of the real one.
    let cache = tempfile::tempdir().unwrap();
    let harness = harness_with(driver().env("XDG_CACHE_HOME", cache.path()));
    let job = job(&image).build_script(["true"]);
    let result = harness.run_job(&job);
    docker(&["rmi", &image]);

    let Outcome::SystemFailure { stage, .. } = &result.outcome else {
        panic!("expected a system failure, got {:?}", result.outcome);
    };
    assert_eq!(stage, "prepare");
    let log = result.job_log_text();
    assert!(log.contains("cannot run its own binaries"), "{log}");
    assert!(log.contains("ld-linux-armhf.so.3"), "{log}");
    assert!(leftovers(job.id).is_empty());
}
