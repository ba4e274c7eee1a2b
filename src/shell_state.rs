//! The shell that `prepare` found in a container, kept for the `run` stages of the same
//! preparation attempt.
//!
//! The runner gives every stage of one attempt the same private temporary directory (the one
//! holding `JOB_RESPONSE_FILE`) and deletes it after cleanup. `prepare` writes one small file
//! per container there, so each `run` can start its shell without first asking Docker which
//! shells exist. Without the file, `run` looks the shell up itself.

use std::path::{Path, PathBuf};

/// Shells `run` accepts from the file; anything else is ignored.
const KNOWN_SHELLS: [&str; 4] = [
    "/bin/bash",
    "/usr/bin/bash",
    "/usr/local/bin/bash",
    "/bin/sh",
];

fn state_file(state_dir: &Path, container: &str) -> PathBuf {
    state_dir.join(format!("cross-executor-{container}.shell"))
}

/// Records the shell of `container`; a failure only costs later stages a lookup.
pub fn save(state_dir: Option<&Path>, container: &str, shell: &str) {
    let Some(dir) = state_dir else { return };
    if let Err(error) = std::fs::write(state_file(dir, container), shell) {
        tracing::debug!(%error, container, "could not record the container's shell");
    }
}

/// Returns the recorded shell of `container`, if any.
pub fn load(state_dir: Option<&Path>, container: &str) -> Option<&'static str> {
    let text = std::fs::read_to_string(state_file(state_dir?, container)).ok()?;
    KNOWN_SHELLS.into_iter().find(|shell| *shell == text.trim())
}

/// Picks the shell from the output of `command -v bash`: bash when it printed a known path,
/// else `/bin/sh`.
pub fn from_probe(bash_path: &str) -> &'static str {
    KNOWN_SHELLS
        .into_iter()
        .find(|shell| *shell == bash_path.trim())
        .unwrap_or("/bin/sh")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        save(Some(dir.path()), "c1", "/usr/bin/bash");
        assert_eq!(load(Some(dir.path()), "c1"), Some("/usr/bin/bash"));
        assert_eq!(load(Some(dir.path()), "c2"), None);
        assert_eq!(load(None, "c1"), None);
    }

    #[test]
    fn unknown_shell_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        save(Some(dir.path()), "c1", "/tmp/evil");
        assert_eq!(load(Some(dir.path()), "c1"), None);
        assert_eq!(from_probe("/tmp/evil"), "/bin/sh");
        assert_eq!(from_probe("/bin/bash\n"), "/bin/bash");
    }
}
