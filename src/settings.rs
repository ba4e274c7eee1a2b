//! The driver's settings file (TOML), read in two steps: the raw file with serde, then
//! checks that need more than a type (absolute paths, non-empty names).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use globset::Glob;
use serde::Deserialize;

use crate::admin::binfmt_register::{arch_from_qemu_name, DEFAULT_ARCHES};
use crate::env::{self, EnvSnapshot};
use crate::platform::Platform;

/// When to pull the job's image from its registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Pull before every job.
    Always,
    /// Use the local image; pull only when it is missing.
    #[default]
    IfNotPresent,
    /// Use only local images.
    Never,
}

impl PullPolicy {
    /// Parses the name used by GitLab's `image:pull_policy` and the settings file.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "always" => Some(PullPolicy::Always),
            "if-not-present" => Some(PullPolicy::IfNotPresent),
            "never" => Some(PullPolicy::Never),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "always",
            PullPolicy::IfNotPresent => "if-not-present",
            PullPolicy::Never => "never",
        }
    }
}

/// Validated driver settings. Every field has a default, so no settings file is needed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Image for jobs whose `.gitlab-ci.yml` names none.
    pub default_image: Option<String>,
    /// Pull policy used when the job names none.
    pub pull_policy: PullPolicy,
    /// Directory inside the job container where projects are checked out (a Docker volume).
    pub builds_dir: String,
    /// Directory inside the job container for the runner's local cache (a Docker volume).
    pub cache_dir: String,
    /// Docker network mode of job containers, for example `bridge` or `none`; Docker's
    /// default when unset.
    pub network_mode: Option<String>,
    /// Seconds between SIGTERM and SIGKILL for the job's processes when a stage is canceled.
    pub stop_timeout: u64,
    /// Age in seconds after which `gc` and the sweep (in `prepare`, or in the pool's refill)
    /// remove a job's container and volumes. When unset, the job's timeout plus one hour.
    pub gc_max_age: Option<u64>,
    /// QEMU CPU model per platform (`QEMU_CPU` in the container), merged over the defaults;
    /// an empty value turns a default off.
    pub qemu_cpu: BTreeMap<String, String>,
    /// Platforms by image name pattern, for images whose metadata lacks or misstates it.
    pub image_platforms: Vec<ImagePlatform>,
    /// QEMU architecture names that `doctor` checks.
    pub architectures: Vec<String>,

    /// Glob patterns of the images jobs may use; any image when empty.
    pub allowed_images: Vec<String>,
    /// Pull policies a job's `image:pull_policy` may choose; any when empty.
    pub allowed_pull_policies: Vec<PullPolicy>,
    /// Memory limit of the job container, such as `512m` or `2g`.
    pub memory: Option<String>,
    /// Memory plus swap limit, such as `1g`; `-1` allows unlimited swap.
    pub memory_swap: Option<String>,
    /// CPUs the job container may use, such as `1.5`.
    pub cpus: Option<f64>,
    /// Maximum number of processes in the job container; 0 or -1 removes the limit.
    pub pids_limit: i64,
    /// Size of `/dev/shm`, such as `64m`.
    pub shm_size: Option<String>,
    /// Resource limits by name, each `soft:hard` or one number for both, such as
    /// `nofile = "1024:4096"`.
    pub ulimits: BTreeMap<String, String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// Docker security options; `no-new-privileges` by default.
    pub security_opt: Vec<String>,
    /// Run job containers privileged. With `allowed_privileged_images` set, only images that
    /// match one of its patterns run privileged.
    pub privileged: bool,
    pub allowed_privileged_images: Vec<String>,
    /// User (name or uid[:gid]) that runs the job's scripts; the image's user when unset.
    pub user: Option<String>,
    pub dns: Vec<String>,
    /// Extra `/etc/hosts` entries as `host:address`.
    pub extra_hosts: Vec<String>,
    /// Bind mounts `HOST:CONTAINER[:ro|rw]` or anonymous volumes `CONTAINER`. Host paths
    /// come only from here, never from the job.
    pub volumes: Vec<String>,
    /// tmpfs mounts by container path, with mount options such as `rw,size=64m`.
    pub tmpfs: BTreeMap<String, String>,
    /// Host devices `HOST[:CONTAINER[:PERMISSIONS]]`, such as `/dev/fuse`.
    pub devices: Vec<String>,
    /// Extra labels of job containers.
    pub labels: BTreeMap<String, String>,
    /// Extra `NAME=value` environment entries of job containers.
    pub environment: Vec<String>,
    /// Registry credentials in the format of `DOCKER_AUTH_CONFIG` (a Docker `config.json`).
    pub docker_auth_config: Option<String>,
    /// Image of the host's architecture with git and gitlab-runner; when set, the source,
    /// cache and artifact stages run natively in a helper container of it.
    pub helper_image: Option<String>,
    /// Statically linked gitlab-runner on the host, mounted read-only into the job container
    /// as `/usr/local/bin/gitlab-runner`.
    pub gitlab_runner_binary: Option<String>,
    /// Started, idle job containers kept for each image and project, so `prepare` can take
    /// one instead of starting a container; 0 turns the pool off.
    pub pool_size: u32,
    /// Seconds an idle pooled container waits for a job before garbage collection removes it.
    pub pool_max_idle: u64,
    /// The settings file these settings came from, passed on to the pool's refill process.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// A platform for the images whose reference matches a glob pattern.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePlatform {
    /// Glob over the image reference, for example `registry.example.com/raspbian/*`.
    pub image: String,
    /// Platform string, for example `linux/arm/v6`.
    pub platform: String,
}

