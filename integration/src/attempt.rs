//! One preparation attempt: the per-attempt temp directory and the calls of the
//! four driver stages with the runner's arguments, environment and files.
//!
//! [`crate::Harness::run_job`] drives an attempt through the whole lifecycle.
//! Tests can also drive one by hand, for example to run only `cleanup`, or to
//! cancel a run call with a [`CancelToken`](crate::CancelToken).

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::classify::{classify_end, StageError};
use crate::config::{parse_config_output, BuildDirs, ConfigOutput, DriverInfo};
use crate::env::{deduplicate, layered_env, DriverPaths};
use crate::harness::{Harness, StageKind};
use crate::job::{Job, SubStage, Variable};
use crate::output::StdoutCapture;
use crate::process::{run_process, ProcessEnd, ProcessSpec, StopConditions};
use crate::record::StageRecord;
use crate::response::write_response_file;
use crate::script::{generate_script, ScriptContext};
use crate::variables::runner_variables;

/// One preparation attempt and the stages run in it.
pub struct Attempt<'a> {
    harness: &'a Harness,
    job: &'a Job,
    number: u32,
    temp_dir: TempDir,
    response_file: PathBuf,
    exit_code_file: PathBuf,
    config: Option<ConfigOutput>,
    driver_info: Option<DriverInfo>,
    job_env: Option<Vec<(String, String)>>,
    hostname: Option<String>,
    shell: String,
    dirs: Option<BuildDirs>,
    job_status: String,
}

impl<'a> Attempt<'a> {
    /// Creates the temp directory (`$TMPDIR/custom-executorNNN`) and writes
    /// `response.json` into it.
    ///
    /// `earlier_dirs` are the directories an earlier attempt of the same job
    /// computed. The runner keeps them, so a retried config stage receives them
    /// in `CUSTOM_ENV_CI_BUILDS_DIR` and `CUSTOM_ENV_CI_PROJECT_DIR`.
    pub fn new(
        harness: &'a Harness,
        job: &'a Job,
        number: u32,
        earlier_dirs: Option<BuildDirs>,
    ) -> io::Result<Self> {
        let temp_dir = tempfile::Builder::new()
            .prefix("custom-executor")
            .tempdir()?;
        let response_file = temp_dir.path().join("response.json");
        write_response_file(&response_file, job)?;
        let exit_code_file = temp_dir.path().join("build_exit_code");
        Ok(Attempt {
            harness,
            job,
            number,
            temp_dir,
            response_file,
            exit_code_file,
            config: None,
            driver_info: None,
            job_env: None,
            hostname: None,
            shell: harness.shell.clone(),
            dirs: earlier_dirs,
            job_status: "running".to_string(),
        })
    }

    pub fn number(&self) -> u32 {
        self.number
    }

    /// Returns the temp directory, which is every stage's cwd and `TMPDIR`.
    pub fn temp_dir(&self) -> &Path {
        self.temp_dir.path()
    }

    /// `BUILD_EXIT_CODE_FILE`.
    pub fn exit_code_file(&self) -> &Path {
        &self.exit_code_file
    }

    pub fn config_output(&self) -> Option<&ConfigOutput> {
        self.config.as_ref()
    }

    pub fn driver_info(&self) -> Option<&DriverInfo> {
        self.driver_info.as_ref()
    }

    pub fn dirs(&self) -> Option<&BuildDirs> {
        self.dirs.as_ref()
    }

    /// Sets `job_env` by hand, as if a config stage had returned it.
    pub fn set_job_env(&mut self, job_env: Vec<(String, String)>) {
        self.job_env = Some(job_env);
    }

    /// Sets `CI_JOB_STATUS` for later stages (`success`, `failed`, `canceled`).
    pub fn set_job_status(&mut self, status: &str) {
        self.job_status = status.to_string();
    }

