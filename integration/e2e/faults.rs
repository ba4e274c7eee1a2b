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

/// Copies one direction of a connection. End of input is passed on as a half-close, which
/// Docker needs to see the end of an exec's standard input; a failed write closes both
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
