//! Cancellation, leftovers and garbage collection.

use std::process::Command;
use std::time::Duration;

use cross_executor_integration::{Attempt, CancelAt, Outcome, RunOptions, StopConditions};

use crate::support::*;

#[test]
fn cancel_stops_background_processes() {
    let job = job(BUSYBOX_ARMHF)
        .build_script(["sleep 1000 & sleep 900"])
        .after_script(["ps -o pid,args", "echo after-script-ran"]);
    let options = RunOptions {
        cancel: Some(CancelAt {
            stage: "build_script".into(),
            after: Duration::from_secs(4),
        }),
        observer: None,
    };
    let result = harness().run_job_with(&job, options);

    assert!(
        matches!(result.outcome, Outcome::Canceled { .. }),
        "{:?}",
        result.outcome
    );
    let build = result.stage("build_script").unwrap();
    let signals: Vec<i32> = build.signals.iter().map(|sent| sent.signal).collect();
    assert_eq!(
        signals,
        vec![15],
        "the driver exits after SIGTERM, before any SIGKILL"
    );

    let after = result
        .stage("after_script")
        .expect("after_script runs after a cancel");
    let processes = String::from_utf8_lossy(&after.stdout).into_owned();
    assert!(processes.contains("after-script-ran"), "{processes}");
    assert!(!processes.contains("sleep 1000"), "{processes}");
    assert!(!processes.contains("sleep 900"), "{processes}");
    assert!(leftovers(job.id).is_empty());
}

#[test]
fn prepare_replaces_leftover_container() {
    let job = job(BUSYBOX_ARMHF).build_script(["echo fresh"]);
    let name = container_name(job.id);
    let (ok, output) = docker(&[
        "create",
        "--name",
        &name,
        "--network",
        "none",
        BUSYBOX_ARMHF,
    ]);
    assert!(ok, "{output}");

    let result = harness().run_job(&job);
    assert_success(&result);
    let log = result.job_log_text();
    assert!(log.contains("left by an earlier attempt"), "{log}");
    let (exists, _) = docker(&["inspect", &name]);
    assert!(!exists, "cleanup removed the container");
}

#[test]
fn cleanup_is_idempotent() {
    let job = job(BUSYBOX_ARMHF).build_script(["true"]);
    let harness = harness();
    let mut attempt = Attempt::new(&harness, &job, 1, None).unwrap();
    let stop = StopConditions::default();

    let (_, configured) = attempt.configure(&stop);
    configured.unwrap();
    let prepared = attempt.prepare(&stop).unwrap();
    assert!(
        prepared.result.is_ok(),
        "{}",
        String::from_utf8_lossy(&prepared.combined)
    );
    assert!(!leftovers(job.id).is_empty());

    for _ in 0..2 {
        let cleaned = attempt.cleanup().unwrap();
        assert!(
            cleaned.result.is_ok(),
            "{}",
            String::from_utf8_lossy(&cleaned.combined)
        );
    }
    assert!(leftovers(job.id).is_empty());
}

#[test]
fn cleanup_without_prepare_succeeds() {
    let job = job(BUSYBOX_ARMHF).build_script(["true"]);
    let harness = harness();
    let mut attempt = Attempt::new(&harness, &job, 1, None).unwrap();
    let cleaned = attempt.cleanup().unwrap();
    assert!(
        cleaned.result.is_ok(),
        "{}",
        String::from_utf8_lossy(&cleaned.combined)
    );
}

/// Creates a container and a volume with the driver's labels, created an hour ago by the
/// runner `gctest`, with a timeout label so large that the sweep in prepare ignores them.
fn abandoned_objects(job_id: u64) -> (String, String) {
    let created = (std::time::SystemTime::now() - Duration::from_secs(3600))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let labels = [
        "io.cross-executor.managed=true".to_owned(),
        "io.cross-executor.scope=job".to_owned(),
        "io.cross-executor.runner=gctest".to_owned(),
        "io.cross-executor.timeout=1000000000".to_owned(),
        format!("io.cross-executor.job-id={job_id}"),
        format!("io.cross-executor.created={created}"),
    ];
    let name = format!("cross-executor-gctest-{job_id}");
    let mut args = vec!["volume".to_owned(), "create".to_owned()];
    for label in &labels {
        args.extend(["--label".to_owned(), label.clone()]);
    }
    args.push(format!("{name}-builds"));
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, output) = docker(&arg_refs);
    assert!(ok, "{output}");

    let mut args = vec!["create".to_owned(), "--name".to_owned(), name.clone()];
    for label in &labels {
        args.extend(["--label".to_owned(), label.clone()]);
    }
    args.extend([
        "--network".to_owned(),
        "none".to_owned(),
        BUSYBOX_ARMHF.to_owned(),
    ]);
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, output) = docker(&arg_refs);
    assert!(ok, "{output}");
    (name.clone(), format!("{name}-builds"))
}

fn run_gc(args: &[&str]) -> String {
    let output = Command::new(DRIVER).arg("gc").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn gc_removes_only_abandoned_objects() {
    let abandoned = unique_job_id();
    let (container, volume) = abandoned_objects(abandoned);

    let listed = run_gc(&["--runner", "gctest", "--max-age", "600", "--dry-run"]);
    assert!(
        listed.contains(&format!("Would remove container {container}")),
        "{listed}"
    );
    assert!(
        listed.contains(&format!("Would remove volume {volume}")),
        "{listed}"
    );
    assert_eq!(leftovers(abandoned).len(), 2, "a dry run removes nothing");

    // Without --max-age, the huge timeout label keeps the objects.
    run_gc(&["--runner", "gctest"]);
    assert_eq!(leftovers(abandoned).len(), 2);

    let removed = run_gc(&["--runner", "gctest", "--max-age", "600"]);
    assert!(
        removed.contains(&format!("Removed container {container}")),
        "{removed}"
    );
    assert!(
        leftovers(abandoned).is_empty(),
        "{:?}",
        leftovers(abandoned)
    );
}

#[test]
fn interrupted_prepare_removes_its_objects() {
    let job = job(DEBIAN_ARMHF).build_script(["true"]);
    let harness = harness();
    let mut attempt = Attempt::new(&harness, &job, 1, None).unwrap();
    attempt.configure(&StopConditions::default()).1.unwrap();

    // SIGTERM arrives while prepare creates and starts the container, which takes longer
    // than 150 ms (starting a container alone takes about 0.2 s here).
    let cancel = cross_executor_integration::CancelToken::new();
    let stop = StopConditions {
        cancel: Some(cancel.clone()),
        ..StopConditions::default()
    };
    cancel.cancel_after(Duration::from_millis(150));
    let prepared = attempt.prepare(&stop).unwrap();

    let signals: Vec<i32> = prepared.signals.iter().map(|sent| sent.signal).collect();
    assert_eq!(signals, vec![15], "the driver exits after SIGTERM");
    assert_eq!(
        prepared.exit_code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&prepared.combined)
    );
    assert!(
        leftovers(job.id).is_empty(),
        "an interrupted prepare leaves nothing: {:?}",
        leftovers(job.id)
    );
    attempt.cleanup();
}
