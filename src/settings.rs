//! The driver's settings file (TOML), read in two steps: the raw file with serde, then
//! checks that need more than a type (absolute paths, non-empty names).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::env::{self, EnvSnapshot};

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
    /// Age in seconds after which `gc` and the sweep in `prepare` remove a job's container
    /// and volumes; when unset, the job's timeout plus one hour.
    pub gc_max_age: Option<u64>,
}

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
        Self::parse(&text).with_context(|| format!("invalid settings file `{}`", path.display()))
    }

    /// Parses and checks settings text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let settings: Settings =
            toml::from_str(text).map_err(|error| anyhow::anyhow!("{error}"))?;
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
        if let Some(mode) = &self.network_mode {
            if mode.trim().is_empty() {
                bail!("`network_mode` must name a Docker network mode, or be left out");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn settings_reject_invalid_pull_policy() {
        let error = Settings::parse("pull_policy = \"sometimes\"").unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("sometimes"), "{message}");
        assert!(message.contains("if-not-present"), "{message}");
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
