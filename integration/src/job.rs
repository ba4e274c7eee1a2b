//! The job that the harness hands to a driver: what GitLab would send in the job
//! payload, reduced to the fields that reach a custom executor driver.

use std::ffi::OsString;
use std::time::Duration;

/// A CI/CD variable as GitLab sends it in the job payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variable {
    pub key: String,
    /// The value; it may hold any bytes except NUL, as Go strings can.
    pub value: OsString,
    pub public: bool,
    pub masked: bool,
    /// A file-type variable: the job script gets a path to a file holding the value.
    pub file: bool,
    /// Excluded from `$NAME` expansion. GitLab's default for project variables is
    /// `false` ("Expand variable reference" checked).
    pub raw: bool,
}

impl Variable {
    /// Creates a plain, public, expandable variable.
    pub fn new(key: impl Into<String>, value: impl Into<OsString>) -> Self {
        Variable {
            key: key.into(),
            value: value.into(),
            public: true,
            masked: false,
            file: false,
            raw: false,
        }
    }

    /// Marks the variable masked (and not public, as GitLab does for secrets).
    pub fn masked(mut self) -> Self {
        self.masked = true;
        self.public = false;
        self
    }

    /// Marks the variable as a file-type variable.
    pub fn file(mut self) -> Self {
        self.file = true;
        self
    }

    /// Excludes the value from `$NAME` expansion.
    pub fn raw(mut self) -> Self {
        self.raw = true;
        self
    }

    /// Sets the `public` flag of the payload.
    pub fn public(mut self, public: bool) -> Self {
        self.public = public;
        self
    }
}

/// The job's `image:` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    pub name: String,
    /// `image:docker:platform`, sent as `image.executor_opts.docker.platform`.
    pub platform: Option<String>,
    /// `image:pull_policy`, for example `["always"]` or `["if-not-present"]`.
    pub pull_policy: Vec<String>,
}

impl Image {
    pub fn new(name: impl Into<String>) -> Self {
        Image {
            name: name.into(),
            ..Image::default()
        }
    }

    pub fn platform(mut self, platform: impl Into<String>) -> Self {
        self.platform = Some(platform.into());
        self
    }

    pub fn pull_policy<I, S>(mut self, policies: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.pull_policy = policies.into_iter().map(Into::into).collect();
        self
    }
}

/// Content of the script file of one sub-stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StageBody {
    /// User commands, each echoed as `$ <command>` and then run, after the
    /// runner's usual exports and `cd` for that stage.
    Commands(Vec<String>),
    /// A body used verbatim in place of the generated one, still wrapped in the
    /// runner's script shape (shebang, traps, `eval`).
    Raw(Vec<u8>),
    /// A whole script file used verbatim, without the runner's shape.
    RawScript(Vec<u8>),
}

/// One sub-stage that the runner sends to `run_exec` (`prepare_script`,
/// `get_sources`, `build_script`, `step_release`, `after_script`, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubStage {
    pub name: String,
    pub body: StageBody,
}

impl SubStage {
    pub fn commands<I, S>(name: impl Into<String>, commands: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        SubStage {
            name: name.into(),
            body: StageBody::Commands(commands.into_iter().map(Into::into).collect()),
        }
    }
}

/// Stage names that run before the user script, in the runner's order. A failure
/// in one of them skips the user script and `after_script`.
pub const PRE_SCRIPT_STAGES: [&str; 5] = [
    "prepare_script",
    "get_sources",
    "clear_worktree",
    "restore_cache",
    "download_artifacts",
];

/// Stage names that the runner picks after the user script, depending on whether
/// the job has failed so far.
pub const ON_SUCCESS_STAGES: [&str; 2] = ["archive_cache", "upload_artifacts_on_success"];
pub const ON_FAILURE_STAGES: [&str; 2] =
    ["archive_cache_on_failure", "upload_artifacts_on_failure"];

/// A GitLab CI job as the harness runs it.
///
/// `Job::new` starts with the two stages that the runner always sends,
/// `prepare_script` and `get_sources`, with no user commands. Add the user
/// script with [`Job::build_script`] and other stages with [`Job::stage`].
#[derive(Clone, Debug)]
pub struct Job {
    pub id: u64,
    /// `CI_JOB_NAME`, also `job_info.name` in the payload.
    pub name: String,
    /// The pipeline stage the job belongs to (`CI_JOB_STAGE`).
    pub ci_stage: String,
    pub project_id: u64,
    /// `namespace/name`, for example `group/sub/project`.
    pub project_path: String,
    pub pipeline_id: u64,
    /// The runner token's short form, used in the shared builds directory layout.
    pub runner_short_token: String,
    /// `CI_CONCURRENT_ID`: the runner's slot number for this job.
    pub concurrent_id: u32,
    /// `CI_CONCURRENT_PROJECT_ID`: the slot number among jobs of this project.
    pub concurrent_project_id: u32,
    /// `CI_JOB_TOKEN`; a fake secret, masked.
    pub job_token: String,
    pub image: Option<Image>,
    /// User variables, after the predefined ones in the payload.
    pub variables: Vec<Variable>,
    /// The job timeout (`runner_info.timeout`, `CI_JOB_TIMEOUT`).
    pub timeout: Duration,
    /// Sub-stages in the order the runner sends them.
    pub stages: Vec<SubStage>,
    /// Whether to send `cleanup_file_variables` at the end, as the runner always
    /// does unless the job was aborted or timed out.
    pub cleanup_file_variables: bool,
    pub commit_sha: String,
    pub commit_ref: String,
}

