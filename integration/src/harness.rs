//! The runner-side settings: how to invoke the driver (`[runners.custom]`) and
//! the `[[runners]]` values that matter for a custom executor.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::output::StdoutCapture;
use crate::process::KillTimeouts;

/// The four driver stages the runner invokes directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StageKind {
    Config,
    Prepare,
    Run,
    Cleanup,
}

impl StageKind {
    /// Returns the name used in stage records: `config`, `prepare`, `run`, `cleanup`.
    pub fn name(self) -> &'static str {
        match self {
            StageKind::Config => "config",
            StageKind::Prepare => "prepare",
            StageKind::Run => "run",
            StageKind::Cleanup => "cleanup",
        }
    }
}

/// How to start the driver: one executable, with `*_args` per stage.
///
/// Defaults match a driver configured as `config_args = ["config"]`,
/// `prepare_args = ["prepare"]`, `run_args = ["run"]`,
/// `cleanup_args = ["cleanup"]`, with the same executable in all four
/// `*_exec` keys.
#[derive(Clone, Debug)]
pub struct DriverCommand {
    pub program: PathBuf,
    /// `None` leaves `config_exec` empty, so the stage is skipped.
    pub config_args: Option<Vec<OsString>>,
    pub prepare_args: Option<Vec<OsString>>,
    /// For run, the script path and stage name are appended.
    pub run_args: Vec<OsString>,
    pub cleanup_args: Option<Vec<OsString>>,
    /// Whether the runner's own environment starts as the harness's environment
    /// (`true`) or empty.
    pub inherit_host_env: bool,
    /// Variables added to the runner's own environment, such as `DOCKER_HOST`
    /// or `CROSS_EXECUTOR_CONFIG`.
    pub host_env: Vec<(OsString, OsString)>,
}

impl DriverCommand {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        DriverCommand {
            program: program.into(),
            config_args: Some(vec!["config".into()]),
            prepare_args: Some(vec!["prepare".into()]),
            run_args: vec!["run".into()],
            cleanup_args: Some(vec!["cleanup".into()]),
            inherit_host_env: true,
            host_env: Vec::new(),
        }
    }

    /// Inserts `args` before the stage word of every stage, for example
    /// `["--config", "settings.toml"]`.
    pub fn leading_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let leading: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let prepend = |args: &mut Vec<OsString>| {
            let mut combined = leading.clone();
            combined.append(args);
            *args = combined;
        };
        for args in [
            &mut self.config_args,
            &mut self.prepare_args,
            &mut self.cleanup_args,
        ]
        .into_iter()
        .flatten()
        {
            prepend(args);
        }
        prepend(&mut self.run_args);
        self
    }

    /// Replaces the arguments of one stage. For `Run` they still get the script
    /// path and stage name appended.
    pub fn stage_args<I, S>(mut self, stage: StageKind, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        match stage {
            StageKind::Config => self.config_args = Some(args),
            StageKind::Prepare => self.prepare_args = Some(args),
            StageKind::Run => self.run_args = args,
            StageKind::Cleanup => self.cleanup_args = Some(args),
        }
        self
    }

    /// Leaves a stage's `*_exec` empty, so the runner skips it. `Run` cannot be
    /// skipped and is left unchanged.
    pub fn skip_stage(mut self, stage: StageKind) -> Self {
        match stage {
            StageKind::Config => self.config_args = None,
            StageKind::Prepare => self.prepare_args = None,
            StageKind::Cleanup => self.cleanup_args = None,
            StageKind::Run => {}
        }
        self
    }

    /// Adds a variable to the runner's own environment.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.host_env.push((key.into(), value.into()));
        self
    }

    /// Starts the runner's own environment empty instead of copying the
    /// harness's; variables added with [`DriverCommand::env`] remain.
    pub fn clear_host_env(mut self) -> Self {
        self.inherit_host_env = false;
        self
    }

    /// Returns the arguments for `stage`, or `None` when the stage is skipped.
    pub fn args_for(&self, stage: StageKind) -> Option<&[OsString]> {
        match stage {
            StageKind::Config => self.config_args.as_deref(),
            StageKind::Prepare => self.prepare_args.as_deref(),
            StageKind::Run => Some(&self.run_args),
            StageKind::Cleanup => self.cleanup_args.as_deref(),
        }
    }

    /// Returns the runner's own environment as the first layer of every stage's
    /// environment.
    pub fn host_environment(&self) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = if self.inherit_host_env {
            std::env::vars_os().collect()
        } else {
            Vec::new()
        };
        env.extend(self.host_env.iter().cloned());
        env
    }
}

