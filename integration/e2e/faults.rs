//! Failure classes under faults: a killed container, a lost daemon, a script that leaves a
//! process behind, and concurrent jobs.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use cross_executor_integration::Outcome;

use crate::support::*;

#[test]
fn killed_container_is_system_failure() {
    let job = job(BUSYBOX_ARMHF).build_script(["sleep 60"]);
    let name = container_name(job.id);
    let killer = thread::spawn(move || {
        // Wait until the script runs, then kill the container under it.
        for _ in 0..100 {
            thread::sleep(Duration::from_millis(200));
            let (_, processes) = docker(&["top", &name]);
            if processes.contains("sleep 60") {
                return docker(&["kill", &name]);
            }
        }
        (false, "the script never started".to_owned())
    });
    let result = harness().run_job(&job);
    let (killed, output) = killer.join().unwrap();
    assert!(killed, "{output}");

    let Outcome::SystemFailure { stage, .. } = &result.outcome else {
        panic!("expected a system failure, got {:?}", result.outcome);
    };
    assert_eq!(stage, "build_script");
    let log = result.job_log_text();
    assert!(
        log.contains("stopped while stage `build_script` ran"),
        "{log}"
    );
}

#[test]
fn script_exit_137_is_build_failure() {
    let result = harness().run_job(&job(BUSYBOX_ARMHF).build_script(["exit 137"]));
    let Outcome::BuildFailure { exit_code, .. } = &result.outcome else {
        panic!("expected a build failure, got {:?}", result.outcome);
    };
    assert_eq!(*exit_code, 137);
}

#[test]
fn background_process_does_not_hang_stage() {
    let job = job(BUSYBOX_ARMHF).build_script(["sleep 300 &", "echo shell-done"]);
    let result = harness().run_job(&job);
    assert_success(&result);
    let build = result.stage("build_script").unwrap();
    assert!(
        build.duration < Duration::from_secs(60),
        "took {:?}",
        build.duration
    );
    assert!(String::from_utf8_lossy(&build.stdout).contains("shell-done"));
}

/// Forwards connections from a Unix socket to the Docker socket until `cut` closes every
/// connection at once, which the driver sees as the daemon going away.
struct SocketProxy {
    connections: Arc<Mutex<Vec<UnixStream>>>,
    listener: UnixListener,
}

impl SocketProxy {
    fn start(path: &Path) -> Arc<Self> {
        let proxy = Arc::new(SocketProxy {
            connections: Arc::default(),
            listener: UnixListener::bind(path).unwrap(),
        });
        let accepting = Arc::clone(&proxy);
        thread::spawn(move || {
            for client in accepting.listener.incoming() {
                let Ok(client) = client else { return };
                let upstream = UnixStream::connect("/var/run/docker.sock").unwrap();
                let mut connections = accepting.connections.lock().unwrap();
                connections.push(client.try_clone().unwrap());
                connections.push(upstream.try_clone().unwrap());
                drop(connections);
                pipe(client.try_clone().unwrap(), upstream.try_clone().unwrap());
                pipe(upstream, client);
            }
        });
        proxy
    }

    fn cut(&self) {
        for connection in self.connections.lock().unwrap().drain(..) {
            let _ = connection.shutdown(std::net::Shutdown::Both);
        }
        let _ = self.listener.set_nonblocking(true);
    }
}

