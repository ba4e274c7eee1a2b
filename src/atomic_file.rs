//! Small files that concurrent driver processes share, written whole or not at all.

use std::io::Write;
use std::path::Path;

/// Writes `content` to a temporary file beside `file` and renames it over `file`, so a
/// concurrent reader sees the old content or the new, never a part. Creates the directory
/// when missing.
pub fn write(file: &Path, content: &[u8]) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut temporary = tempfile::NamedTempFile::new_in(dir)?;
    temporary.write_all(content)?;
    temporary.persist(file).map_err(|error| error.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nested/value");
        write(&file, b"first").unwrap();
        write(&file, b"second").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"second");
        assert_eq!(
            std::fs::read_dir(dir.path().join("nested"))
                .unwrap()
                .count(),
            1
        );
    }
}
