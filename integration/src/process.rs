//! Starting one stage process and waiting for it the way the runner does
//! (`helpers/process`, `executors/custom/command`).
//!
//! The process gets `/dev/null` as stdin, its own process group (`setpgid`), and
//! a cleared environment replaced by the composed one. It counts as finished when
//! it has exited and both pipes have reached EOF, so a child that keeps the pipes
//! open keeps the stage running. When a stop condition fires, SIGTERM goes to the
//! process group, then SIGKILL after the graceful timeout; after the force-kill
//! timeout the process is abandoned.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use crate::output::{CapturedOutput, OutputCollector, StdoutCapture};

const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

extern "C" {
    // From the C library that std already links; declared here to avoid a
    // dependency on the libc crate for one call.
    fn kill(pid: i32, signal: i32) -> i32;
}

/// Sends `signal` to the process group `group_id`. Returns whether it was sent.
fn signal_group(group_id: u32, signal: i32) -> bool {
    let Ok(group) = i32::try_from(group_id) else {
        return false;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe { kill(-group, signal) == 0 }
}

/// Cancellation flag for a running stage, shareable across threads.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        CancelToken::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Starts a thread that cancels the token after `delay`.
    pub fn cancel_after(&self, delay: Duration) {
        let token = self.clone();
        thread::spawn(move || {
            thread::sleep(delay);
            token.cancel();
        });
    }
}

/// Timeouts of the kill sequence (`graceful_kill_timeout`, `force_kill_timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KillTimeouts {
    /// Wait after SIGTERM before SIGKILL. Runner default: 600 s.
    pub graceful: Duration,
    /// Wait after SIGKILL before the process is abandoned. Runner default: 10 s.
    pub force: Duration,
}

impl Default for KillTimeouts {
    fn default() -> Self {
        KillTimeouts {
            graceful: Duration::from_secs(600),
            force: Duration::from_secs(10),
        }
    }
}

/// When to stop a running stage, and how.
#[derive(Clone, Debug, Default)]
pub struct StopConditions {
    /// Stage or job deadline.
    pub deadline: Option<Instant>,
    /// Job cancel or abort.
    pub cancel: Option<CancelToken>,
    pub kill: KillTimeouts,
    /// Maximum wait after SIGTERM when the deadline has passed. If the process
    /// is still alive then, the wait ends and the kill sequence goes on in the
    /// background. The runner does this when a job times out or is aborted
    /// (`WaitForBuildFinishTimeout`, 5 minutes), so `cleanup_exec` can overlap
    /// a stage that is still running.
    pub stop_waiting_after_deadline: Option<Duration>,
    /// The same limit after a cancel. `None` waits for the whole kill sequence,
    /// as the runner does for a graceful cancel of the user script.
    pub stop_waiting_after_cancel: Option<Duration>,
}

/// The stop condition that fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Deadline,
    Cancelled,
}

/// A signal the harness sent to the stage's process group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentSignal {
    /// 15 for SIGTERM, 9 for SIGKILL.
    pub signal: i32,
    /// Time since the process started.
    pub at: Duration,
    /// Whether kill(2) succeeded.
    pub delivered: bool,
}

/// The end of a stage process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessEnd {
    /// Exited normally with this code.
    Exited(i32),
    /// Killed by this signal number.
    Signaled { signal: i32, core_dumped: bool },
    /// Could not be started; the text is the operating system's error.
    FailedToStart(String),
    /// Still alive after SIGKILL and the force-kill timeout.
    KillTimedOut { pid: u32 },
    /// Still alive when `stop_waiting_after` ran out.
    Abandoned { pid: u32 },
}

/// The program, arguments, environment and directory of one stage process.
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The complete environment; nothing else is inherited.
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
}

/// Result of one stage process: its end, output, timing and signals.
#[derive(Clone, Debug)]
pub struct ProcessRun {
    pub end: ProcessEnd,
    pub output: CapturedOutput,
    /// From start to the end of waiting.
    pub duration: Duration,
    pub stop_reason: Option<StopReason>,
    pub signals: Vec<SentSignal>,
    /// Time between the process's exit and EOF on both pipes; long values mean a
    /// leftover child kept the pipes open.
    pub pipe_eof_delay: Option<Duration>,
}

/// The waiter thread's report: the exit status and when the process exited.
type WaitReport = (std::io::Result<std::process::ExitStatus>, Instant);

enum Phase {
    Running,
    Terminating(Instant),
    Killing(Instant),
}

