//! Turns the container settings (limits, capabilities, mounts, allow-lists) into checked,
//! typed values for the job container, and decides which image and pull policy a job may use.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use globset::Glob;

use crate::settings::{PullPolicy, Settings};

/// Host configuration of a job container, derived from the settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostOptions {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub pids_limit: Option<i64>,
    pub shm_size: Option<i64>,
    /// Resource limits as (name, soft, hard).
    pub ulimits: Vec<(String, i64, i64)>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    pub privileged: bool,
    pub dns: Vec<String>,
    pub extra_hosts: Vec<String>,
    /// Bind mounts and anonymous volumes in Docker's `Binds` form.
    pub binds: Vec<String>,
    pub tmpfs: BTreeMap<String, String>,
    /// Devices as (host path, container path, cgroup permissions).
    pub devices: Vec<(String, String, String)>,
}

/// Checks every container setting, naming the key and the accepted form on error.
pub fn validate(settings: &Settings) -> anyhow::Result<()> {
    host_options(settings, "")?;
    for pattern in settings
        .allowed_images
        .iter()
        .chain(&settings.allowed_privileged_images)
    {
        Glob::new(pattern).with_context(|| format!("invalid image pattern `{pattern}`"))?;
    }
    for entry in &settings.environment {
        if !entry.contains('=') || entry.starts_with('=') {
            bail!("invalid `environment` entry `{entry}`; use the form `NAME=value`");
        }
    }
    if let Some(user) = &settings.user {
        if user.trim().is_empty() || user.contains(char::is_whitespace) {
            bail!("invalid `user` `{user}`; use a name or `uid[:gid]`");
        }
    }
    if let Some(image) = &settings.helper_image {
        if image.trim().is_empty() {
            bail!("`helper_image` must name an image, or be left out");
        }
    }
    if let Some(path) = &settings.gitlab_runner_binary {
        if !path.starts_with('/') {
            bail!("invalid `gitlab_runner_binary` `{path}`; use an absolute path on the host");
        }
    }
    if let Some(auth) = &settings.docker_auth_config {
        // The parse error is left out because it can quote a credential.
        if serde_json::from_str::<serde_json::Value>(auth).is_err() {
            bail!("invalid `docker_auth_config`; it must be the JSON of a Docker config.json");
        }
    }
    Ok(())
}

/// Builds the host configuration for a container of `image`.
pub fn host_options(settings: &Settings, image: &str) -> anyhow::Result<HostOptions> {
    let memory = parse_optional_size("memory", settings.memory.as_deref())?;
    let memory_swap = match settings.memory_swap.as_deref() {
        Some("-1") => Some(-1),
        other => parse_optional_size("memory_swap", other)?,
    };
    if let (Some(memory), Some(swap)) = (memory, memory_swap) {
        if swap != -1 && swap < memory {
            bail!("`memory_swap` ({swap} bytes) must be at least `memory` ({memory} bytes), or -1");
        }
    }
    if memory_swap.is_some() && memory.is_none() {
        bail!("`memory_swap` needs `memory` to be set too");
    }
    let nano_cpus = match settings.cpus {
        None => None,
        Some(cpus) if cpus > 0.0 && cpus.is_finite() => Some((cpus * 1e9) as i64),
        Some(cpus) => bail!("invalid `cpus` {cpus}; use a positive number such as 1.5"),
    };
    let pids_limit = (settings.pids_limit > 0).then_some(settings.pids_limit);

    let mut ulimits = Vec::new();
    for (name, value) in &settings.ulimits {
        ulimits.push(parse_ulimit(name, value)?);
    }
    let mut binds = Vec::new();
    for volume in &settings.volumes {
        binds.push(parse_volume(volume)?);
    }
    let mut devices = Vec::new();
    for device in &settings.devices {
        devices.push(parse_device(device)?);
    }
    for path in settings.tmpfs.keys() {
        if !path.starts_with('/') {
            bail!("invalid `tmpfs` path `{path}`; use an absolute path in the container");
        }
    }
    for host in &settings.extra_hosts {
        if host
            .split_once(':')
            .is_none_or(|(name, address)| name.is_empty() || address.is_empty())
        {
            bail!("invalid `extra_hosts` entry `{host}`; use the form `host:address`");
        }
    }

    Ok(HostOptions {
        memory,
        memory_swap,
        nano_cpus,
        pids_limit,
        shm_size: parse_optional_size("shm_size", settings.shm_size.as_deref())?,
        ulimits,
        cap_add: settings.cap_add.clone(),
        cap_drop: settings.cap_drop.clone(),
        security_opt: settings.security_opt.clone(),
        privileged: settings.privileged
            && (settings.allowed_privileged_images.is_empty()
                || matches_any(&settings.allowed_privileged_images, image)),
        dns: settings.dns.clone(),
        extra_hosts: settings.extra_hosts.clone(),
        binds,
        tmpfs: settings.tmpfs.clone(),
        devices,
    })
}