/// Maximum value of `pool_size`, because every pooled container uses memory while it waits.
const MAX_POOL_SIZE: u32 = 16;
/// Default `pool_max_idle`: one hour.
const DEFAULT_POOL_MAX_IDLE: u64 = 3600;

/// Default process limit: enough for parallel builds, low enough to stop a fork bomb.
const DEFAULT_PIDS_LIMIT: i64 = 4096;

/// CPU models applied unless the settings override them. QEMU's default ARM CPU implements
/// ARMv7, while Raspberry Pi 1 and Zero boards have an ARM1176 (ARMv6).
const DEFAULT_QEMU_CPUS: [(&str, &str); 1] = [("linux/arm/v6", "arm1176")];

impl Default for Settings {
    fn default() -> Self {
        Settings {
            default_image: None,
            pull_policy: PullPolicy::default(),
            builds_dir: "/builds".to_owned(),
            cache_dir: "/cache".to_owned(),
            network_mode: None,
            stop_timeout: 10,
            gc_max_age: None,
            qemu_cpu: BTreeMap::new(),
            image_platforms: Vec::new(),
            architectures: DEFAULT_ARCHES.iter().map(|name| name.to_string()).collect(),
            allowed_images: Vec::new(),
            allowed_pull_policies: Vec::new(),
            memory: None,
            memory_swap: None,
            cpus: None,
            pids_limit: DEFAULT_PIDS_LIMIT,
            shm_size: None,
            ulimits: BTreeMap::new(),
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            security_opt: vec!["no-new-privileges".to_owned()],
            privileged: false,
            allowed_privileged_images: Vec::new(),
            user: None,
            dns: Vec::new(),
            extra_hosts: Vec::new(),
            volumes: Vec::new(),
            tmpfs: BTreeMap::new(),
            devices: Vec::new(),
            labels: BTreeMap::new(),
            environment: Vec::new(),
            docker_auth_config: None,
            helper_image: None,
            gitlab_runner_binary: None,
            pool_size: 0,
            pool_max_idle: DEFAULT_POOL_MAX_IDLE,
            file: None,
        }
    }
}

impl Settings {
    /// Loads the settings from `--config`, else from `CROSS_EXECUTOR_CONFIG`, else defaults.
    pub fn load(cli_path: Option<&Path>, snapshot: &EnvSnapshot) -> anyhow::Result<Self> {
        let path: Option<PathBuf> = cli_path
            .map(Path::to_path_buf)
            .or_else(|| snapshot.path(env::SETTINGS_FILE));
        let Some(path) = path else {
            return Ok(Settings::default());
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("failed to read the settings file `{}`", path.display()))?;
        let mut settings = Self::parse(&text)
            .with_context(|| format!("invalid settings file `{}`", path.display()))?;
        settings.file = Some(std::path::absolute(&path).unwrap_or(path));
        Ok(settings)
    }

