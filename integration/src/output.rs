//! Capture of a stage process's stdout and stderr.
//!
//! Each pipe is drained by its own thread, so a driver that fills one pipe while
//! the harness waits on the other cannot deadlock. Chunks are also appended to a
//! combined buffer in arrival order, which is what the job log shows.

use std::io::{ErrorKind, Read};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use sha2::{Digest, Sha256};

/// Storage mode of a stage's stdout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StdoutCapture {
    /// Store every byte in memory (and in the combined log).
    #[default]
    Memory,
    /// Only count the bytes and hash them with SHA-256, so that very large
    /// output can pass through. The bytes appear neither in `stdout` nor in the
    /// combined log.
    Digest,
}

/// Byte count and SHA-256 of one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSummary {
    pub len: u64,
    /// Lower-case hex.
    pub sha256: String,
}

impl StreamSummary {
    /// Returns the summary of `bytes`, for comparing with a captured stream.
    pub fn of(bytes: &[u8]) -> Self {
        StreamSummary {
            len: bytes.len() as u64,
            sha256: hex(&Sha256::digest(bytes)),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Everything captured from one stage process.
#[derive(Clone, Debug, Default)]
pub struct CapturedOutput {
    /// Empty when stdout was captured with [`StdoutCapture::Digest`].
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// stdout and stderr interleaved in the order the chunks arrived.
    pub combined: Vec<u8>,
    /// Computed in both capture modes.
    pub stdout_summary: Option<StreamSummary>,
}

/// The capture shared by the two pipe-reading threads.
#[derive(Default)]
struct SharedCapture {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    combined: Vec<u8>,
    stdout_len: u64,
    stdout_hasher: Sha256,
}

/// Collects the output of one process from its two pipes.
#[derive(Clone)]
pub(crate) struct OutputCollector {
    shared: Arc<Mutex<SharedCapture>>,
    stdout_capture: StdoutCapture,
}

#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

impl OutputCollector {
    pub(crate) fn new(stdout_capture: StdoutCapture) -> Self {
        OutputCollector {
            shared: Arc::default(),
            stdout_capture,
        }
    }

    /// Starts a thread that drains `pipe` into the stdout capture until EOF.
    pub(crate) fn drain_stdout(&self, pipe: impl Read + Send + 'static) -> JoinHandle<()> {
        self.spawn_drain(pipe, Stream::Stdout)
    }

    /// Starts a thread that drains `pipe` into the stderr capture until EOF.
    pub(crate) fn drain_stderr(&self, pipe: impl Read + Send + 'static) -> JoinHandle<()> {
        self.spawn_drain(pipe, Stream::Stderr)
    }

    fn spawn_drain(&self, mut pipe: impl Read + Send + 'static, stream: Stream) -> JoinHandle<()> {
        let collector = self.clone();
        thread::spawn(move || {
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                match pipe.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(count) => collector.append(stream, &buffer[..count]),
                    Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        })
    }

    fn append(&self, stream: Stream, chunk: &[u8]) {
        let mut shared = self
            .shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match stream {
            Stream::Stdout => {
                shared.stdout_len += chunk.len() as u64;
                shared.stdout_hasher.update(chunk);
                if self.stdout_capture == StdoutCapture::Memory {
                    shared.stdout.extend_from_slice(chunk);
                    shared.combined.extend_from_slice(chunk);
                }
            }
            Stream::Stderr => {
                shared.stderr.extend_from_slice(chunk);
                shared.combined.extend_from_slice(chunk);
            }
        }
    }

    /// Returns a copy of what has been captured so far.
    pub(crate) fn snapshot(&self) -> CapturedOutput {
        let shared = self
            .shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        CapturedOutput {
            stdout: shared.stdout.clone(),
            stderr: shared.stderr.clone(),
            combined: shared.combined.clone(),
            stdout_summary: Some(StreamSummary {
                len: shared.stdout_len,
                sha256: hex(&shared.stdout_hasher.clone().finalize()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_mode_keeps_only_summary() {
        let collector = OutputCollector::new(StdoutCapture::Digest);
        collector.drain_stdout(&b"hello"[..]).join().unwrap();
        collector.drain_stderr(&b"err"[..]).join().unwrap();
        let output = collector.snapshot();
        assert!(output.stdout.is_empty());
        assert_eq!(output.combined, b"err");
        assert_eq!(output.stdout_summary, Some(StreamSummary::of(b"hello")));
    }

    #[test]
    fn memory_mode_keeps_streams_apart() {
        let collector = OutputCollector::new(StdoutCapture::Memory);
        collector.drain_stdout(&b"out"[..]).join().unwrap();
        collector.drain_stderr(&b"err"[..]).join().unwrap();
        let output = collector.snapshot();
        assert_eq!(output.stdout, b"out");
        assert_eq!(output.stderr, b"err");
        assert_eq!(output.combined, b"outerr");
    }

    #[test]
    fn summary_of_empty_input() {
        assert_eq!(
            StreamSummary::of(b"").sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