    /// Returns the runner's variable list with the current directories and job status.
    pub fn variables(&self) -> Vec<Variable> {
        runner_variables(self.job, self.dirs.as_ref(), &self.job_status)
    }

    /// Returns the environment a process of `kind` gets now, de-duplicated.
    pub fn environment(&self, kind: StageKind) -> Vec<(OsString, OsString)> {
        let paths = DriverPaths {
            temp_dir: self.temp_dir.path(),
            response_file: &self.response_file,
            exit_code_file: &self.exit_code_file,
        };
        let job_env = match kind {
            StageKind::Config => None,
            _ => self.job_env.as_deref(),
        };
        let host = self.harness.driver.host_environment();
        deduplicate(layered_env(&host, &paths, job_env, &self.variables()))
    }

    /// Runs the config stage (if configured), applies its output, and computes
    /// the build directories and shell, as the runner does before `prepare_exec`.
    ///
    /// Returns the config call's record, if there was one, and the result.
    pub fn configure(
        &mut self,
        stop: &StopConditions,
    ) -> (Option<StageRecord>, Result<(), StageError>) {
        let mut record = None;
        if let Some(args) = self.harness.driver.args_for(StageKind::Config) {
            let args = args.to_vec();
            let config_record = self.run_driver("config", StageKind::Config, args, None, stop);
            if let Err(error) = &config_record.result {
                let error = error.clone();
                return (Some(config_record), Err(error));
            }
            let parsed = parse_config_output(&config_record.stdout);
            record = Some(config_record);
            match parsed {
                Ok(output) => self.apply_config(output),
                Err(message) => return (record, Err(StageError::System { message })),
            }
        }

        (record, self.start_build())
    }

    fn apply_config(&mut self, output: ConfigOutput) {
        self.driver_info = output.driver.clone();
        if let Some(hostname) = &output.hostname {
            self.hostname = Some(hostname.clone());
        }
        if let Some(job_env) = &output.job_env {
            self.job_env = Some(job_env.clone());
        }
        if let Some(shell) = &output.shell {
            self.shell = if shell.is_empty() {
                "bash".to_string()
            } else {
                shell.clone()
            };
        }
        self.config = Some(output);
    }

    /// Computes the directories and checks the shell, like the runner's
    /// `PrepareBuildAndShell`.
    fn start_build(&mut self) -> Result<(), StageError> {
        let config = self.config.clone().unwrap_or_default();
        let builds_dir = config
            .builds_dir
            .unwrap_or_else(|| self.harness.builds_dir.clone());
        let cache_dir = config
            .cache_dir
            .unwrap_or_else(|| self.harness.cache_dir.clone());
        let shared = config
            .builds_dir_is_shared
            .unwrap_or(self.harness.builds_dir_is_shared);
        let dirs = BuildDirs::compute(&builds_dir, &cache_dir, shared, self.job)
            .map_err(|message| StageError::Configuration { message })?;
        self.dirs = Some(dirs);

        match self.shell.as_str() {
            "bash" | "sh" => Ok(()),
            // NOTE: the runner also supports pwsh and powershell. The harness
            // writes only bash and sh scripts.
            "pwsh" | "powershell" => Err(StageError::System {
                message: format!("shell {} is not supported by the test harness", self.shell),
            }),
            other => Err(StageError::System {
                message: format!("shell {other} not found"),
            }),
        }
    }

    /// Runs the prepare stage, if configured.
    pub fn prepare(&mut self, stop: &StopConditions) -> Option<StageRecord> {
        let args = self.harness.driver.args_for(StageKind::Prepare)?.to_vec();
        Some(self.run_driver("prepare", StageKind::Prepare, args, None, stop))
    }

