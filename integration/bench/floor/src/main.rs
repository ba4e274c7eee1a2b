//! The benchmark's floor: a custom executor driver with the same stage commands as
//! cross-executor (`config`, `prepare`, `run SCRIPT STAGE`, `cleanup`) that makes only the
//! Docker Engine API calls a job cannot do without.
//!
//! - `config` makes no call and prints the JSON the runner reads.
//! - `prepare` creates the container and starts it (2 calls).
//! - `run` creates an exec, starts it with the script on standard input and reads the exit
//!   code (3 calls, more only while Docker still reports the exec as running).
//! - `cleanup` force-removes the container (1 call).
//!
//! It skips everything a real driver also does: no API version negotiation (the version
//! is fixed), no image check or pull, no volumes, no architecture detection and no
//! signal handling. Its stage times are the lower bound for a driver written on bollard.
//!
//! Environment:
//! - the runner's `CUSTOM_ENV_CI_JOB_ID`, `CUSTOM_ENV_CI_PROJECT_ID`,
//!   `CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID`, `CUSTOM_ENV_CI_JOB_IMAGE`,
//!   `BUILD_FAILURE_EXIT_CODE`, `SYSTEM_FAILURE_EXIT_CODE` and `BUILD_EXIT_CODE_FILE`;
//! - `BENCH_QEMU_BIND`: `HOST_PATH:CONTAINER_PATH` to bind-mount read-only, empty or
//!   unset for none;
//! - `BENCH_DOCKER_API_VERSION`: the fixed API version, default `1.41`;
//! - `DOCKER_HOST`: a `unix://` socket, default `/var/run/docker.sock`.

use std::fs::File;
use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::process::ExitCode;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};
use bollard::{ClientVersion, Docker};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

type Error = Box<dyn std::error::Error>;

const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
const DEFAULT_API_VERSION: &str = "1.41";
/// Seconds bollard waits for one API response.
const REQUEST_TIMEOUT_SECONDS: u64 = 120;
/// Read buffer for exec output, the same size as cross-executor's.
const OUTPUT_BUFFER_BYTES: usize = 64 * 1024;
/// Pause between exec inspections while Docker has not yet recorded the exit code.
const EXIT_CODE_POLL: Duration = Duration::from_millis(1);

/// Outcome of a stage other than success.
enum Failure {
    Build(i64),
    System(Error),
}

impl<E: Into<Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::System(error.into())
    }
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let build_failure = exit_code_from_env("BUILD_FAILURE_EXIT_CODE", 1);
    let system_failure = exit_code_from_env("SYSTEM_FAILURE_EXIT_CODE", 2);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench-floor: failed to start the async runtime: {error}");
            return ExitCode::from(system_failure);
        }
    };
    match runtime.block_on(run_stage(&arguments)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Build(code)) => {
            if let Some(path) = std::env::var_os("BUILD_EXIT_CODE_FILE") {
                if let Err(error) = std::fs::write(&path, format!("{code}\n")) {
                    eprintln!("bench-floor: failed to write the exit code file: {error}");
                    return ExitCode::from(system_failure);
                }
            }
            ExitCode::from(build_failure)
        }
        Err(Failure::System(error)) => {
            eprintln!("bench-floor: {error}");
            ExitCode::from(system_failure)
        }
    }
}

fn exit_code_from_env(name: &str, fallback: u8) -> u8 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(fallback)
}

async fn run_stage(arguments: &[String]) -> Result<(), Failure> {
    let stage = arguments.first().map(String::as_str).unwrap_or_default();
    match (stage, arguments.len()) {
        ("config", 1) => {
            println!(
                r#"{{"builds_dir":"/builds","cache_dir":"/cache","builds_dir_is_shared":false,"driver":{{"name":"bench-floor","version":"{}"}},"shell":"bash"}}"#,
                env!("CARGO_PKG_VERSION")
            );
            Ok(())
        }
        ("prepare", 1) => prepare(&connect()?, &container_name()).await,
        ("run", 3) => run(&connect()?, &container_name(), &arguments[1]).await,
        ("cleanup", 1) => cleanup(&connect()?, &container_name()).await,
        _ => Err(Failure::System(
            format!(
                "invalid arguments {arguments:?}; expected `config`, `prepare`, \
                 `run SCRIPT STAGE` or `cleanup`"
            )
            .into(),
        )),
    }
}

