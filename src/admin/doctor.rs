//! `cross-executor doctor`: checks that this host can run the configured architectures and
//! prints how to fix what it cannot.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

use crate::admin::binfmt_register::{arch_from_qemu_name, elf_magic};
use crate::binfmt::{self, Entry};
use crate::docker::Docker;
use crate::elf;
use crate::job::JobContext;
use crate::names::JobNames;
use crate::settings::Settings;
use crate::shutdown::Shutdown;
use crate::stages::{cleanup, prepare};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Error,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// Command or step that fixes a warning or an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn new(name: &str, status: Status, detail: impl Into<String>, fix: Option<String>) -> Self {
        Check {
            name: name.to_owned(),
            status,
            detail: detail.into(),
            fix,
        }
    }
}

/// Runs every check, prints the report and returns whether nothing is an error.
pub async fn run(
    settings: &Settings,
    image: Option<&str>,
    json: bool,
    shutdown: &mut Shutdown,
) -> anyhow::Result<bool> {
    let root = Path::new(binfmt::DEFAULT_ROOT);
    let mut checks = vec![check_docker().await];
    match binfmt::read_entries(root) {
        Ok(entries) => {
            checks.push(Check::new(
                "binfmt_misc",
                Status::Ok,
                "mounted and enabled",
                None,
            ));
            for name in &settings.architectures {
                checks.push(check_arch(name, &entries, root));
            }
        }
        Err(error) => checks.push(Check::new(
            "binfmt_misc",
            Status::Error,
            format!("{error:#}"),
            Some(format!(
                "mount -t binfmt_misc binfmt_misc {}",
                root.display()
            )),
        )),
    }
    if let Some(image) = image {
        checks.push(check_image(settings, image, shutdown).await);
    }

    if json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        print_table(&checks);
    }
    Ok(checks.iter().all(|check| check.status != Status::Error))
}

async fn check_docker() -> Check {
    let docker = match Docker::connect().await {
        Ok(docker) => docker,
        Err(error) => {
            return Check::new(
                "docker",
                Status::Error,
                format!("{error:#}"),
                Some("start dockerd, or set DOCKER_HOST to the daemon's socket".into()),
            )
        }
    };
    match docker.server_version().await {
        Ok((version, api)) => Check::new(
            "docker",
            Status::Ok,
            format!("Docker Engine {version}, API {api}"),
            None,
        ),
        Err(error) => Check::new("docker", Status::Error, format!("{error:#}"), None),
    }
}

/// Checks the binfmt_misc entry that would run binaries of the QEMU architecture `name`.
fn check_arch(name: &str, entries: &[Entry], root: &Path) -> Check {
    let label = format!("arch {name}");
    let arch = match arch_from_qemu_name(name) {
        Ok(arch) => arch,
        Err(error) => return Check::new(&label, Status::Error, format!("{error:#}"), None),
    };
    let (header, _) = elf_magic(arch);
    let install = format!("cross-executor binfmt install --arch {name}");
    let Some(entry) = entries.iter().find(|entry| entry.matches(&header)) else {
        return Check::new(
            &label,
            Status::Error,
            "no binfmt_misc entry",
            Some(format!("apt-get install qemu-user-static && {install}")),
        );
    };
    if !entry.enabled {
        return Check::new(
            &label,
            Status::Error,
            format!("entry `{}` is disabled", entry.name),
            Some(format!("echo 1 > {}/{}", root.display(), entry.name)),
        );
    }

    let host_path = std::fs::canonicalize(&entry.interpreter).ok();
    let is_static = host_path
        .as_ref()
        .and_then(|path| std::fs::read(path).ok())
        .map(|bytes| elf::is_statically_linked(&bytes).unwrap_or(false));
    let version = host_path.as_deref().map(qemu_version).unwrap_or_default();
    let summary = format!(
        "entry `{}`, flags `{}`, interpreter {}{}",
        entry.name,
        entry.flags,
        entry.interpreter.display(),
        if version.is_empty() {
            String::new()
        } else {
            format!(" ({version})")
        }
    );

    match (entry.fix_binary(), is_static) {
        (_, Some(false)) => Check::new(
            &label,
            Status::Error,
            format!(
                "{summary}: the interpreter is dynamically linked and cannot run in containers"
            ),
            Some(format!("apt-get install qemu-user-static && {install}")),
        ),
        (false, None) => Check::new(
            &label,
            Status::Error,
            format!("{summary}: the interpreter does not exist on this host"),
            Some(format!("apt-get install qemu-user-static && {install}")),
        ),
        (false, Some(true)) => Check::new(
            &label,
            Status::Warning,
            format!("{summary}: no F flag, so each job container gets the interpreter mounted"),
            Some(install),
        ),
        (true, _) if !entry.credentials() => Check::new(
            &label,
            Status::Warning,
            format!("{summary}: no C flag, so sudo and other setuid programs fail in jobs"),
            Some(format!("{install} --credential")),
        ),
        (true, _) => Check::new(&label, Status::Ok, summary, None),
    }
}

/// Returns the first line of `<interpreter> --version`, which runs natively on the host.
fn qemu_version(path: &Path) -> String {
    Command::new(path)
        .arg("--version")
        .output()
        .ok()
        .and_then(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// Runs `uname -m` in a container of `image` through the same steps as `prepare`.
async fn check_image(settings: &Settings, image: &str, shutdown: &mut Shutdown) -> Check {
    let label = format!("image {image}");
    let job = JobContext {
        job_id: format!("doctor-{}", std::process::id()),
        project_id: "0".into(),
        runner_short_token: "doctor".into(),
        concurrent_project_id: "0".into(),
        image: Some(image.to_owned()),
        ..JobContext::default()
    };
    let prepared = prepare::prepare_job(settings, &job, shutdown).await;
    if let Ok(docker) = Docker::connect().await {
        let _ = cleanup::remove_job_resources(&docker, &job).await;
        // The smoke run's project cache is of no use to anyone.
        let _ = docker
            .remove_volume(&JobNames::for_job(&job).cache_volume)
            .await;
    }
    match prepared {
        Ok(prepared) => Check::new(
            &label,
            Status::Ok,
            format!(
                "uname -m prints {} ({}, {})",
                prepared.machine, prepared.platform, prepared.emulation
            ),
            None,
        ),
        Err(failure) => Check::new(&label, Status::Error, failure.to_string(), None),
    }
}

fn print_table(checks: &[Check]) {
    let width = checks
        .iter()
        .map(|check| check.name.len())
        .max()
        .unwrap_or(0);
    for check in checks {
        let status = match check.status {
            Status::Ok => "ok",
            Status::Warning => "WARNING",
            Status::Error => "ERROR",
        };
        println!("{status:<8} {:<width$}  {}", check.name, check.detail);
        if let Some(fix) = &check.fix {
            println!("{:<8} {:<width$}  fix: {fix}", "", "");
        }
    }
}