    /// Writes the script for `stage` and runs `run_exec` with it.
    ///
    /// # Panics
    /// Panics if called before [`Attempt::configure`] has computed the directories.
    pub fn run_stage(&mut self, stage: &SubStage, stop: &StopConditions) -> StageRecord {
        let dirs = self
            .dirs
            .clone()
            .expect("run_stage was called before configure computed the build directories");
        let variables = self.variables();
        let context = ScriptContext {
            variables: &variables,
            dirs: &dirs,
            hostname: self.hostname.as_deref(),
            shell: &self.shell,
        };
        let script = generate_script(stage, &context);

        let script_path = match self.write_script(&script) {
            Ok(path) => path,
            Err(error) => {
                let mut record = self.record_without_process(
                    &stage.name,
                    ProcessEnd::FailedToStart(error.to_string()),
                );
                record.result = Err(StageError::System {
                    message: format!(
                        "writing the script for stage {} failed: {error}",
                        stage.name
                    ),
                });
                return record;
            }
        };

        let mut args = self.harness.driver.run_args.clone();
        args.push(script_path.into_os_string());
        args.push(OsString::from(&stage.name));
        self.run_driver(&stage.name, StageKind::Run, args, Some(script), stop)
    }

    /// Runs the cleanup stage, if configured, under `cleanup_exec_timeout`.
    pub fn cleanup(&mut self) -> Option<StageRecord> {
        let args = self.harness.driver.args_for(StageKind::Cleanup)?.to_vec();
        let stop = StopConditions {
            deadline: Some(Instant::now() + self.harness.cleanup_exec_timeout),
            kill: self.harness.kill,
            ..StopConditions::default()
        };
        Some(self.run_driver("cleanup", StageKind::Cleanup, args, None, &stop))
    }

    /// Removes the temp directory, as the runner does right after cleanup.
    pub fn close(self) -> io::Result<()> {
        self.temp_dir.close()
    }

    /// Writes `script` to `$TMPDIR/script<random>/script` with the runner's modes.
    fn write_script(&self, script: &[u8]) -> io::Result<PathBuf> {
        let directory = tempfile::Builder::new()
            .prefix("script")
            .tempdir_in(self.temp_dir.path())?
            .keep();
        fs::set_permissions(&directory, fs::Permissions::from_mode(0o700))?;
        let path = directory.join("script");
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(&path)?;
        io::Write::write_all(&mut file, script)?;
        Ok(path)
    }

    fn run_driver(
        &self,
        stage: &str,
        kind: StageKind,
        args: Vec<OsString>,
        script: Option<Vec<u8>>,
        stop: &StopConditions,
    ) -> StageRecord {
        let env = self.environment(kind);
        let spec = ProcessSpec {
            program: self.harness.driver.program.clone(),
            args,
            env: env.clone(),
            cwd: self.temp_dir.path().to_path_buf(),
        };
        let capture = match kind {
            StageKind::Config => StdoutCapture::Memory,
            _ => self.harness.stdout_capture_for(stage),
        };
        let run = run_process(&spec, capture, stop);
        let result = classify_end(&run.end, &self.exit_code_file);

        let mut argv = vec![spec.program.into_os_string()];
        argv.extend(spec.args);
        StageRecord {
            stage: stage.to_string(),
            attempt: self.number,
            argv,
            env,
            script,
            end: run.end,
            result,
            stdout: run.output.stdout,
            stderr: run.output.stderr,
            combined: run.output.combined,
            stdout_summary: run.output.stdout_summary,
            duration: run.duration,
            stop_reason: run.stop_reason,
            signals: run.signals,
            pipe_eof_delay: run.pipe_eof_delay,
        }
    }

    fn record_without_process(&self, stage: &str, end: ProcessEnd) -> StageRecord {
        StageRecord {
            stage: stage.to_string(),
            attempt: self.number,
            argv: Vec::new(),
            env: Vec::new(),
            script: None,
            end,
            result: Ok(()),
            stdout: Vec::new(),
            stderr: Vec::new(),
            combined: Vec::new(),
            stdout_summary: None,
            duration: Duration::ZERO,
            stop_reason: None,
            signals: Vec::new(),
            pipe_eof_delay: None,
        }
    }
}
