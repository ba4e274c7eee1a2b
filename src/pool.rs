//! Started, idle job containers that `prepare` takes instead of starting one (setting
//! `pool_size`).
//!
//! Starting a container is most of the time `prepare` takes. A pooled container is created
//! from the configuration a job of that image and project gets, except that its builds
//! directory is an anonymous volume, which Docker removes with the container, instead of
//! the job's named volume. Its key is a digest of that configuration and the image ID, so
//! a job only takes a container that it could have created itself.
//!
//! A pool has `pool_size` slots with fixed names. A job takes a waiting container by
//! renaming it to the job container's name. Docker looks the old name up before it locks
//! the container, so two concurrent renames of one container can both succeed. A lock file
//! in the driver's cache directory therefore lets one job at a time take from a pool. A
//! refill process, which `cleanup` starts in the background, then creates a container in
//! every free slot, under a second lock file, and replaces a slot's container that stopped.
//! Without a cache directory there are no lock files, and the pool stays unused.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

use crate::docker::{ContainerSpec, Docker, Rename, Startup};
use crate::header_cache;
use crate::job::JobContext;
use crate::names;
use crate::progress;

/// Maximum wait for a taken container that is still starting to print its ready line.
const READY_WAIT: Duration = Duration::from_secs(10);
/// Maximum wait for the lock that lets one job at a time take from a pool. It is longer
/// than [`READY_WAIT`], so a job waits out another one's take; after it the job starts its
/// own container.
const TAKE_LOCK_WAIT: Duration = Duration::from_secs(15);
/// Maximum wait for the lock of a refill that another refill holds.
const FILL_LOCK_WAIT: Duration = Duration::from_secs(300);
/// Interval between two attempts to take a lock.
const LOCK_POLL_INTERVAL: Duration = Duration::from_millis(5);
/// Hex digits of the key in names and labels.
const KEY_LENGTH: usize = 16;

/// Returns the pooled form of a job container's configuration: no name or job labels,
/// and an anonymous volume in place of the job's builds volume.
pub fn pooled_spec(job_spec: &ContainerSpec, builds_volume: &str) -> ContainerSpec {
    let mut spec = job_spec.clone();
    spec.name = String::new();
    spec.labels = HashMap::new();
    for (volume, _) in &mut spec.volumes {
        if volume == builds_volume {
            volume.clear();
        }
    }
    spec
}

/// Returns the key of a pooled configuration. It is a digest of every part that Docker
/// applies when it creates the container, of the image ID, and of `settings`. Those are
/// the settings that shape the container in other ways, such as its extra labels and the
/// user who gets its directories.
pub fn key(pooled: &ContainerSpec, image_id: &str, settings: &[(String, String)]) -> String {
    let material = format!(
        "{}\n{image_id}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{}\n{:?}\n{:?}\n{:?}\n{:?}\n{settings:?}",
        env!("CARGO_PKG_VERSION"),
        pooled.image,
        pooled.entrypoint,
        pooled.command,
        pooled.env,
        pooled.hostname,
        pooled.keep_stdin_open,
        pooled.network_mode,
        pooled.volumes,
        pooled.read_only_binds,
        pooled.host,
    );
    let digest = Sha256::digest(material.as_bytes());
    crate::hex::encode(&digest)[..KEY_LENGTH].to_owned()
}

/// Takes a waiting container of the pool with `key` and renames it to `container`, first
/// removing a container of that name left by an earlier attempt. Returns the container's
/// startup output, or `None` when the pool has no usable container. A waiting container
/// whose startup output lacks `marker` is removed.
pub async fn take(
    docker: &Docker,
    job: &JobContext,
    key: &str,
    container: &str,
    marker: &str,
) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(_lock) = PoolLock::acquire(key, "take", TAKE_LOCK_WAIT).await else {
        return Ok(None);
    };
    let filter = [
        format!("{}=true", names::LABEL_MANAGED),
        format!("{}=pool", names::LABEL_SCOPE),
        format!("{}={}", names::LABEL_RUNNER, job.runner_short_token),
        format!("{}={key}", names::LABEL_POOL_KEY),
    ];
    let mut waiting: Vec<_> = docker
        .containers_with_labels(&filter)
        .await?
        .into_iter()
        .filter(|object| object.running && is_waiting(&object.name, &object.labels))
        .collect();
    // The oldest first, so no container waits long enough to be collected.
    waiting.sort_by_key(|object| {
        object
            .labels
            .get(names::LABEL_CREATED)
            .and_then(|created| created.parse::<u64>().ok())
    });
    for candidate in waiting {
        let mut renamed = docker.rename_container(&candidate.name, container).await?;
        if renamed == Rename::NameTaken {
            docker.remove_container(container).await?;
            progress::line(&format!(
                "Removed container {container} left by an earlier attempt"
            ));
            renamed = docker.rename_container(&candidate.name, container).await?;
        }
        match renamed {
            Rename::Done => {}
            Rename::NoSuchContainer => continue,
            Rename::NameTaken => {
                bail!("container `{container}` reappeared while a pooled container took its name")
            }
        }
        if let Some(output) = docker
            .output_before_marker(container, marker, READY_WAIT)
            .await?
        {
            return Ok(Some(output));
        }
        docker.remove_container(container).await?;
    }
    Ok(None)
}

/// Returns whether a pooled container still waits for a job, that is whether it still has
/// the name of its slot.
pub fn is_waiting(name: &str, labels: &HashMap<String, String>) -> bool {
    labels.get(names::LABEL_POOL_SLOT).map(String::as_str) == Some(name)
}

