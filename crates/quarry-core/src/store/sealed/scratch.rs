//! Where lance's index builds put their working files while an encrypted
//! library is open.
//!
//! Building or folding in the approximate vector index (past
//! [`ANN_MIN_ROWS`](crate::store::ANN_MIN_ROWS) chunks) makes lance shuffle
//! each chunk's row id and product-quantisation code through two files in a
//! temporary folder of its own, written with its local store below any
//! object-store layer Quarry can seal. Those files hold no text and no
//! vectors (codes are indices into a codebook that only the sealed index
//! holds), and lance removes them when the build ends; but a crash leaves
//! them behind, and by default they land in the shared system temp folder.
//!
//! So while an encrypted library is open, the process's temporary folder
//! (the `tempfile` crate's, which lance uses) is a private one: a folder
//! made for this process (mode 0700 on Unix) under the user's runtime folder
//! where the system has one (`XDG_RUNTIME_DIR`: memory-backed and readable
//! by the user alone on Linux desktops), or else under the system temp
//! folder; and folders that processes which have ended left behind are
//! removed when the next one starts.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};

/// The name every scratch folder starts with.
const PREFIX: &str = "quarry-scratch-";
/// The lock a live process holds in its scratch folder.
const LOCK: &str = ".lock";
/// A folder without its lock younger than this may be one another process
/// is setting up, and is left alone.
const SETTLING: Duration = Duration::from_secs(3600);

/// This process's scratch folder and the lock that marks it live.
struct Scratch {
    dir: PathBuf,
    _lock: File,
}

static SCRATCH: OnceLock<std::result::Result<Scratch, String>> = OnceLock::new();

/// Make this process's temporary files (lance's index-build shuffles among
/// them) go to a private scratch folder, once per process, and remove the
/// scratch folders of processes that have ended. Returns the folder.
pub fn use_private_scratch() -> Result<&'static Path> {
    let scratch = SCRATCH.get_or_init(|| {
        let base = scratch_base(|k| std::env::var_os(k));
        let scratch = create(&base).map_err(|e| format!("{}: {e}", base.display()))?;
        sweep(&base, &scratch.dir);
        tempfile::env::override_temp_dir(&scratch.dir)
            .map_err(|set| format!("the temporary folder was already set to {}", set.display()))?;
        Ok(scratch)
    });
    match scratch {
        Ok(s) => Ok(&s.dir),
        Err(e) => Err(Error::Io(Arc::new(std::io::Error::other(format!(
            "private scratch folder: {e}"
        ))))),
    }
}

/// The folder scratch folders are made in: the user's runtime folder when
/// the environment names an existing one, else the system temp folder.
fn scratch_base(get: impl Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    get("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.is_dir())
        .unwrap_or_else(std::env::temp_dir)
}

/// A new scratch folder under `base` (random name, user-only), locked.
fn create(base: &Path) -> std::io::Result<Scratch> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(PREFIX);
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
    let dir = builder.tempdir_in(base)?.keep();
    let lock = File::create(dir.join(LOCK))?;
    lock.try_lock().map_err(std::io::Error::other)?;
    Ok(Scratch { dir, _lock: lock })
}

/// Remove the scratch folders under `base` whose process has ended (their
/// lock is free), except `own`; folders of other users or still in use are
/// left.
fn sweep(base: &Path, own: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry.file_name().to_string_lossy().starts_with(PREFIX);
        if ours && path != own && entry.file_type().is_ok_and(|t| t.is_dir()) && ended(&path) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Whether the process that made scratch folder `dir` has ended.
fn ended(dir: &Path) -> bool {
    match File::open(dir.join(LOCK)) {
        // The lock is released when its process ends, however it ends.
        Ok(lock) => lock.try_lock().is_ok(),
        Err(_) => std::fs::metadata(dir)
            .and_then(|m| m.modified())
            .is_ok_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() > SETTLING),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_folder_is_preferred_when_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().to_path_buf();
        assert_eq!(scratch_base(|_| Some(run.clone().into())), run);
        let missing = dir.path().join("gone");
        assert_eq!(
            scratch_base(|_| Some(missing.clone().into())),
            std::env::temp_dir()
        );
        assert_eq!(scratch_base(|_| None), std::env::temp_dir());
    }

    #[test]
    fn folders_of_ended_processes_are_swept_and_live_ones_kept() {
        let base = tempfile::tempdir().unwrap();
        let own = create(base.path()).unwrap();
        let live = create(base.path()).unwrap();
        let ended = create(base.path()).unwrap();
        std::fs::write(ended.dir.join("shuffle_data.lance"), b"codes").unwrap();
        let ended_dir = ended.dir.clone();
        drop(ended); // its lock is released, as when a process is killed
        let fresh = base.path().join(format!("{PREFIX}settling"));
        std::fs::create_dir(&fresh).unwrap();
        let other = base.path().join("someone-elses");
        std::fs::create_dir(&other).unwrap();

        sweep(base.path(), &own.dir);

        assert!(!ended_dir.exists(), "an ended process's folder stays");
        assert!(own.dir.exists() && live.dir.exists());
        assert!(fresh.exists(), "a folder being set up was removed");
        assert!(other.exists(), "a folder not Quarry's was removed");
    }

    #[cfg(unix)]
    #[test]
    fn the_scratch_folder_is_the_users_alone() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().unwrap();
        let s = create(base.path()).unwrap();
        let mode = std::fs::metadata(&s.dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    }
}
