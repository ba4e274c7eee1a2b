//! Pulls from a real registry with htpasswd authentication (integration/registry.sh starts it
//! on 127.0.0.1:5000), and a check that no credential reaches any output.

use base64::Engine;
use cross_executor_integration::{Image, Job, JobResult, Outcome, Variable};

use crate::support::*;

const REGISTRY: &str = "127.0.0.1:5000";
const REGISTRY_IMAGE: &str = "127.0.0.1:5000/cross-executor-test/busybox-armhf:latest";
const USER: &str = "ci-user";
const PASSWORD: &str = "ci-registry-password";

fn auth_config(user: &str, password: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!(r#"{{"auths": {{"{REGISTRY}": {{"auth": "{auth}"}}}}}}"#)
}

/// A job that always pulls the registry image and prints the machine.
fn pulling_job() -> Job {
    job(REGISTRY_IMAGE)
        .image(Image::new(REGISTRY_IMAGE).pull_policy(["always"]))
        .build_script(["uname -m"])
}

#[test]
fn pull_with_job_docker_auth_config() {
    let job = pulling_job()
        .variable(Variable::new("DOCKER_AUTH_CONFIG", auth_config(USER, PASSWORD)).masked());
    let result = harness().run_job(&job);
    assert_success(&result);
    let log = result.job_log_text();
    assert!(
        log.contains(&format!("Pulling image {REGISTRY_IMAGE} with credentials")),
        "{log}"
    );
    assert!(
        String::from_utf8_lossy(&result.stage("build_script").unwrap().stdout).contains("armv7l")
    );
}

#[test]
fn pull_with_ci_registry_credentials() {
    let job = pulling_job()
        .var("CI_REGISTRY", REGISTRY)
        .var("CI_REGISTRY_USER", USER)
        .variable(Variable::new("CI_REGISTRY_PASSWORD", PASSWORD).masked());
    assert_success(&harness().run_job(&job));
}

#[test]
fn pull_with_settings_auth_config() {
    let settings = format!(
        "docker_auth_config = '''{}'''\n",
        auth_config(USER, PASSWORD)
    );
    let (harness, _file) = harness_with_settings(&settings);
    assert_success(&harness.run_job(&pulling_job()));
}

#[test]
fn pull_without_credentials_fails() {
    let job = pulling_job();
    let result = harness().run_job(&job);
    let Outcome::SystemFailure { stage, .. } = &result.outcome else {
        panic!("expected a system failure, got {:?}", result.outcome);
    };
    assert_eq!(stage, "prepare");
    let log = result.job_log_text();
    // The wording depends on whether an earlier test left the image on this host.
    assert!(log.contains(REGISTRY_IMAGE), "{log}");
    assert!(
        log.contains("failed to pull") || log.contains("could not be pulled"),
        "{log}"
    );
    assert!(
        log.contains("no basic auth credentials") || log.contains("unauthorized"),
        "{log}"
    );
    assert!(leftovers(job.id).is_empty());
}

/// Every byte any stage of the job wrote: the job log, the runner log, and each stage's
/// streams.
fn all_output(result: &JobResult) -> Vec<u8> {
    let mut bytes = result.job_log.clone();
    bytes.extend_from_slice(&result.cleanup_log);
    for stage in &result.stages {
        bytes.extend_from_slice(&stage.stdout);
        bytes.extend_from_slice(&stage.stderr);
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[test]
fn secrets_never_printed() {
    let job_token = "glcbt-e2e-known-job-token-4711";
    let wrong_password = "wrong-registry-password-0815";
    let secrets = [
        job_token.to_owned(),
        PASSWORD.to_owned(),
        wrong_password.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}")),
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{wrong_password}")),
    ];
    let succeeding = pulling_job()
        .job_token(job_token)
        .variable(Variable::new("DOCKER_AUTH_CONFIG", auth_config(USER, PASSWORD)).masked())
        .variable(Variable::new("CI_REGISTRY_PASSWORD", PASSWORD).masked())
        .var("CI_REGISTRY", REGISTRY)
        .var("CI_REGISTRY_USER", USER);
    let failing = pulling_job()
        .job_token(job_token)
        .variable(Variable::new("DOCKER_AUTH_CONFIG", auth_config(USER, wrong_password)).masked());
    let broken = pulling_job().variable(
        Variable::new(
            "DOCKER_AUTH_CONFIG",
            "{\"auths\": {\"127.0.0.1:5000\": {\"auth\": \"not base64 ci-registry-password\"}}}",
        )
        .masked(),
    );

    let results = [
        harness().run_job(&succeeding),
        harness().run_job(&failing),
        harness().run_job(&broken),
    ];
    assert_success(&results[0]);
    assert!(
        matches!(results[1].outcome, Outcome::SystemFailure { .. }),
        "{:?}",
        results[1].outcome
    );
    assert!(
        matches!(results[2].outcome, Outcome::SystemFailure { .. }),
        "{:?}",
        results[2].outcome
    );
    for result in &results {
        let output = all_output(result);
        for secret in &secrets {
            assert!(
                !contains(&output, secret),
                "`{secret}` appears in:\n{}",
                String::from_utf8_lossy(&output)
            );
        }
    }
}

#[test]
fn pull_policies_with_and_without_credentials() {
    // Only this test uses the `policies` repository, so the local copy changes only here.
    let image = "127.0.0.1:5000/cross-executor-test/policies:latest";
    docker(&["image", "rm", image]);
    let run = |policy: &str, credentials: bool| {
        let mut job = job(image)
            .image(Image::new(image).pull_policy([policy]))
            .build_script(["uname -m"]);
        if credentials {
            job = job.variable(
                Variable::new("DOCKER_AUTH_CONFIG", auth_config(USER, PASSWORD)).masked(),
            );
        }
        harness().run_job(&job)
    };

    let never = run("never", true);
    assert!(
        matches!(never.outcome, Outcome::SystemFailure { .. }),
        "{:?}",
        never.outcome
    );
    assert!(never.job_log_text().contains("pull policy is `never`"));

    let anonymous = run("if-not-present", false);
    assert!(
        matches!(anonymous.outcome, Outcome::SystemFailure { .. }),
        "{:?}",
        anonymous.outcome
    );

    let pulled = run("if-not-present", true);
    assert_success(&pulled);
    assert!(pulled.job_log_text().contains("with credentials"));

    // Now the image is local: if-not-present and never need no credentials.
    for policy in ["if-not-present", "never"] {
        let local = run(policy, false);
        assert_success(&local);
        assert!(!local.job_log_text().contains("Pulling image"), "{policy}");
    }

    let always = run("always", false);
    assert!(
        matches!(always.outcome, Outcome::SystemFailure { .. }),
        "{:?}",
        always.outcome
    );
    assert_success(&run("always", true));
}