    /// Parses and checks settings text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let settings: Settings = toml::from_str(text).map_err(|error| {
            // The error is reported without the quoted source line, which could hold
            // `docker_auth_config` and so a credential; the job log shows this message.
            let position = error
                .span()
                .map(|span| {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
                    // The key before `=` names the setting without showing its value.
                    let key = text
                        .lines()
                        .nth(line - 1)
                        .and_then(|source| source.split_once('='))
                        .map(|(key, _)| key.trim())
                        .filter(|key| !key.is_empty() && !key.starts_with('['))
                        .map(|key| format!(" (key `{key}`)"))
                        .unwrap_or_default();
                    format!(" at line {line}, column {column}{key}")
                })
                .unwrap_or_default();
            anyhow::anyhow!("{}{position}", error.message().trim_end())
        })?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        for (key, value) in [
            ("builds_dir", &self.builds_dir),
            ("cache_dir", &self.cache_dir),
        ] {
            if !value.starts_with('/') || value.trim_end_matches('/').is_empty() {
                bail!("`{key}` must be an absolute directory other than `/`, got `{value}`");
            }
        }
        if self.builds_dir.trim_end_matches('/') == self.cache_dir.trim_end_matches('/') {
            bail!(
                "`builds_dir` and `cache_dir` must differ, both are `{}`",
                self.builds_dir
            );
        }
        if let Some(image) = &self.default_image {
            if image.trim().is_empty() {
                bail!("`default_image` must name an image, or be left out");
            }
        }
        for (platform, cpu) in &self.qemu_cpu {
            Platform::parse(platform)
                .with_context(|| format!("invalid platform `{platform}` in `qemu_cpu`"))?;
            if cpu.contains(char::is_whitespace) {
                bail!("invalid CPU model `{cpu}` for `{platform}` in `qemu_cpu`; run `qemu-arm-static -cpu help` for the names");
            }
        }
        for entry in &self.image_platforms {
            Glob::new(&entry.image).with_context(|| {
                format!(
                    "invalid image pattern `{}` in `image_platforms`",
                    entry.image
                )
            })?;
            Platform::parse(&entry.platform).with_context(|| {
                format!(
                    "invalid platform in `image_platforms` for `{}`",
                    entry.image
                )
            })?;
        }
        for name in &self.architectures {
            arch_from_qemu_name(name).context("invalid entry in `architectures`")?;
        }
        crate::container_options::validate(self)?;
        if self.pool_size > MAX_POOL_SIZE {
            bail!(
                "`pool_size` is {}, more than the maximum of {MAX_POOL_SIZE}",
                self.pool_size
            );
        }
        if self.pool_size > 0 && self.helper_image.is_some() {
            bail!(
                "`pool_size` cannot be combined with `helper_image`, because the helper container \
                 cannot mount the builds volume of a pooled container; remove one of the two \
                 settings"
            );
        }
        if let Some(mode) = &self.network_mode {
            if mode.trim().is_empty() {
                bail!("`network_mode` must name a Docker network mode, or be left out");
            }
        }
        Ok(())
    }
}

impl Settings {
    /// Returns the platform the settings assign to `image`; the first matching pattern wins.
    pub fn platform_for_image(&self, image: &str) -> Option<Platform> {
        self.image_platforms
            .iter()
            .find(|entry| {
                Glob::new(&entry.image)
                    .map(|glob| glob.compile_matcher().is_match(image))
                    .unwrap_or(false)
            })
            .and_then(|entry| Platform::parse(&entry.platform).ok())
    }

