//! Garbage collection of job containers and volumes whose cleanup never came, for example
//! because the runner crashed or was killed.
//!
//! Only objects with the driver's `scope=job` or `scope=pool` label are candidates; the
//! projects' shared cache volumes are never removed. A job object is abandoned once its
//! job's timeout (from its labels) plus a margin has passed since it was created. A pooled
//! container that still waits is abandoned after the pool's maximum idle time, and one that
//! a job took after a day plus that time, because its labels cannot carry the job's
//! timeout. When a maximum age is given, any candidate older than that is abandoned.

use std::time::Duration;

use crate::docker::{Docker, LabelledObject};
use crate::names;
use crate::pool;

/// Added to a job's timeout before its objects count as abandoned, because cleanup runs
/// after the job and may take its own time.
const TIMEOUT_MARGIN_SECONDS: u64 = 3600;
/// Age used when an object carries no timeout label: GitLab's default job timeout is one
/// hour, and a day leaves room for longer project timeouts.
const FALLBACK_MAX_AGE_SECONDS: u64 = 24 * 3600;

/// Selection rules of a collection.
#[derive(Debug, Clone)]
pub struct GcPolicy {
    /// Fixed maximum age; `None` derives it per object from the job timeout.
    pub max_age: Option<Duration>,
    /// List what would be removed without removing it.
    pub dry_run: bool,
    /// Only objects of the runner with this short token.
    pub runner: Option<String>,
    /// Time a pooled container may wait for a job.
    pub pool_max_idle: Duration,
}

/// Objects a collection removed (or would remove), and the removals that failed.
#[derive(Debug, Default)]
pub struct GcReport {
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
    pub errors: Vec<String>,
}

/// Removes abandoned job containers first, then abandoned job volumes, passing one line
/// for each to `report_line`.
pub async fn collect(
    docker: &Docker,
    policy: GcPolicy,
    report_line: &mut dyn FnMut(&str),
) -> anyhow::Result<GcReport> {
    let mut filter = vec![format!("{}=true", names::LABEL_MANAGED)];
    if let Some(runner) = &policy.runner {
        filter.push(format!("{}={runner}", names::LABEL_RUNNER));
    }
    let now = names::unix_now();
    let verb = if policy.dry_run {
        "Would remove"
    } else {
        "Removed"
    };
    let mut report = GcReport::default();

    for container in docker.containers_with_labels(&filter).await? {
        let abandoned = match container.labels.get(names::LABEL_SCOPE).map(String::as_str) {
            Some("job") => is_abandoned(&container, now, policy.max_age),
            Some("pool") => is_abandoned_in_pool(&container, now, &policy),
            _ => false,
        };
        if !abandoned {
            continue;
        }
        if !policy.dry_run {
            if let Err(error) = docker.remove_container(&container.name).await {
                report.errors.push(format!("{error:#}"));
                continue;
            }
        }
        report_line(&format!("{verb} container {}", container.name));
        report.containers.push(container.name);
    }
    filter.push(format!("{}=job", names::LABEL_SCOPE));
    for volume in docker.volumes_with_labels(&filter).await? {
        if !is_abandoned(&volume, now, policy.max_age) {
            continue;
        }
        if !policy.dry_run {
            if let Err(error) = docker.remove_volume(&volume.name).await {
                report.errors.push(format!("{error:#}"));
                continue;
            }
        }
        report_line(&format!("{verb} volume {}", volume.name));
        report.volumes.push(volume.name);
    }
    Ok(report)
}

fn is_abandoned(object: &LabelledObject, now: u64, max_age: Option<Duration>) -> bool {
    let label = |key: &str| {
        object
            .labels
            .get(key)
            .and_then(|value| value.parse::<u64>().ok())
    };
    // An object without a readable creation time was not made by this driver's stages.
    let Some(created) = label(names::LABEL_CREATED) else {
        return false;
    };
    let allowed = match max_age {
        Some(age) => age.as_secs(),
        None => label(names::LABEL_TIMEOUT)
            .map(|timeout| timeout + TIMEOUT_MARGIN_SECONDS)
            .unwrap_or(FALLBACK_MAX_AGE_SECONDS),
    };
    now.saturating_sub(created) >= allowed
}

fn is_abandoned_in_pool(container: &LabelledObject, now: u64, policy: &GcPolicy) -> bool {
    let max_age = policy.max_age.unwrap_or_else(|| {
        if pool::is_waiting(&container.name, &container.labels) {
            policy.pool_max_idle
        } else {
            policy.pool_max_idle + Duration::from_secs(FALLBACK_MAX_AGE_SECONDS)
        }
    });
    is_abandoned(container, now, Some(max_age))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn object(created: u64, timeout: Option<u64>) -> LabelledObject {
        let mut labels = HashMap::from([(names::LABEL_CREATED.to_owned(), created.to_string())]);
        if let Some(timeout) = timeout {
            labels.insert(names::LABEL_TIMEOUT.to_owned(), timeout.to_string());
        }
        LabelledObject {
            name: "x".into(),
            labels,
            running: false,
        }
    }

    #[test]
    fn abandoned_after_timeout_and_margin() {
        let now = 100_000;
        assert!(!is_abandoned(&object(now - 3600, Some(3600)), now, None));
        assert!(is_abandoned(&object(now - 7300, Some(3600)), now, None));
    }

    #[test]
    fn abandoned_uses_fixed_max_age() {
        let now = 100_000;
        let max_age = Some(Duration::from_secs(60));
        assert!(is_abandoned(&object(now - 61, Some(3600)), now, max_age));
        assert!(!is_abandoned(&object(now - 59, None), now, max_age));
    }

    fn pooled(name: &str, created: u64) -> LabelledObject {
        let labels = HashMap::from([
            (names::LABEL_CREATED.to_owned(), created.to_string()),
            (names::LABEL_POOL_SLOT.to_owned(), "slot-0".to_owned()),
        ]);
        LabelledObject {
            name: name.into(),
            labels,
            running: true,
        }
    }

    #[test]
    fn pooled_containers_age_by_state() {
        let now = 1_000_000;
        let policy = GcPolicy {
            max_age: None,
            dry_run: false,
            runner: None,
            pool_max_idle: Duration::from_secs(3600),
        };
        // A waiting container goes after the idle time, a taken one only after a day more.
        assert!(!is_abandoned_in_pool(
            &pooled("slot-0", now - 3599),
            now,
            &policy
        ));
        assert!(is_abandoned_in_pool(
            &pooled("slot-0", now - 3600),
            now,
            &policy
        ));
        assert!(!is_abandoned_in_pool(
            &pooled("job-1", now - 3600),
            now,
            &policy
        ));
        assert!(is_abandoned_in_pool(
            &pooled("job-1", now - 3600 - 86_400),
            now,
            &policy
        ));
        let fixed = GcPolicy {
            max_age: Some(Duration::ZERO),
            ..policy
        };
        assert!(is_abandoned_in_pool(&pooled("job-1", now), now, &fixed));
    }

    #[test]
    fn abandoned_needs_creation_label() {
        let unlabelled = LabelledObject {
            name: "x".into(),
            labels: HashMap::new(),
            running: false,
        };
        assert!(!is_abandoned(&unlabelled, 1_000_000, Some(Duration::ZERO)));
    }
}