/// Fails unless `image` matches `allowed_images` (when that list is set).
pub fn check_image_allowed(settings: &Settings, image: &str) -> anyhow::Result<()> {
    if settings.allowed_images.is_empty() || matches_any(&settings.allowed_images, image) {
        return Ok(());
    }
    bail!(
        "image `{image}` is not allowed by `allowed_images` ({}); use an allowed image or ask \
         the runner's admin to extend the list",
        settings.allowed_images.join(", ")
    )
}

/// Picks the pull policy: the first of the job's policies that the settings allow, else the
/// settings' own policy. A job policy outside `allowed_pull_policies` is an error.
pub fn choose_pull_policy(
    settings: &Settings,
    job_policies: &[String],
) -> anyhow::Result<PullPolicy> {
    let allowed = |policy: PullPolicy| {
        settings.allowed_pull_policies.is_empty()
            || settings.allowed_pull_policies.contains(&policy)
    };
    if job_policies.is_empty() {
        if !allowed(settings.pull_policy) {
            bail!(
                "`pull_policy` `{}` is not in `allowed_pull_policies`; fix the settings",
                settings.pull_policy.as_str()
            );
        }
        return Ok(settings.pull_policy);
    }
    let mut parsed = Vec::new();
    for name in job_policies {
        let policy = PullPolicy::parse(name).with_context(|| {
            format!("invalid pull policy `{name}` in the job; use `always`, `if-not-present` or `never`")
        })?;
        parsed.push(policy);
    }
    parsed
        .into_iter()
        .find(|policy| allowed(*policy))
        .with_context(|| {
            let allowed: Vec<&str> = settings
                .allowed_pull_policies
                .iter()
                .map(|policy| policy.as_str())
                .collect();
            format!(
                "the job's pull policy ({}) is not allowed on this runner; allowed: {}",
                job_policies.join(", "),
                allowed.join(", ")
            )
        })
}

fn matches_any(patterns: &[String], image: &str) -> bool {
    patterns.iter().any(|pattern| {
        Glob::new(pattern)
            .map(|glob| glob.compile_matcher().is_match(image))
            .unwrap_or(false)
    })
}

fn parse_optional_size(key: &str, value: Option<&str>) -> anyhow::Result<Option<i64>> {
    value.map(|text| parse_size(key, text)).transpose()
}

/// Parses a byte size such as `512m`, `2g`, `64MiB` or `1048576`.
pub fn parse_size(key: &str, text: &str) -> anyhow::Result<i64> {
    let lower = text.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let multiplier: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => bail!("invalid `{key}` `{text}`; use a size such as 512m or 2g"),
    };
    match number.parse::<f64>() {
        Ok(value) if value > 0.0 => Ok((value * multiplier) as i64),
        _ => bail!("invalid `{key}` `{text}`; use a size such as 512m or 2g"),
    }
}

fn parse_ulimit(name: &str, value: &str) -> anyhow::Result<(String, i64, i64)> {
    let invalid = || {
        anyhow::anyhow!(
            "invalid `ulimits` entry `{name} = \"{value}\"`; use `soft:hard` or one number"
        )
    };
    let (soft, hard) = value.split_once(':').unwrap_or((value, value));
    let soft: i64 = soft.trim().parse().map_err(|_| invalid())?;
    let hard: i64 = hard.trim().parse().map_err(|_| invalid())?;
    if soft > hard || name.is_empty() {
        return Err(invalid());
    }
    Ok((name.to_owned(), soft, hard))
}

fn parse_volume(volume: &str) -> anyhow::Result<String> {
    let parts: Vec<&str> = volume.split(':').collect();
    let valid = match parts.as_slice() {
        [container] => container.starts_with('/'),
        [host, container] => host.starts_with('/') && container.starts_with('/'),
        [host, container, mode] => {
            host.starts_with('/') && container.starts_with('/') && matches!(*mode, "ro" | "rw")
        }
        _ => false,
    };
    if !valid {
        bail!("invalid `volumes` entry `{volume}`; use `/host/path:/container/path[:ro|rw]` or `/container/path`");
    }
    Ok(volume.to_owned())
}