/// Copies one direction of a connection. End of input is passed on as a half-close,
/// because Docker needs it to end an exec's standard input. A failed write closes both
/// sockets, so the daemon never blocks on a reader that is gone.
fn pipe(mut from: UnixStream, mut to: UnixStream) {
    thread::spawn(move || {
        let mut buffer = [0u8; 65536];
        loop {
            match from.read(&mut buffer) {
                Ok(0) => {
                    let _ = to.shutdown(std::net::Shutdown::Write);
                    return;
                }
                Ok(count) if to.write_all(&buffer[..count]).is_ok() => {}
                _ => break,
            }
        }
        let _ = from.shutdown(std::net::Shutdown::Both);
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

#[test]
fn lost_daemon_is_system_failure() {
    let directory = tempfile::tempdir().unwrap();
    let socket = directory.path().join("docker.sock");
    let proxy = SocketProxy::start(&socket);
    let driver = driver().env("DOCKER_HOST", format!("unix://{}", socket.display()));
    let job = job(BUSYBOX_ARMHF).build_script(["sleep 60"]);

    let cutter = {
        let proxy = Arc::clone(&proxy);
        let name = container_name(job.id);
        thread::spawn(move || {
            for _ in 0..100 {
                thread::sleep(Duration::from_millis(200));
                if docker(&["top", &name]).1.contains("sleep 60") {
                    proxy.cut();
                    std::fs::remove_file(&socket).unwrap();
                    return true;
                }
            }
            false
        })
    };
    let result = harness_with(driver).run_job(&job);
    assert!(cutter.join().unwrap(), "the script never started");

    let Outcome::SystemFailure { stage, .. } = &result.outcome else {
        panic!("expected a system failure, got {:?}", result.outcome);
    };
    assert_eq!(stage, "build_script");
    let build = result.stage("build_script").unwrap();
    assert!(
        build.duration < Duration::from_secs(45),
        "took {:?}",
        build.duration
    );

    // Cleanup could not reach the daemon either; remove the job's objects directly.
    let name = container_name(job.id);
    docker(&["rm", "-f", &name]);
    docker(&["volume", "rm", "-f", &format!("{name}-builds")]);
}

#[test]
fn eight_concurrent_jobs_stay_apart() {
    let handles: Vec<_> = (0..8u32)
        .map(|index| {
            thread::spawn(move || {
                let marker = format!("job-marker-{index}");
                let job = job(BUSYBOX_ARMHF)
                    .concurrent_ids(index, index)
                    .stage("get_sources", [format!("echo {marker} > mine.txt")])
                    .build_script(["cat mine.txt", "ls"]);
                let result = harness().run_job(&job);
                (index, job.id, result)
            })
        })
        .collect();

    for handle in handles {
        let (index, job_id, result) = handle.join().unwrap();
        assert_success(&result);
        let stdout =
            String::from_utf8_lossy(&result.stage("build_script").unwrap().stdout).into_owned();
        assert!(stdout.contains(&format!("job-marker-{index}")), "{stdout}");
        for other in (0..8).filter(|other| *other != index) {
            assert!(!stdout.contains(&format!("job-marker-{other}")), "{stdout}");
        }
        assert!(leftovers(job_id).is_empty());
    }
}

/// A second Docker daemon of the test's own, with its own socket, data and containerd, so
/// the test can kill it without disturbing the tests that use the host's daemon.
struct SecondDaemon {
    directory: tempfile::TempDir,
    process: Option<std::process::Child>,
}

impl SecondDaemon {
    fn start() -> Self {
        let mut daemon = SecondDaemon {
            directory: tempfile::tempdir().unwrap(),
            process: None,
        };
        daemon.spawn();
        daemon
    }

    fn socket(&self) -> String {
        format!("unix://{}/docker.sock", self.directory.path().display())
    }

    fn cli(&self, args: &[&str]) -> (bool, String) {
        let socket = self.socket();
        let mut all = vec!["-H", socket.as_str()];
        all.extend_from_slice(args);
        docker(&all)
    }

    fn spawn(&mut self) {
        let root = self.directory.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.join("dockerd.log"))
            .unwrap();
        let child = std::process::Command::new("dockerd")
            .arg("--host")
            .arg(self.socket())
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(root.join("dockerd.pid"))
            .args(["--bridge", "none", "--iptables=false", "--ip-masq=false"])
            .args(["--cgroup-parent", "/cross-executor-test-daemon"])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd starts");
        self.process = Some(child);
        for _ in 0..150 {
            if self.cli(&["version"]).0 {
                return;
            }
            thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "the second dockerd did not answer; see {}/dockerd.log",
            root.display()
        );
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for SecondDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // What outlived the daemon: its containerd and shims, whose command lines name the
        // daemon's directory, and the container processes in the daemon's cgroup.
        let root = self.directory.path().display().to_string();
        let _ = std::process::Command::new("pkill")
            .args(["-KILL", "-f", &root])
            .status();
        let cgroups = std::process::Command::new("find")
            .args([
                "/sys/fs/cgroup",
                "-path",
                "*cross-executor-test-daemon*",
                "-name",
                "cgroup.procs",
            ])
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
            .unwrap_or_default();
        for procs in cgroups.lines() {
            for pid in std::fs::read_to_string(procs).unwrap_or_default().lines() {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", pid])
                    .status();
            }
        }
        // dockerd bind-mounts its data root and keeps network namespaces under its exec root.
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|line| line.split_whitespace().nth(1))
            .filter(|point| point.starts_with(root.as_str()))
            .collect();
        points.sort_by_key(|point| std::cmp::Reverse(point.len()));
        for point in points {
            let _ = std::process::Command::new("umount")
                .args(["-l", point])
                .status();
        }
    }
}

#[test]
fn killed_daemon_is_system_failure() {
    let mut daemon = SecondDaemon::start();
    let loaded = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker save {BUSYBOX_ARMHF} | docker -H {} load -q",
            daemon.socket()
        ))
        .status()
        .unwrap();
    assert!(loaded.success());

    let job = job(BUSYBOX_ARMHF).build_script(["sleep 60"]);
    let name = container_name(job.id);
    let driver = driver().env("DOCKER_HOST", daemon.socket());
    let started = std::time::Instant::now();
    let result = thread::scope(|scope| {
        let running = scope.spawn(|| harness_with(driver).run_job(&job));
        let mut seen = false;
        for _ in 0..150 {
            thread::sleep(Duration::from_millis(200));
            if daemon.cli(&["top", &name]).1.contains("sleep 60") {
                seen = true;
                break;
            }
        }
        assert!(seen, "the script never started");
        daemon.kill();
        running.join().unwrap()
    });

    let Outcome::SystemFailure { stage, .. } = &result.outcome else {
        panic!("expected a system failure, got {:?}", result.outcome);
    };
    assert_eq!(stage, "build_script");
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "took {:?}",
        started.elapsed()
    );

    // The container outlived its daemon; dropping the daemon removes what is left.
}
