//! Garbage collection of job containers and volumes whose cleanup never came, for example
//! because the runner crashed or was killed.
//!
//! Only objects with the driver's `scope=job` or `scope=pool` label are candidates; the
//! projects' shared cache volumes are never removed. A job object is abandoned once its
//! job's timeout (from its labels) plus a margin has passed since it was created, or, when
//! a maximum age is given, once it is older than that. A pooled container that still waits
//! is abandoned after the pool's maximum idle time, or the maximum age when one is given.
//! A pooled container that a job took counts as a job object created when the job took
//! it. Its labels cannot change, so the labels of the job's builds volume, which `prepare`
//! creates just before taking, decide for it. Without that volume it is abandoned a day
//! after the pool's maximum idle time.

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

    let containers = docker.containers_with_labels(&filter).await?;
    filter.push(format!("{}=job", names::LABEL_SCOPE));
    let volumes = docker.volumes_with_labels(&filter).await?;
    for container in containers {
        let abandoned = match container.labels.get(names::LABEL_SCOPE).map(String::as_str) {
            Some("job") => is_abandoned(&container, now, policy.max_age),
            Some("pool") => {
                let builds_volume = names::builds_volume_of(&container.name);
                let record = volumes.iter().find(|volume| volume.name == builds_volume);
                is_abandoned_in_pool(&container, record, now, &policy)
            }
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
    for volume in volumes {
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

/// Decides for a pooled container. `record` is the builds volume of the job that took it,
/// if any.
fn is_abandoned_in_pool(
    container: &LabelledObject,
    record: Option<&LabelledObject>,
    now: u64,
    policy: &GcPolicy,
) -> bool {
    if pool::is_waiting(&container.name, &container.labels) {
        let max_age = policy.max_age.unwrap_or(policy.pool_max_idle);
        return is_abandoned(container, now, Some(max_age));
    }
    match record {
        Some(volume) => is_abandoned(volume, now, policy.max_age),
        None => {
            let max_age = policy.pool_max_idle + Duration::from_secs(FALLBACK_MAX_AGE_SECONDS);
            is_abandoned(container, now, Some(max_age))
        }
    }
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

    fn policy(max_age: Option<u64>) -> GcPolicy {
        GcPolicy {
            max_age: max_age.map(Duration::from_secs),
            dry_run: false,
            runner: None,
            pool_max_idle: Duration::from_secs(3600),
        }
    }

    #[test]
    fn waiting_pooled_container_ages_from_creation() {
        let now = 1_000_000;
        let waiting = |created| pooled("slot-0", created);
        assert!(!is_abandoned_in_pool(
            &waiting(now - 3599),
            None,
            now,
            &policy(None)
        ));
        assert!(is_abandoned_in_pool(
            &waiting(now - 3600),
            None,
            now,
            &policy(None)
        ));
        assert!(is_abandoned_in_pool(
            &waiting(now - 30),
            None,
            now,
            &policy(Some(30))
        ));
    }

    #[test]
    fn taken_pooled_container_ages_with_its_job() {
        let now = 1_000_000;
        // Created long ago, taken 10 s ago by a job with a one-hour timeout.
        let in_use = pooled("job-1", now - 7200);
        let record = object(now - 10, Some(3600));
        assert!(!is_abandoned_in_pool(
            &in_use,
            Some(&record),
            now,
            &policy(Some(30))
        ));
        assert!(!is_abandoned_in_pool(
            &in_use,
            Some(&record),
            now,
            &policy(None)
        ));
        let old_record = object(now - 3600 - 3600, Some(3600));
        assert!(is_abandoned_in_pool(
            &in_use,
            Some(&old_record),
            now,
            &policy(None)
        ));
        // Without its record, a taken container gets a day more than the idle time.
        assert!(!is_abandoned_in_pool(&in_use, None, now, &policy(None)));
        let day_old = pooled("job-1", now - 3600 - 86_400);
        assert!(is_abandoned_in_pool(&day_old, None, now, &policy(None)));
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
