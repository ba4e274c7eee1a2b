//! A test harness that runs a GitLab Runner custom executor driver the way
//! gitlab-runner 19.x does, without GitLab or a runner.
//!
//! It reproduces what a driver can observe. That is the argument vectors of the
//! config, prepare, run and cleanup stages, and the per-attempt temp directory
//! with `response.json`. It is also the environment layers (`CUSTOM_ENV_*`,
//! `job_env`, driver variables), the generated bash scripts, the process group
//! and kill sequence, and the exit-code classification. Last come preparation
//! retries and the order of sub-stages, including `after_script` and
//! `cleanup_file_variables`.
//!
//! ```no_run
//! use cross_executor_integration::{DriverCommand, Harness, Job, Outcome};
//! use std::time::Duration;
//!
//! let harness = Harness::new(DriverCommand::new("target/release/cross-executor"))
//!     .retry_delay(Duration::ZERO);
//! let result = harness.run_job(&Job::new(1).build_script(["uname -m"]));
//! assert_eq!(result.outcome, Outcome::Success);
//! println!("{}", result.job_log_text());
//! ```
//!
//! Layout:
//! - `job`: the job description ([`Job`], [`Variable`], [`Image`], [`SubStage`]).
//! - `harness`: runner-side settings ([`Harness`], [`DriverCommand`]).
//! - `lifecycle`: [`Harness::run_job`], the whole job.
//! - `attempt`: one preparation attempt and single stage calls ([`Attempt`]).
//! - `variables`, `expand`: the runner's variable list and `$VAR` expansion.
//! - `env`: environment layers of a stage process.
//! - `script`, `quote`: generated scripts and bash quoting.
//! - `config`: the config stage's JSON and the build directories.
//! - `response`: `response.json`.
//! - `process`, `output`: process groups, signals, pipe capture.
//! - `classify`: exit status to build or system failure.
//! - `record`: [`JobResult`], [`StageRecord`], [`Outcome`].
//! - `transcript`: a GitLab-like rendering of the job log.
//!
//! Unix only: stages run in their own process group and are signalled with
//! kill(2).

pub mod attempt;
pub mod classify;
pub mod config;
pub mod env;
pub mod expand;
pub mod harness;
pub mod job;
pub mod lifecycle;
pub mod output;
pub mod process;
pub mod quote;
pub mod record;
pub mod response;
pub mod script;
pub mod transcript;
pub mod variables;

pub use attempt::Attempt;
pub use classify::StageError;
pub use config::{BuildDirs, ConfigOutput, DriverInfo};
pub use harness::{DriverCommand, Harness, StageKind};
pub use job::{Image, Job, StageBody, SubStage, Variable};
pub use lifecycle::{CancelAt, JobEvent, RunOptions};
pub use output::{StdoutCapture, StreamSummary};
pub use process::{CancelToken, KillTimeouts, ProcessEnd, SentSignal, StopConditions, StopReason};
pub use record::{JobResult, Outcome, StageRecord};
