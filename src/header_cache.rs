//! The ELF header of each image's shell, remembered by image ID.
//!
//! `prepare` needs the header to choose the emulation before it creates the job container,
//! but Docker can only read it from a container. Without this cache every job creates a
//! container, reads the header through the archive endpoint and, when an interpreter must
//! be mounted, creates the container again. An image ID is a digest of the image's
//! configuration, which names its layers, so an entry never goes stale.
//!
//! Entries live in `$XDG_CACHE_HOME/cross-executor/image-headers`, or in
//! `$HOME/.cache/cross-executor/image-headers` without it. Each is a file named after the
//! digest, with the header in hex. Jobs write entries concurrently, so each is written
//! whole through [`crate::atomic_file`]. Any failure only costs a cache miss.

use std::path::{Path, PathBuf};

/// Returns the driver's cache directory for its user, `cross-executor` in
/// `XDG_CACHE_HOME` or `~/.cache`, or `None` when neither variable is set.
pub fn driver_cache_dir() -> Option<PathBuf> {
    let set = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    let base = set("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| set("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("cross-executor"))
}

/// Returns the directory of the header entries.
pub fn default_dir() -> Option<PathBuf> {
    Some(driver_cache_dir()?.join("image-headers"))
}

/// Returns the recorded header of the image with ID `image_id`, if any.
pub fn load(dir: Option<&Path>, image_id: &str) -> Option<Vec<u8>> {
    let text = std::fs::read_to_string(entry_path(dir?, image_id)?).ok()?;
    crate::hex::decode(text.trim())
}

/// Records `header` for the image with ID `image_id`.
pub fn store(dir: Option<&Path>, image_id: &str, header: &[u8]) {
    let Some(dir) = dir else { return };
    if let Err(error) = write_entry(dir, image_id, header) {
        tracing::debug!(%error, dir = %dir.display(), "could not record an image's ELF header");
    }
}

fn write_entry(dir: &Path, image_id: &str, header: &[u8]) -> std::io::Result<()> {
    let path = entry_path(dir, image_id).ok_or(std::io::ErrorKind::InvalidInput)?;
    let text = crate::hex::encode(header);
    crate::atomic_file::write(&path, format!("{text}\n").as_bytes())
}

/// Returns the entry's path, or `None` when the ID is not a `sha256:` digest, so no ID can
/// name a file outside the directory.
fn entry_path(dir: &Path, image_id: &str) -> Option<PathBuf> {
    let digest = image_id.strip_prefix("sha256:")?;
    let valid = digest.len() == 64 && digest.bytes().all(|byte| byte.is_ascii_hexdigit());
    valid.then(|| dir.join(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn header_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("nested");
        let header: Vec<u8> = (0..64).collect();
        assert_eq!(load(Some(&cache), ID), None);
        store(Some(&cache), ID, &header);
        assert_eq!(load(Some(&cache), ID), Some(header));
    }

    #[test]
    fn ids_that_are_not_digests_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        for id in ["sha256:../../etc/passwd", "busybox", "sha256:abc", ""] {
            store(Some(dir.path()), id, b"\x7fELF");
            assert_eq!(load(Some(dir.path()), id), None, "{id}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn damaged_entry_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let digest = ID.strip_prefix("sha256:").unwrap();
        std::fs::write(dir.path().join(digest), "7f45zz").unwrap();
        assert_eq!(load(Some(dir.path()), ID), None);
        std::fs::write(dir.path().join(digest), "7f4").unwrap();
        assert_eq!(load(Some(dir.path()), ID), None);
    }
}