    /// Returns the QEMU CPU model for a platform, if one applies.
    pub fn qemu_cpu_for(&self, platform: &Platform) -> Option<String> {
        let key = platform.canonical();
        let configured = self.qemu_cpu.get(&key).cloned().or_else(|| {
            DEFAULT_QEMU_CPUS
                .iter()
                .find(|(default_key, _)| *default_key == key)
                .map(|(_, cpu)| cpu.to_string())
        });
        configured.filter(|cpu| !cpu.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_settings_parse() {
        let text = include_str!("../config-examples/settings.toml");
        let settings = Settings::parse(text).unwrap();
        assert_eq!(settings.pids_limit, 4096);
    }

    #[test]
    fn settings_default_without_file() {
        let settings = Settings::parse("").unwrap();
        assert_eq!(settings.builds_dir, "/builds");
        assert_eq!(settings.pull_policy, PullPolicy::IfNotPresent);
    }

    #[test]
    fn settings_reject_unknown_key_with_name_and_line() {
        let error = Settings::parse("default_image = \"x\"\nbuild_dir = \"/b\"\n").unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("build_dir"), "{message}");
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn syntax_error_does_not_quote_line() {
        let text =
            "docker_auth_config = '{\"auths\": {\"r\": {\"password\": \"hunter2\"}}}' oops\n";
        let message = format!("{:#}", Settings::parse(text).unwrap_err());
        assert!(message.contains("line 1"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn settings_reject_invalid_pull_policy() {
        let error = Settings::parse("pull_policy = \"sometimes\"").unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("sometimes"), "{message}");
        assert!(message.contains("if-not-present"), "{message}");
    }

    #[test]
    fn qemu_cpu_defaults_to_arm1176_for_v6() {
        let settings = Settings::parse("").unwrap();
        let v6 = Platform::parse("linux/arm/v6").unwrap();
        assert_eq!(settings.qemu_cpu_for(&v6).as_deref(), Some("arm1176"));
        let v7 = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(settings.qemu_cpu_for(&v7), None);
    }

    #[test]
    fn qemu_cpu_override_and_disable() {
        let settings = Settings::parse(
            "[qemu_cpu]\n\"linux/arm/v6\" = \"\"\n\"linux/arm/v7\" = \"cortex-a7\"\n",
        )
        .unwrap();
        let v6 = Platform::parse("linux/arm/v6").unwrap();
        assert_eq!(settings.qemu_cpu_for(&v6), None);
        let v7 = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(settings.qemu_cpu_for(&v7).as_deref(), Some("cortex-a7"));
    }

    #[test]
    fn image_platforms_match_by_glob() {
        let settings = Settings::parse(
            "[[image_platforms]]\nimage = \"registry.example.com/raspbian/*\"\nplatform = \"linux/arm/v6\"\n",
        )
        .unwrap();
        let platform = settings
            .platform_for_image("registry.example.com/raspbian/bookworm:1")
            .unwrap();
        assert_eq!(platform.canonical(), "linux/arm/v6");
        assert!(settings.platform_for_image("debian:12").is_none());
    }

    #[test]
    fn image_platforms_reject_bad_platform() {
        let error =
            Settings::parse("[[image_platforms]]\nimage = \"x\"\nplatform = \"linux/z80\"\n")
                .unwrap_err();
        assert!(format!("{error:#}").contains("z80"), "{error:#}");
    }

    #[test]
    fn pool_size_checked() {
        let settings = Settings::parse("pool_size = 2\n").unwrap();
        assert_eq!(settings.pool_size, 2);
        assert_eq!(settings.pool_max_idle, DEFAULT_POOL_MAX_IDLE);
        let too_large = Settings::parse("pool_size = 17\n").unwrap_err();
        assert!(
            format!("{too_large:#}").contains("maximum of 16"),
            "{too_large:#}"
        );
        let with_helper =
            Settings::parse("pool_size = 1\nhelper_image = \"helper:1\"\n").unwrap_err();
        assert!(
            format!("{with_helper:#}").contains("helper_image"),
            "{with_helper:#}"
        );
    }

    #[test]
    fn settings_reject_relative_builds_dir() {
        let error = Settings::parse("builds_dir = \"builds\"").unwrap_err();
        assert!(format!("{error:#}").contains("builds_dir"));
    }

    #[test]
    fn settings_reject_same_builds_and_cache_dir() {
        let error = Settings::parse("builds_dir = \"/x\"\ncache_dir = \"/x/\"").unwrap_err();
        assert!(format!("{error:#}").contains("must differ"));
    }
}