fn parse_device(device: &str) -> anyhow::Result<(String, String, String)> {
    let parts: Vec<&str> = device.split(':').collect();
    let (host, container, permissions) = match parts.as_slice() {
        [host] => (*host, *host, "rwm"),
        [host, container] => (*host, *container, "rwm"),
        [host, container, permissions] => (*host, *container, *permissions),
        _ => ("", "", ""),
    };
    let permissions_valid =
        !permissions.is_empty() && permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
    if !host.starts_with('/') || !container.starts_with('/') || !permissions_valid {
        bail!("invalid `devices` entry `{device}`; use `/dev/host[:/dev/container[:rwm]]`");
    }
    Ok((
        host.to_owned(),
        container.to_owned(),
        permissions.to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> anyhow::Result<Settings> {
        Settings::parse(text)
    }

    #[test]
    fn safe_defaults() {
        let options = host_options(&settings("").unwrap(), "any").unwrap();
        assert!(!options.privileged);
        assert_eq!(options.security_opt, vec!["no-new-privileges".to_string()]);
        assert_eq!(options.pids_limit, Some(4096));
        assert!(options.binds.is_empty());
        assert!(options.devices.is_empty());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("memory", "512m").unwrap(), 512 * 1024 * 1024);
        assert_eq!(parse_size("memory", "2G").unwrap(), 2 * 1024 * 1024 * 1024);
        assert_eq!(parse_size("memory", "1048576").unwrap(), 1024 * 1024);
        assert!(parse_size("memory", "lots").is_err());
        assert!(parse_size("memory", "-5m").is_err());
    }

    #[test]
    fn invalid_values_name_key() {
        let cases = [
            ("memory = \"many\"", "`memory`"),
            ("cpus = -1.0", "`cpus`"),
            ("memory = \"1g\"\nmemory_swap = \"512m\"", "`memory_swap`"),
            ("memory_swap = \"1g\"", "`memory_swap` needs `memory`"),
            ("[ulimits]\nnofile = \"2048:1024\"", "`ulimits`"),
            ("volumes = [\"relative:/x\"]", "`volumes`"),
            ("devices = [\"/dev/fuse:/dev/fuse:xyz\"]", "`devices`"),
            ("[tmpfs]\n\"tmp\" = \"rw\"", "`tmpfs`"),
            ("extra_hosts = [\"nohost\"]", "`extra_hosts`"),
            ("environment = [\"NOVALUE\"]", "`environment`"),
            ("allowed_images = [\"[\"]", "image pattern"),
            ("docker_auth_config = \"{not json\"", "`docker_auth_config`"),
            ("allowed_pull_policies = [\"sometimes\"]", "sometimes"),
        ];
        for (text, expected) in cases {
            let error = settings(text).expect_err(text);
            let message = format!("{error:#}");
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn privileged_only_for_allowed_images() {
        let settings =
            settings("privileged = true\nallowed_privileged_images = [\"docker:*\"]").unwrap();
        assert!(host_options(&settings, "docker:24").unwrap().privileged);
        assert!(!host_options(&settings, "debian:12").unwrap().privileged);
    }

    #[test]
    fn allowed_images_reject_others() {
        let settings = settings("allowed_images = [\"registry.local/arm/*\"]").unwrap();
        assert!(check_image_allowed(&settings, "registry.local/arm/debian:12").is_ok());
        let error = check_image_allowed(&settings, "evil/image").unwrap_err();
        assert!(format!("{error:#}").contains("evil/image"));
    }

    #[test]
    fn pull_policy_within_allowed() {
        let settings = settings(
            "allowed_pull_policies = [\"never\", \"if-not-present\"]\npull_policy = \"never\"",
        )
        .unwrap();
        assert_eq!(
            choose_pull_policy(&settings, &[]).unwrap(),
            PullPolicy::Never
        );
        let job = ["always".to_string(), "if-not-present".to_string()];
        assert_eq!(
            choose_pull_policy(&settings, &job).unwrap(),
            PullPolicy::IfNotPresent
        );
        let error = choose_pull_policy(&settings, &["always".to_string()]).unwrap_err();
        assert!(format!("{error:#}").contains("not allowed"), "{error:#}");
    }
}