/// A runner configured with one custom executor driver.
///
/// Defaults follow gitlab-runner 19.x: 3600 s for the config, prepare and
/// cleanup stages, 600 s graceful and 10 s force kill timeouts, and 3
/// preparation attempts 3 s apart. The runner config has no `builds_dir` or
/// `cache_dir`, so the driver's config stage must supply them. The shell is bash.
#[derive(Clone, Debug)]
pub struct Harness {
    pub driver: DriverCommand,
    pub config_exec_timeout: Duration,
    pub prepare_exec_timeout: Duration,
    pub cleanup_exec_timeout: Duration,
    pub kill: KillTimeouts,
    pub preparation_attempts: u32,
    pub retry_delay: Duration,
    /// How long the runner waits for a stage after aborting a job or hitting its
    /// timeout, before it proceeds to cleanup (`WaitForBuildFinishTimeout`).
    pub build_finish_wait: Duration,
    /// `[[runners]] builds_dir`, overridden by the config stage's output.
    pub builds_dir: String,
    pub cache_dir: String,
    pub builds_dir_is_shared: bool,
    pub shell: String,
    /// Stages whose stdout is only counted and hashed.
    pub digest_stdout_stages: Vec<String>,
}

impl Harness {
    pub fn new(driver: DriverCommand) -> Self {
        Harness {
            driver,
            config_exec_timeout: Duration::from_secs(3600),
            prepare_exec_timeout: Duration::from_secs(3600),
            cleanup_exec_timeout: Duration::from_secs(3600),
            kill: KillTimeouts::default(),
            preparation_attempts: 3,
            retry_delay: Duration::from_secs(3),
            build_finish_wait: Duration::from_secs(300),
            builds_dir: String::new(),
            cache_dir: String::new(),
            builds_dir_is_shared: false,
            shell: "bash".to_string(),
            digest_stdout_stages: Vec::new(),
        }
    }

    /// Sets the delay between preparation attempts.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    pub fn kill_timeouts(mut self, graceful: Duration, force: Duration) -> Self {
        self.kill = KillTimeouts { graceful, force };
        self
    }

    /// Sets `config_exec_timeout`, `prepare_exec_timeout` and
    /// `cleanup_exec_timeout`.
    pub fn exec_timeouts(mut self, config: Duration, prepare: Duration, cleanup: Duration) -> Self {
        self.config_exec_timeout = config;
        self.prepare_exec_timeout = prepare;
        self.cleanup_exec_timeout = cleanup;
        self
    }

    pub fn build_finish_wait(mut self, wait: Duration) -> Self {
        self.build_finish_wait = wait;
        self
    }

    /// Sets the runner config's `builds_dir` and `cache_dir`.
    pub fn runner_dirs(
        mut self,
        builds_dir: impl Into<String>,
        cache_dir: impl Into<String>,
    ) -> Self {
        self.builds_dir = builds_dir.into();
        self.cache_dir = cache_dir.into();
        self
    }

    /// Counts and hashes the stdout of every call of `stage` instead of storing it.
    pub fn digest_stdout(mut self, stage: impl Into<String>) -> Self {
        self.digest_stdout_stages.push(stage.into());
        self
    }

    pub(crate) fn stdout_capture_for(&self, stage: &str) -> StdoutCapture {
        if self.digest_stdout_stages.iter().any(|name| name == stage) {
            StdoutCapture::Digest
        } else {
            StdoutCapture::Memory
        }
    }
}
