//! The helper container (setting `helper_image`) for sources, caches and artifacts, and the
//! host gitlab-runner mounted into the job container (setting `gitlab_runner_binary`).
//! integration/build-helper-image.sh builds the helper image.

use std::path::Path;
use std::process::Command;

use cross_executor_integration::Outcome;

use crate::support::*;

const HELPER_IMAGE: &str = "cross-executor-test/helper-git:bookworm";

fn git(directory: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(directory)
        .env("GIT_AUTHOR_NAME", "e2e")
        .env("GIT_AUTHOR_EMAIL", "e2e@example.invalid")
        .env("GIT_COMMITTER_NAME", "e2e")
        .env("GIT_COMMITTER_EMAIL", "e2e@example.invalid")
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

/// Creates a bare repository with one commit of README.md and returns its directory.
fn bare_repository() -> tempfile::TempDir {
    let directory = tempfile::tempdir().unwrap();
    let work = directory.path().join("work");
    std::fs::create_dir(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("README.md"), "from the repository\n").unwrap();
    git(&work, &["add", "README.md"]);
    git(&work, &["commit", "-q", "-m", "first"]);
    git(
        directory.path(),
        &["clone", "-q", "--bare", "work", "repo.git"],
    );
    // git refuses repositories of other owners, and the job user is nobody (65534).
    let status = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(directory.path().join("repo.git"))
        .status()
        .unwrap();
    assert!(status.success());
    directory
}

#[test]
fn helper_clones_and_job_edits_checkout() {
    let repository = bare_repository();
    let settings = format!(
        "helper_image = \"{HELPER_IMAGE}\"\nuser = \"65534:65534\"\nvolumes = [\"{}:/srv/repo.git:ro\"]\n",
        repository.path().join("repo.git").display()
    );
    let (harness, _file) = harness_with_settings(&settings);
    let job = job(BUSYBOX_ARMHF)
        .stage(
            "get_sources",
            [
                "git clone -q /srv/repo.git .",
                "echo \"sources on $(uname -m) as $(id -u)\"",
            ],
        )
        .build_script([
            "echo \"build on $(uname -m) as $(id -u)\"",
            "cat README.md",
            "echo changed-in-job >> README.md",
        ])
        .stage(
            "archive_cache",
            [
                "tar -czf \"/cache/checkout-$CI_JOB_ID.tgz\" README.md",
                "echo \"archive on $(uname -m)\"",
            ],
        );
    let result = harness.run_job(&job);
    assert_success(&result);

    let stdout =
        |stage: &str| String::from_utf8_lossy(&result.stage(stage).unwrap().stdout).into_owned();
    assert!(
        stdout("get_sources").contains("sources on x86_64 as 65534"),
        "{}",
        stdout("get_sources")
    );
    assert!(
        stdout("build_script").contains("build on armv7l as 65534"),
        "{}",
        stdout("build_script")
    );
    assert!(stdout("build_script").contains("from the repository"));
    assert!(stdout("archive_cache").contains("archive on x86_64"));
    // The tarball landed in the project's cache volume, which outlives the job.
    let (ok, archived) = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &format!("cross-executor-cache-{RUNNER_TOKEN}-4242:/cache:ro"),
        BUSYBOX_ARM64,
        "tar",
        "-xzOf",
        &format!("/cache/checkout-{}.tgz", job.id),
        "README.md",
    ]);
    assert!(ok, "{archived}");
    assert_eq!(archived, "from the repository\nchanged-in-job\n");

    let log = result.job_log_text();
    assert!(
        log.contains("Running get_sources in the helper container"),
        "{log}"
    );
    assert!(
        log.contains("Running build_script in the job container"),
        "{log}"
    );
    assert!(
        log.contains("Running archive_cache in the helper container"),
        "{log}"
    );
    assert!(leftovers(job.id).is_empty(), "{:?}", leftovers(job.id));
}

#[test]
fn without_helper_no_helper_lines() {
    let result = harness().run_job(&job(BUSYBOX_ARMHF).build_script(["true"]));
    assert_success(&result);
    assert!(!result.job_log_text().contains("helper container"));
}

/// Compiles a static x86_64 program that reports the machine it runs on.
fn static_fake_runner(directory: &Path) -> std::path::PathBuf {
    let source = directory.join("fake.c");
    std::fs::write(
        &source,
        "#include <stdio.h>\n#include <sys/utsname.h>\nint main(void) { struct utsname u; \
         uname(&u); printf(\"fake gitlab-runner on %s\\n\", u.machine); return 0; }\n",
    )
    .unwrap();
    let binary = directory.join("gitlab-runner");
    let status = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .unwrap();
    assert!(status.success(), "cc -static failed; install libc6-dev");
    binary
}

#[test]
fn static_runner_binary_runs_natively() {
    let directory = tempfile::tempdir().unwrap();
    let binary = static_fake_runner(directory.path());
    let (harness, _file) = harness_with_settings(&format!(
        "gitlab_runner_binary = \"{}\"\n",
        binary.display()
    ));
    let job = job(BUSYBOX_ARMHF).build_script(["uname -m", "gitlab-runner"]);
    let result = harness.run_job(&job);
    assert_success(&result);
    let stdout =
        String::from_utf8_lossy(&result.stage("build_script").unwrap().stdout).into_owned();
    assert!(stdout.contains("armv7l"), "{stdout}");
    assert!(stdout.contains("fake gitlab-runner on x86_64"), "{stdout}");
}

#[test]
fn dynamic_runner_binary_is_rejected() {
    let (harness, _file) = harness_with_settings("gitlab_runner_binary = \"/usr/bin/git\"\n");
    let job = job(BUSYBOX_ARMHF).build_script(["true"]);
    let result = harness.run_job(&job);
    let Outcome::SystemFailure { stage, .. } = &result.outcome else {
        panic!("expected a system failure, got {:?}", result.outcome);
    };
    assert_eq!(stage, "prepare");
    let log = result.job_log_text();
    assert!(
        log.contains("`/usr/bin/git` is dynamically linked"),
        "{log}"
    );
    assert!(leftovers(job.id).is_empty());
}