/// Connects to the Unix socket with a fixed API version, so no call is spent on
/// negotiation.
fn connect() -> Result<Docker, Error> {
    let socket = std::env::var("DOCKER_HOST").unwrap_or_else(|_| DEFAULT_SOCKET.to_owned());
    let socket = socket.strip_prefix("unix://").unwrap_or(&socket).to_owned();
    let version_text = std::env::var("BENCH_DOCKER_API_VERSION")
        .unwrap_or_else(|_| DEFAULT_API_VERSION.to_owned());
    let version = parse_api_version(&version_text).ok_or_else(|| {
        format!("invalid BENCH_DOCKER_API_VERSION `{version_text}`; expected MAJOR.MINOR such as 1.41")
    })?;
    Ok(Docker::connect_with_unix(
        &socket,
        REQUEST_TIMEOUT_SECONDS,
        &version,
    )?)
}

fn parse_api_version(text: &str) -> Option<ClientVersion> {
    let (major, minor) = text.trim().split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

fn job_variable(name: &str) -> String {
    std::env::var(format!("CUSTOM_ENV_{name}")).unwrap_or_default()
}

/// `bench-floor-<project>-<concurrent project>-<job>`, so concurrent jobs get distinct names.
fn container_name() -> String {
    format!(
        "bench-floor-{}-{}-{}",
        job_variable("CI_PROJECT_ID"),
        job_variable("CI_CONCURRENT_PROJECT_ID"),
        job_variable("CI_JOB_ID")
    )
}

async fn prepare(docker: &Docker, name: &str) -> Result<(), Failure> {
    let image = job_variable("CI_JOB_IMAGE");
    if image.is_empty() {
        return Err("CUSTOM_ENV_CI_JOB_IMAGE is missing or empty".into());
    }
    let mut mounts = Vec::new();
    let bind = std::env::var("BENCH_QEMU_BIND").unwrap_or_default();
    if !bind.is_empty() {
        let (source, target) = bind.split_once(':').ok_or_else(|| {
            format!("invalid BENCH_QEMU_BIND `{bind}`; expected HOST_PATH:CONTAINER_PATH")
        })?;
        mounts.push(Mount {
            typ: Some(MountType::BIND),
            source: Some(source.to_owned()),
            target: Some(target.to_owned()),
            read_only: Some(true),
            ..Default::default()
        });
    }
    // The same keep-alive as cross-executor: the image's shell on an open, empty stdin.
    let body = ContainerCreateBody {
        image: Some(image),
        entrypoint: Some(vec!["/bin/sh".to_owned()]),
        open_stdin: Some(true),
        host_config: Some(HostConfig {
            mounts: Some(mounts),
            network_mode: Some("none".to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptions {
        name: Some(name.to_owned()),
        ..Default::default()
    };
    docker.create_container(Some(options), body).await?;
    docker.start_container(name, None).await?;
    Ok(())
}

async fn run(docker: &Docker, name: &str, script_path: &str) -> Result<(), Failure> {
    let script = std::fs::read(script_path)
        .map_err(|error| format!("failed to read the script `{script_path}`: {error}"))?;
    let options = CreateExecOptions::<String> {
        cmd: Some(vec!["sh".to_owned()]),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let exec = docker.create_exec(name, options).await?;
    let start = StartExecOptions {
        output_capacity: Some(OUTPUT_BUFFER_BYTES),
        ..Default::default()
    };
    let StartExecResults::Attached {
        mut output,
        input: mut writer,
    } = docker.start_exec(&exec.id, Some(start)).await?
    else {
        return Err("Docker started the exec detached".into());
    };

    let feeder = async move {
        writer.write_all(&script).await?;
        writer.shutdown().await
    };
    let forwarder = async {
        let mut stdout = unbuffered_stream(1);
        let mut stderr = unbuffered_stream(2);
        while let Some(frame) = output.next().await {
            match frame? {
                LogOutput::StdErr { message } => stderr.write_all(&message)?,
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    stdout.write_all(&message)?
                }
                LogOutput::StdIn { .. } => {}
            }
        }
        Ok::<(), Error>(())
    };
    let (fed, forwarded) = tokio::join!(feeder, forwarder);
    forwarded.map_err(Failure::System)?;
    // A shell that exits before reading all of its input closes the pipe early, and its
    // exit code still decides the outcome.
    drop(fed);

    loop {
        let details = docker.inspect_exec(&exec.id).await?;
        if details.running != Some(true) {
            if let Some(code) = details.exit_code {
                return if code == 0 {
                    Ok(())
                } else {
                    Err(Failure::Build(code))
                };
            }
        }
        tokio::time::sleep(EXIT_CODE_POLL).await;
    }
}

async fn cleanup(docker: &Docker, name: &str) -> Result<(), Failure> {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match docker.remove_container(name, Some(options)).await {
        Ok(()) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Returns a writer on an inherited descriptor, without the line buffering of Rust's stdout.
fn unbuffered_stream(fd: i32) -> ManuallyDrop<File> {
    // SAFETY: descriptors 1 and 2 stay open for the whole process, and ManuallyDrop keeps
    // the File from closing them.
    ManuallyDrop::new(unsafe { File::from_raw_fd(fd) })
}
