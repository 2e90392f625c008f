//! Durable file writes: the one way the engine replaces a file so that a
//! crash or a power cut leaves either the old file or the new one, never a
//! torn or empty one.

use std::io::Write;
use std::path::Path;

use crate::error::Result;

/// Replace `path` with `bytes`: write a temporary file beside it, fsync it,
/// rename it over `path`, then fsync the folder so the rename itself
/// survives a power cut. Creates the folder if needed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs_err::create_dir_all(dir)?;
    // A unique name, so two writers of the same file never share a temporary.
    let mut tmp = tempfile::Builder::new()
        .prefix(".quarry-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| crate::Error::from(e.error))?;
    sync_dir(dir);
    Ok(())
}

/// Make a rename or removal in `dir` durable (best effort; folders cannot be
/// fsynced on Windows).
pub fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Remove `file` durably; a file that is already gone is not an error.
pub fn remove_durably(file: &Path) -> Result<()> {
    match std::fs::remove_file(file) {
        Ok(()) => {
            if let Some(dir) = file.parent() {
                sync_dir(dir);
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub").join("a.json");
        write_atomically(&file, b"one").unwrap();
        write_atomically(&file, b"two").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(file.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
        remove_durably(&file).unwrap();
        remove_durably(&file).unwrap();
        assert!(!file.exists());
    }
}