const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Starts `spec` and waits for it to finish, applying `stop`.
pub fn run_process(
    spec: &ProcessSpec,
    capture: StdoutCapture,
    stop: &StopConditions,
) -> ProcessRun {
    let start = Instant::now();
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(key, value)| (key, value)))
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);

    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            // Worded like Go's error for a failed exec, which the runner shows.
            let message = format!("fork/exec {}: {error}", spec.program.display());
            return ProcessRun {
                end: ProcessEnd::FailedToStart(message),
                output: CapturedOutput::default(),
                duration: start.elapsed(),
                stop_reason: None,
                signals: Vec::new(),
                pipe_eof_delay: None,
            };
        }
    };

    let pid = child.id();
    let collector = OutputCollector::new(capture);
    let stdout_thread = child.stdout.take().map(|pipe| collector.drain_stdout(pipe));
    let stderr_thread = child.stderr.take().map(|pipe| collector.drain_stderr(pipe));
    let finished = Arc::new(AtomicBool::new(false));
    let (report_sender, report_receiver) = mpsc::channel::<WaitReport>();
    {
        let finished = Arc::clone(&finished);
        thread::spawn(move || {
            let status = child.wait();
            let exited_at = Instant::now();
            for reader in [stdout_thread, stderr_thread].into_iter().flatten() {
                let _ = reader.join();
            }
            finished.store(true, Ordering::SeqCst);
            let _ = report_sender.send((status, exited_at));
        });
    }

    let mut waiter = Waiter {
        start,
        pid,
        stop,
        phase: Phase::Running,
        stopped_at: None,
        stop_reason: None,
        signals: Vec::new(),
    };
    let end = waiter.wait(&report_receiver, &finished);
    let (end, pipe_eof_delay) = match end {
        WaitEnd::Reported((status, exited_at)) => {
            let end = match status {
                Ok(status) => match (status.code(), status.signal()) {
                    (Some(code), _) => ProcessEnd::Exited(code),
                    (None, Some(signal)) => ProcessEnd::Signaled {
                        signal,
                        core_dumped: status.core_dumped(),
                    },
                    (None, None) => ProcessEnd::Exited(-1),
                },
                Err(error) => ProcessEnd::FailedToStart(format!("wait failed: {error}")),
            };
            (end, Some(exited_at.elapsed()))
        }
        WaitEnd::Gone(end) => (end, None),
    };

    ProcessRun {
        end,
        output: collector.snapshot(),
        duration: start.elapsed(),
        stop_reason: waiter.stop_reason,
        signals: waiter.signals,
        pipe_eof_delay,
    }
}

enum WaitEnd {
    Reported(WaitReport),
    Gone(ProcessEnd),
}

/// The wait loop with its kill-sequence state.
struct Waiter<'a> {
    start: Instant,
    pid: u32,
    stop: &'a StopConditions,
    phase: Phase,
    stopped_at: Option<Instant>,
    stop_reason: Option<StopReason>,
    signals: Vec<SentSignal>,
}

impl Waiter<'_> {
    fn wait(
        &mut self,
        reports: &mpsc::Receiver<WaitReport>,
        finished: &Arc<AtomicBool>,
    ) -> WaitEnd {
        loop {
            match reports.recv_timeout(POLL_INTERVAL) {
                Ok(report) => return WaitEnd::Reported(report),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return WaitEnd::Gone(ProcessEnd::FailedToStart(
                        "the process waiter thread ended without a report".to_string(),
                    ))
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }

            let now = Instant::now();
            match self.phase {
                Phase::Running => {
                    if let Some(reason) = self.stop_reason_at(now) {
                        self.stop_reason = Some(reason);
                        self.stopped_at = Some(now);
                        self.send(SIGTERM);
                        self.phase = Phase::Terminating(now);
                    }
                }
                Phase::Terminating(since) if now >= since + self.stop.kill.graceful => {
                    self.send(SIGKILL);
                    self.phase = Phase::Killing(now);
                }
                Phase::Killing(since) if now >= since + self.stop.kill.force => {
                    return WaitEnd::Gone(ProcessEnd::KillTimedOut { pid: self.pid });
                }
                _ => {}
            }

            let limit = match self.stop_reason {
                Some(StopReason::Deadline) => self.stop.stop_waiting_after_deadline,
                Some(StopReason::Cancelled) => self.stop.stop_waiting_after_cancel,
                None => None,
            };
            if let (Some(stopped_at), Some(limit)) = (self.stopped_at, limit) {
                if now >= stopped_at + limit {
                    self.continue_kill_in_background(Arc::clone(finished));
                    return WaitEnd::Gone(ProcessEnd::Abandoned { pid: self.pid });
                }
            }
        }
    }

    fn stop_reason_at(&self, now: Instant) -> Option<StopReason> {
        if self
            .stop
            .cancel
            .as_ref()
            .is_some_and(CancelToken::is_cancelled)
        {
            return Some(StopReason::Cancelled);
        }
        if self.stop.deadline.is_some_and(|deadline| now >= deadline) {
            return Some(StopReason::Deadline);
        }
        None
    }

    fn send(&mut self, signal: i32) {
        let delivered = signal_group(self.pid, signal);
        self.signals.push(SentSignal {
            signal,
            at: self.start.elapsed(),
            delivered,
        });
    }

    /// Sends the SIGKILL that is still due, unless the process finishes first.
    fn continue_kill_in_background(&self, finished: Arc<AtomicBool>) {
        let Phase::Terminating(since) = self.phase else {
            return;
        };
        let kill_at = since + self.stop.kill.graceful;
        let pid = self.pid;
        thread::spawn(move || {
            while Instant::now() < kill_at {
                if finished.load(Ordering::SeqCst) {
                    return;
                }
                thread::sleep(POLL_INTERVAL.max(Duration::from_millis(100)));
            }
            if !finished.load(Ordering::SeqCst) {
                signal_group(pid, SIGKILL);
            }
        });
    }
}