/// Inputs of [`fill`].
pub struct FillRequest<'a> {
    pub job: &'a JobContext,
    pub pooled: ContainerSpec,
    pub key: &'a str,
    pub size: u32,
    pub extra_labels: &'a [(String, String)],
    pub marker: &'a str,
    pub startup_limit: Duration,
}

/// Creates and starts a container in every free slot of the pool, and returns the names
/// of the new containers. `after_start` runs on each started container.
pub async fn fill<F, Fut>(
    docker: &Docker,
    request: FillRequest<'_>,
    after_start: F,
) -> anyhow::Result<Vec<String>>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let Some(_lock) = PoolLock::acquire(request.key, "fill", FILL_LOCK_WAIT).await else {
        bail!(
            "failed to lock the pool's refill within {} s; check that HOME or XDG_CACHE_HOME \
             names a writable directory",
            FILL_LOCK_WAIT.as_secs()
        );
    };
    let mut created = Vec::new();
    for slot in 0..request.size {
        let name = names::pool_slot_name(request.job, request.key, slot);
        let mut spec = request.pooled.clone();
        spec.name = name.clone();
        spec.labels = request.extra_labels.iter().cloned().collect();
        spec.labels
            .extend(names::pool_labels(request.job, request.key, &name));
        if !docker.create_container_unless_taken(&spec).await? {
            // A slot's container that stopped, for example when dockerd restarted, would
            // block the slot until garbage collection.
            let running = docker
                .inspect_container(&name)
                .await?
                .and_then(|details| details.state)
                .and_then(|state| state.running);
            if running != Some(false) {
                continue;
            }
            docker.remove_container(&name).await?;
            docker.create_container(&spec).await?;
        }
        let started = async {
            match docker
                .start_until_marker(&name, request.marker, request.startup_limit)
                .await?
            {
                Startup::Ready(_) => after_start(name.clone()).await,
                Startup::Ended { output, exit_code } => bail!(
                    "pooled container `{name}` stopped while starting (exit code {exit_code:?}): {}",
                    String::from_utf8_lossy(&output).trim()
                ),
            }
        };
        if let Err(error) = started.await {
            // Only a started container may wait in a slot.
            let _ = docker.remove_container(&name).await;
            return Err(error).context("failed to fill the container pool");
        }
        created.push(name);
    }
    Ok(created)
}

/// An exclusive lock on a file in the driver's cache directory, held until dropped.
struct PoolLock {
    _file: std::fs::File,
}

impl PoolLock {
    /// Waits at most `limit` for the lock `purpose` of the pool with `key`. It polls instead
    /// of blocking, so the stage still reacts to signals. Returns `None` when the lock file
    /// cannot be opened or the time runs out.
    async fn acquire(key: &str, purpose: &str, limit: Duration) -> Option<Self> {
        let dir = header_cache::driver_cache_dir()?.join("pool-locks");
        std::fs::create_dir_all(&dir).ok()?;
        let path = dir.join(format!("{key}.{purpose}"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ok()?;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match file.try_lock() {
                Ok(()) => return Some(PoolLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock)
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(LOCK_POLL_INTERVAL).await;
                }
                Err(error) => {
                    tracing::debug!(%error, path = %path.display(), "failed to lock a pool lock file");
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec {
        ContainerSpec {
            name: "job-1".into(),
            image: "img".into(),
            labels: HashMap::from([("io.cross-executor.job-id".into(), "1".into())]),
            volumes: vec![
                ("job-1-builds".into(), "/builds".into()),
                ("cache-7".into(), "/cache".into()),
            ],
            ..ContainerSpec::default()
        }
    }

    #[test]
    fn pooled_spec_has_anonymous_builds_volume() {
        let pooled = pooled_spec(&spec(), "job-1-builds");
        assert_eq!(pooled.volumes[0], (String::new(), "/builds".to_owned()));
        assert_eq!(
            pooled.volumes[1],
            ("cache-7".to_owned(), "/cache".to_owned())
        );
        assert!(pooled.name.is_empty());
        assert!(pooled.labels.is_empty());
    }

    #[test]
    fn key_ignores_job_identity() {
        let mut other = spec();
        other.name = "job-2".into();
        other
            .labels
            .insert("io.cross-executor.job-id".into(), "2".into());
        other.volumes[0].0 = "job-2-builds".into();
        let first = key(&pooled_spec(&spec(), "job-1-builds"), "sha256:a", &[]);
        let second = key(&pooled_spec(&other, "job-2-builds"), "sha256:a", &[]);
        assert_eq!(first, second);
        assert_eq!(first.len(), KEY_LENGTH);
    }

    #[test]
    fn key_follows_configuration() {
        let base = pooled_spec(&spec(), "job-1-builds");
        let reference = key(&base, "sha256:a", &[]);
        assert_ne!(key(&base, "sha256:b", &[]), reference);
        let mut with_env = base.clone();
        with_env.env.push("QEMU_CPU=arm1176".into());
        assert_ne!(key(&with_env, "sha256:a", &[]), reference);
        let mut other_cache = base.clone();
        other_cache.volumes[1].0 = "cache-8".into();
        assert_ne!(key(&other_cache, "sha256:a", &[]), reference);
        let labels = [("label team".to_owned(), "arm".to_owned())];
        assert_ne!(key(&base, "sha256:a", &labels), reference);
        let user = [("user".to_owned(), "1000:1000".to_owned())];
        assert_ne!(key(&base, "sha256:a", &user), reference);
    }

    #[test]
    fn waiting_means_slot_name_kept() {
        let labels = HashMap::from([(names::LABEL_POOL_SLOT.to_owned(), "slot-0".to_owned())]);
        assert!(is_waiting("slot-0", &labels));
        assert!(!is_waiting("job-1", &labels));
        assert!(!is_waiting("slot-0", &HashMap::new()));
    }
}