impl Job {
    /// Creates a job with the given id and realistic defaults for the rest.
    pub fn new(id: u64) -> Self {
        Job {
            id,
            name: "test-job".to_string(),
            ci_stage: "test".to_string(),
            project_id: 4242,
            project_path: "group/project".to_string(),
            pipeline_id: 9000 + id,
            runner_short_token: "t3stT0k3".to_string(),
            concurrent_id: 0,
            concurrent_project_id: 0,
            job_token: format!("glcbt-64_fakeJobToken{id}xyz"),
            image: None,
            variables: Vec::new(),
            timeout: Duration::from_secs(3600),
            stages: vec![
                SubStage::commands("prepare_script", Vec::<String>::new()),
                SubStage::commands("get_sources", Vec::<String>::new()),
            ],
            cleanup_file_variables: true,
            commit_sha: "0123456789abcdef0123456789abcdef01234567".to_string(),
            commit_ref: "main".to_string(),
        }
    }

    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub fn project(mut self, id: u64, path: impl Into<String>) -> Self {
        self.project_id = id;
        self.project_path = path.into();
        self
    }

    pub fn pipeline(mut self, id: u64) -> Self {
        self.pipeline_id = id;
        self
    }

    pub fn runner_short_token(mut self, token: impl Into<String>) -> Self {
        self.runner_short_token = token.into();
        self
    }

    pub fn concurrent_ids(mut self, concurrent_id: u32, concurrent_project_id: u32) -> Self {
        self.concurrent_id = concurrent_id;
        self.concurrent_project_id = concurrent_project_id;
        self
    }

    pub fn job_token(mut self, token: impl Into<String>) -> Self {
        self.job_token = token.into();
        self
    }

    pub fn image(mut self, image: Image) -> Self {
        self.image = Some(image);
        self
    }

    pub fn variable(mut self, variable: Variable) -> Self {
        self.variables.push(variable);
        self
    }

    /// Adds a plain, expandable variable.
    pub fn var(self, key: impl Into<String>, value: impl Into<OsString>) -> Self {
        self.variable(Variable::new(key, value))
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Appends a sub-stage, or replaces the body of an existing one with that name.
    pub fn stage<I, S>(self, name: impl Into<String>, commands: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.sub_stage(SubStage::commands(name, commands))
    }

    /// Appends a sub-stage whose body is used verbatim inside the runner's
    /// script shape.
    pub fn raw_stage(self, name: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        self.sub_stage(SubStage {
            name: name.into(),
            body: StageBody::Raw(body.into()),
        })
    }

    /// Appends a sub-stage whose whole script file is `script`.
    pub fn raw_script_stage(self, name: impl Into<String>, script: impl Into<Vec<u8>>) -> Self {
        self.sub_stage(SubStage {
            name: name.into(),
            body: StageBody::RawScript(script.into()),
        })
    }

    /// Appends `stage`, or replaces the existing stage of the same name in place.
    pub fn sub_stage(mut self, stage: SubStage) -> Self {
        match self.stages.iter_mut().find(|s| s.name == stage.name) {
            Some(existing) => *existing = stage,
            None => self.stages.push(stage),
        }
        self
    }

    /// Sets the user script (`script:`), sent as the `build_script` stage.
    pub fn build_script<I, S>(self, commands: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.stage("build_script", commands)
    }

    /// Sets `after_script:`.
    pub fn after_script<I, S>(self, commands: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.stage("after_script", commands)
    }

    /// Removes a stage, for example `get_sources` to test a driver on a bare job.
    pub fn without_stage(mut self, name: &str) -> Self {
        self.stages.retain(|stage| stage.name != name);
        self
    }

    /// Stops the harness from sending `cleanup_file_variables`, which the runner
    /// sends at the end of every job that was not aborted.
    pub fn without_cleanup_file_variables(mut self) -> Self {
        self.cleanup_file_variables = false;
        self
    }

    /// Returns the stage with that name, if the job has one.
    pub fn find_stage(&self, name: &str) -> Option<&SubStage> {
        self.stages.iter().find(|stage| stage.name == name)
    }

    /// Returns the project's name, the last segment of `project_path`.
    pub fn project_name(&self) -> &str {
        self.project_path
            .rsplit('/')
            .next()
            .unwrap_or(&self.project_path)
    }
}
