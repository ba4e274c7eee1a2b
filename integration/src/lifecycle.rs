//! The job lifecycle of gitlab-runner 19.x (`common/build.go`): preparation
//! attempts, the sub-stages in order, failure handling, and cleanup.

use std::thread;
use std::time::{Duration, Instant};

use crate::attempt::Attempt;
use crate::classify::StageError;
use crate::config::{BuildDirs, DriverInfo};
use crate::harness::Harness;
use crate::job::{
    Job, StageBody, SubStage, ON_FAILURE_STAGES, ON_SUCCESS_STAGES, PRE_SCRIPT_STAGES,
};
use crate::process::{CancelToken, StopConditions};
use crate::record::{JobResult, Outcome, StageRecord};

/// `RUNNER_AFTER_SCRIPT_TIMEOUT` default.
const AFTER_SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

/// A cancel request: `after` this long into `stage`, the job is cancelled.
///
/// In a user script stage (`build_script`, `step_*`, or any name that is not a
/// pre-script, after-script or upload stage) this is GitLab's graceful cancel:
/// the stage gets SIGTERM, then `after_script`, the `_on_failure` stages,
/// `cleanup_file_variables` and cleanup still run. In any other stage, including
/// `config` and `prepare`, it is an abort: the stage gets SIGTERM and the job
/// goes straight to cleanup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelAt {
    pub stage: String,
    pub after: Duration,
}

/// Something that happened during a job, for progress output.
#[derive(Debug)]
pub enum JobEvent<'a> {
    PreparationStarted {
        attempt: u32,
    },
    /// The config stage is done; the runner prints `Using Custom executor...`.
    ExecutorStarted {
        driver: Option<&'a DriverInfo>,
    },
    StageStarted {
        stage: &'a str,
        attempt: u32,
    },
    StageFinished {
        record: &'a StageRecord,
    },
    PreparationFailed {
        attempt: u32,
        error: &'a StageError,
        will_retry: bool,
        retry_delay: Duration,
    },
    Warning {
        message: &'a str,
    },
    JobFinished {
        outcome: &'a Outcome,
    },
}

/// Options for one job run.
#[derive(Default)]
pub struct RunOptions<'a> {
    pub cancel: Option<CancelAt>,
    /// Called for every [`JobEvent`], in order.
    pub observer: Option<&'a mut dyn FnMut(&JobEvent<'_>)>,
}

impl Harness {
    /// Runs `job` through the whole lifecycle and returns what happened.
    pub fn run_job(&self, job: &Job) -> JobResult {
        self.run_job_with(job, RunOptions::default())
    }

    /// Runs `job` with a cancel request or a progress observer.
    pub fn run_job_with(&self, job: &Job, options: RunOptions<'_>) -> JobResult {
        let mut run = JobRun::new(self, job, options);
        let outcome = run.execute();
        run.result.outcome = outcome;
        run.emit(&JobEvent::JobFinished {
            outcome: &run.result.outcome.clone(),
        });
        run.result
    }
}

/// Returns whether a cancel in this stage is GitLab's graceful cancel.
fn is_user_script_stage(name: &str) -> bool {
    !PRE_SCRIPT_STAGES.contains(&name) && !is_final_stage(name)
}

/// Stages the lifecycle runs after the user script rather than in list order.
fn is_final_stage(name: &str) -> bool {
    name == "after_script"
        || name == "cleanup_file_variables"
        || ON_SUCCESS_STAGES.contains(&name)
        || ON_FAILURE_STAGES.contains(&name)
}

/// The reason the job context ended early.
enum JobStop {
    Aborted(String),
    TimedOut(String),
}

struct JobRun<'h, 'o> {
    harness: &'h Harness,
    job: &'h Job,
    options: RunOptions<'o>,
    result: JobResult,
    job_deadline: Instant,
    /// Cancels only the user script (graceful cancel).
    script_cancel: CancelToken,
    /// Cancels the whole job context (abort).
    abort: CancelToken,
    cancel_armed: bool,
}

impl<'h, 'o> JobRun<'h, 'o> {
    fn new(harness: &'h Harness, job: &'h Job, options: RunOptions<'o>) -> Self {
        let timeout = Duration::from_secs(crate::variables::timeout_seconds(job.timeout));
        JobRun {
            harness,
            job,
            options,
            result: JobResult {
                outcome: Outcome::Success,
                job_log: Vec::new(),
                cleanup_log: Vec::new(),
                stages: Vec::new(),
                config: None,
                dirs: None,
                attempts: 0,
                warnings: Vec::new(),
            },
            job_deadline: Instant::now() + timeout,
            script_cancel: CancelToken::new(),
            abort: CancelToken::new(),
            cancel_armed: false,
        }
    }

    fn emit(&mut self, event: &JobEvent<'_>) {
        if let Some(observer) = self.options.observer.as_mut() {
            observer(event);
        }
    }

    fn execute(&mut self) -> Outcome {
        let mut attempt = match self.prepare(self.harness, self.job) {
            Ok(attempt) => attempt,
            Err(outcome) => return outcome,
        };

        let outcome = self.run_sub_stages(&mut attempt);
        self.cleanup_and_close(attempt);
        outcome
    }

    /// Runs preparation attempts until one succeeds, or returns the job's outcome.
    // NOTE: the runner also waits the retry delay after the last failed attempt
    // before it reports the failure; the harness reports it at once.
    fn prepare(&mut self, harness: &'h Harness, job: &'h Job) -> Result<Attempt<'h>, Outcome> {
        let mut earlier_dirs: Option<BuildDirs> = None;
        let attempts = harness.preparation_attempts.max(1);
        for number in 1..=attempts {
            self.result.attempts = number;
            self.emit(&JobEvent::PreparationStarted { attempt: number });
            let mut attempt =
                Attempt::new(harness, job, number, earlier_dirs.clone()).map_err(|error| {
                    Outcome::SystemFailure {
                        stage: "prepare".to_string(),
                        message: format!("creating the job's temp directory failed: {error}"),
                    }
                })?;

            let failure = self.prepare_attempt(&mut attempt);
            earlier_dirs = attempt.dirs().cloned();
            self.result.dirs = earlier_dirs.clone();
            let Some((stage, error)) = failure else {
                return Ok(attempt);
            };

            self.cleanup_and_close(attempt);
            if let Some(stop) = self.job_stop(&stage) {
                return Err(self.stop_outcome(stop));
            }
            let will_retry = !error.stops_retries() && number < attempts;
            self.emit(&JobEvent::PreparationFailed {
                attempt: number,
                error: &error,
                will_retry,
                retry_delay: harness.retry_delay,
            });
            if !will_retry {
                return Err(outcome_of(&stage, error));
            }
            thread::sleep(harness.retry_delay);
        }
        unreachable!("the last attempt returns")
    }

    /// Runs config and prepare, and returns the failing stage and its error, if any.
    fn prepare_attempt(&mut self, attempt: &mut Attempt<'h>) -> Option<(String, StageError)> {
        let config_deadline = Instant::now() + self.harness.config_exec_timeout;
        let stop = self.preparation_stop(config_deadline);
        self.stage_starting("config", attempt.number());
        let (record, result) = attempt.configure(&stop);
        if let Some(record) = record {
            self.record(record);
        }
        if attempt.config_output().is_some() {
            self.result.config = attempt.config_output().cloned();
        }
        if let Err(error) = result {
            return Some(("config".to_string(), error));
        }
        let driver = attempt.driver_info().cloned();
        self.emit(&JobEvent::ExecutorStarted {
            driver: driver.as_ref(),
        });

        let prepare_deadline = Instant::now() + self.harness.prepare_exec_timeout;
        let stop = self.preparation_stop(prepare_deadline);
        self.stage_starting("prepare", attempt.number());
        let record = attempt.prepare(&stop)?;
        let result = record.result.clone();
        self.record(record);
        result.err().map(|error| ("prepare".to_string(), error))
    }

    /// Stop conditions for config and prepare: their own timeout or the job
    /// timeout, whichever comes first, and an abort.
    fn preparation_stop(&self, stage_deadline: Instant) -> StopConditions {
        let job_deadline_first = self.job_deadline <= stage_deadline;
        StopConditions {
            deadline: Some(stage_deadline.min(self.job_deadline)),
            cancel: Some(self.abort.clone()),
            kill: self.harness.kill,
            stop_waiting_after_deadline: job_deadline_first
                .then_some(self.harness.build_finish_wait),
            stop_waiting_after_cancel: Some(self.harness.build_finish_wait),
        }
    }

    /// Runs the sub-stages after a successful preparation and returns the outcome.
    fn run_sub_stages(&mut self, attempt: &mut Attempt<'h>) -> Outcome {
        let job = self.job;
        let mut failure: Option<(String, StageError)> = None;
        let mut canceled_in: Option<String> = None;
        let mut pre_script_failed = false;

        for stage in job
            .stages
            .iter()
            .filter(|stage| !is_final_stage(&stage.name))
        {
            let user_stage = is_user_script_stage(&stage.name);
            if user_stage && self.script_cancel.is_cancelled() {
                canceled_in = Some(stage.name.clone());
                break;
            }
            let record = match self.run_job_stage(attempt, stage, user_stage) {
                Ok(record) => record,
                Err(stop) => return self.stop_outcome(stop),
            };
            if user_stage && self.script_cancel.is_cancelled() {
                canceled_in = Some(stage.name.clone());
                break;
            }
            if let Err(error) = record {
                if stage.name == "prepare_script" {
                    return outcome_of(&stage.name, error.map_message(prepare_environment_message));
                }
                pre_script_failed = !user_stage;
                failure = Some((stage.name.clone(), error));
                break;
            }
        }

        if !pre_script_failed {
            let status = match (&canceled_in, &failure) {
                (Some(_), _) => "canceled",
                (None, Some(_)) => "failed",
                (None, None) => "success",
            };
            attempt.set_job_status(status);
            if let Err(stop) = self.run_after_script(attempt, &mut failure, canceled_in.is_some()) {
                return self.stop_outcome(stop);
            }
        }

        let job_failed = failure.is_some() || canceled_in.is_some();
        let final_stages = if job_failed {
            ON_FAILURE_STAGES
        } else {
            ON_SUCCESS_STAGES
        };
        for name in final_stages {
            let Some(stage) = job.find_stage(name) else {
                continue;
            };
            match self.run_job_stage(attempt, stage, false) {
                Err(stop) => return self.stop_outcome(stop),
                Ok(Err(error)) if failure.is_none() && canceled_in.is_none() => {
                    failure = Some((name.to_string(), error));
                }
                Ok(_) => {}
            }
        }

        if job.cleanup_file_variables {
            let default_stage = SubStage {
                name: "cleanup_file_variables".to_string(),
                body: StageBody::Commands(Vec::new()),
            };
            let stage = job
                .find_stage("cleanup_file_variables")
                .unwrap_or(&default_stage);
            match self.run_job_stage(attempt, stage, false) {
                Err(stop) => return self.stop_outcome(stop),
                Ok(Err(error)) => self.warn(format!(
                    "Error while executing file based variables removal script: {error}"
                )),
                Ok(Ok(())) => {}
            }
        }

        match (canceled_in, failure) {
            (Some(stage), _) => Outcome::Canceled { stage },
            (None, Some((stage, error))) => outcome_of(&stage, error),
            (None, None) => Outcome::Success,
        }
    }

    /// Runs `after_script` if the job has one. Its failure is only a warning
    /// unless the job sets `AFTER_SCRIPT_IGNORE_ERRORS=false`.
    fn run_after_script(
        &mut self,
        attempt: &mut Attempt<'h>,
        failure: &mut Option<(String, StageError)>,
        canceled: bool,
    ) -> Result<(), JobStop> {
        let Some(stage) = self.job.find_stage("after_script") else {
            return Ok(());
        };
        let Err(error) = self.run_job_stage(attempt, stage, false)? else {
            return Ok(());
        };
        let setting = self
            .job
            .variables
            .iter()
            .rev()
            .find(|v| v.key == "AFTER_SCRIPT_IGNORE_ERRORS");
        let ignore_errors = match setting {
            Some(variable) => !matches!(
                variable.value.to_string_lossy().to_lowercase().as_str(),
                "false" | "f" | "0"
            ),
            None => true,
        };
        if ignore_errors || failure.is_some() || canceled {
            self.warn(format!(
                "after_script failed, but job will continue unaffected: {error}"
            ));
        } else {
            *failure = Some(("after_script".to_string(), error));
        }
        Ok(())
    }

    /// Runs one sub-stage under the job's stop conditions. Returns the stage's
    /// result, or how the job context ended if it ended during the stage.
    fn run_job_stage(
        &mut self,
        attempt: &mut Attempt<'h>,
        stage: &SubStage,
        user_stage: bool,
    ) -> Result<Result<(), StageError>, JobStop> {
        if let Some(stop) = self.job_stop(&stage.name) {
            return Err(stop);
        }
        self.stage_starting(&stage.name, attempt.number());

        let mut deadline = self.job_deadline;
        if stage.name == "after_script" {
            deadline = deadline.min(Instant::now() + AFTER_SCRIPT_TIMEOUT);
        }
        // NOTE: RUNNER_SCRIPT_TIMEOUT and get_sources_timeout are not modelled, so
        // user stages end only at the job timeout or on cancel.
        let stop = StopConditions {
            deadline: Some(deadline),
            cancel: Some(if user_stage {
                self.script_cancel.clone()
            } else {
                self.abort.clone()
            }),
            kill: self.harness.kill,
            stop_waiting_after_deadline: Some(self.harness.build_finish_wait),
            stop_waiting_after_cancel: (!user_stage).then_some(self.harness.build_finish_wait),
        };
        let record = attempt.run_stage(stage, &stop);
        let result = record.result.clone();
        self.record(record);

        match self.job_stop(&stage.name) {
            Some(stop) => Err(stop),
            None => Ok(result),
        }
    }

    /// Returns how the job context ended, if it has.
    fn job_stop(&self, stage: &str) -> Option<JobStop> {
        if self.abort.is_cancelled() {
            return Some(JobStop::Aborted(stage.to_string()));
        }
        if Instant::now() >= self.job_deadline {
            return Some(JobStop::TimedOut(stage.to_string()));
        }
        None
    }

    fn stop_outcome(&self, stop: JobStop) -> Outcome {
        match stop {
            JobStop::Aborted(stage) => Outcome::Canceled { stage },
            JobStop::TimedOut(stage) => Outcome::TimedOut {
                stage,
                timeout: Duration::from_secs(crate::variables::timeout_seconds(self.job.timeout)),
            },
        }
    }

    /// Emits the start event and arms the cancel request if it targets `stage`.
    fn stage_starting(&mut self, stage: &str, attempt: u32) {
        self.emit(&JobEvent::StageStarted { stage, attempt });
        let Some(cancel) = &self.options.cancel else {
            return;
        };
        if self.cancel_armed || cancel.stage != stage {
            return;
        }
        self.cancel_armed = true;
        let graceful =
            is_user_script_stage(stage) && !matches!(stage, "config" | "prepare" | "cleanup");
        let token = if graceful {
            &self.script_cancel
        } else {
            &self.abort
        };
        token.cancel_after(cancel.after);
    }

    /// Stores a record and routes its output to the job log or the runner log.
    fn record(&mut self, record: StageRecord) {
        match record.stage.as_str() {
            "config" => self.result.job_log.extend_from_slice(&record.stderr),
            "cleanup" => self.result.cleanup_log.extend_from_slice(&record.combined),
            _ => self.result.job_log.extend_from_slice(&record.combined),
        }
        self.result.stages.push(record);
        let record = self.result.stages.last().expect("just pushed").clone();
        self.emit(&JobEvent::StageFinished { record: &record });
    }

    fn warn(&mut self, message: String) {
        self.emit(&JobEvent::Warning { message: &message });
        self.result.warnings.push(message);
    }

    fn cleanup_and_close(&mut self, mut attempt: Attempt<'h>) {
        let number = attempt.number();
        self.stage_starting("cleanup", number);
        if let Some(record) = attempt.cleanup() {
            if let Err(error) = &record.result {
                self.warn(format!("Cleanup script failed: {error}"));
            }
            self.record(record);
        }
        if let Err(error) = attempt.close() {
            self.warn(format!("removing the job's temp directory failed: {error}"));
        }
    }
}

/// Wraps a `prepare_script` failure the way the runner reports it.
fn prepare_environment_message(message: String) -> String {
    format!(
        "prepare environment: {message}. \
         Check https://docs.gitlab.com/runner/shells/#shell-profile-loading for more information"
    )
}

fn outcome_of(stage: &str, error: StageError) -> Outcome {
    let stage = stage.to_string();
    match error {
        StageError::Build { exit_code, message } => Outcome::BuildFailure {
            stage,
            exit_code,
            message,
        },
        StageError::System { message } => Outcome::SystemFailure { stage, message },
        StageError::Configuration { message } => Outcome::ConfigurationError { stage, message },
    }
}
