//! Changing how an existing library is sealed, in place: encrypting a plain
//! library, and replacing an encrypted library's key (rotation). After a
//! rotation the old key is destroyed — its wrapped copy in the key file and,
//! for keychain libraries, its key-encryption key — so whatever was sealed
//! under it and cannot be rewritten (a backup, a snapshot, a disk block a
//! file once used) can no longer be opened: deletion by key destruction.
//!
//! The change is resumable. The new key is written first to
//! [`NEXT_KEY_FILE`]; while that file exists the library does not open
//! ([`crate::Error::KeyChangeUnfinished`]). Each file is then rewritten
//! under the new key through a temporary file and a rename, so every file
//! is whole under one key or the other at any instant; running the change
//! again skips the files that already open with the new key. Last, the new
//! key file replaces the old one.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::format::{self, Header, Opener, Sealer, BLOCK, HEADER_LEN};
use super::key::{self, KeySource, LibraryKey, KEY_FILE, NEXT_KEY_FILE};
use crate::error::{Error, Result};

/// What a change of a library's sealing did, to be kept as evidence.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RekeyReport {
    /// The library folder.
    pub library: PathBuf,
    /// The id of the key the files were sealed with before (`None`: the
    /// library was plain).
    pub old_key: Option<String>,
    /// How the old key was unlocked ("passphrase" or "keychain").
    pub old_unlock: Option<String>,
    /// The id of the key every file is sealed with now.
    pub new_key: String,
    /// How the new key is unlocked ("passphrase" or "keychain").
    pub new_unlock: String,
    /// Files rewritten under the new key.
    pub files_resealed: usize,
    /// Plain bytes those files hold.
    pub bytes: u64,
    /// Files already under the new key (an interrupted change resumed).
    pub already_done: usize,
    /// Plain files whose old bytes were overwritten with zeros after their
    /// sealed copy took their place (best effort: a copy-on-write file
    /// system or an SSD may keep the old blocks).
    pub plain_wiped: usize,
    /// Temporary files of interrupted writes removed (no part of the
    /// library).
    pub leftovers_removed: usize,
}

/// Where the new key of a change comes from.
pub enum NewKey<'a> {
    /// Derived from this passphrase with Argon2id.
    Passphrase(&'a secrecy::SecretString),
    /// A random key-encryption key kept in the OS keychain.
    Keychain,
}

/// Seal the library in `dir` under a new key from `new` — encrypting it in
/// place when it is plain, replacing its key (and destroying the old one)
/// when it is encrypted — or finish such a change that was interrupted.
/// `current` opens the library's present key when that needs a passphrase
/// (else a key unlocked earlier in this process, or [`super::PASSPHRASE_ENV`],
/// serves); the key of an interrupted change is opened with the passphrase
/// of `new` (or `current`, when `new` is the keychain). Takes the library's
/// write lock; no other process may have the library open meanwhile.
pub fn change_key(
    dir: &Path,
    current: Option<&secrecy::SecretString>,
    new: NewKey<'_>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<RekeyReport> {
    if !dir.join(crate::store::library::META).exists() {
        return Err(Error::NoLibrary(dir.to_path_buf()));
    }
    let _lock = crate::store::library::write_lock(dir)?;
    // A key unlocked earlier in this process serves (unless a change is
    // being finished, when only the key files say which key is which).
    let old = match current.is_none() && !dir.join(NEXT_KEY_FILE).exists() {
        true => LibraryKey::for_library(dir)?,
        false => LibraryKey::unlock_file(dir, KEY_FILE, current)?,
    };
    if old.is_none() && !dir.join(NEXT_KEY_FILE).exists() {
        let meta = dir.join(crate::store::library::META);
        crate::store::library::refuse_sealed_without_key(dir, &meta)?;
    }
    let resume_with = match &new {
        NewKey::Passphrase(p) => Some(*p),
        NewKey::Keychain => current,
    };
    let next = begin(dir, new, resume_with)?;
    finish(dir, old.as_ref(), &next, progress)
}

/// Whether the key of an interrupted change of the library in `dir` is
/// wrapped under a passphrase (rather than kept in the keychain).
pub fn next_needs_passphrase(dir: &Path) -> bool {
    key::unlock_kind(&dir.join(NEXT_KEY_FILE)) == Some("passphrase")
}

/// Start or resume a change of the library in `dir` to a new key: the key
/// in [`NEXT_KEY_FILE`] when a change was interrupted (opened with
/// `passphrase` when it needs one), or a new one from `source`.
pub fn begin(
    dir: &Path,
    source: NewKey<'_>,
    passphrase: Option<&secrecy::SecretString>,
) -> Result<LibraryKey> {
    let next = dir.join(NEXT_KEY_FILE);
    if next.exists() {
        return LibraryKey::unlock_file(dir, NEXT_KEY_FILE, passphrase)?
            .ok_or_else(|| Error::Internal("the next key file vanished".into()));
    }
    let source = match source {
        NewKey::Passphrase(p) => KeySource::Passphrase(p),
        NewKey::Keychain => KeySource::Keychain,
    };
    LibraryKey::create_in(&next, source)
}

/// Reseal every file of the library in `dir` from `old` (`None`: plain) to
/// `new` — the key [`begin`] returned — then make `new` the library's key
/// and destroy the old one. The caller holds the library's write lock and
/// no other process has the library open. `progress` hears (files done,
/// files in all).
pub fn finish(
    dir: &Path,
    old: Option<&LibraryKey>,
    new: &LibraryKey,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<RekeyReport> {
    let mut report = RekeyReport {
        library: dir.to_path_buf(),
        old_key: old.map(|k| k.id().to_string()),
        old_unlock: key::unlock_kind(&dir.join(KEY_FILE)).map(str::to_string),
        new_key: new.id().to_string(),
        new_unlock: key::unlock_kind(&dir.join(NEXT_KEY_FILE))
            .unwrap_or("passphrase")
            .to_string(),
        ..RekeyReport::default()
    };
    reseal_files(dir, old, new, &mut report, progress, None)?;
    let current = dir.join(KEY_FILE);
    let old_file = dir.join(".encryption.old.json");
    if current.exists() {
        fs_err::rename(&current, &old_file)?;
    }
    fs_err::rename(dir.join(NEXT_KEY_FILE), &current)?;
    crate::fsio::sync_dir(dir);
    if old_file.exists() {
        key::destroy_key_file(&old_file)?;
    }
    key::forget_unlocked(dir);
    LibraryKey::remember(dir, new.clone());
    Ok(report)
}

/// The files of the library to reseal: all but the key files.
fn library_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in fs_err::read_dir(&folder)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() && !is_key_file(dir, &path) {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn is_key_file(dir: &Path, path: &Path) -> bool {
    path.parent() == Some(dir)
        && path
            .file_name()
            .is_some_and(|n| n == KEY_FILE || n == NEXT_KEY_FILE || n == ".encryption.old.json")
}

/// Reseal the library's files; `stop_after` (tests) stops after that many
/// files, as a crash would.
fn reseal_files(
    dir: &Path,
    old: Option<&LibraryKey>,
    new: &LibraryKey,
    report: &mut RekeyReport,
    progress: &mut dyn FnMut(usize, usize),
    stop_after: Option<usize>,
) -> Result<()> {
    let files = library_files(dir)?;
    for (i, path) in files.iter().enumerate() {
        if stop_after == Some(i) {
            return Err(Error::Internal("stopped".into()));
        }
        reseal_file(path, old, new, report)?;
        progress(i + 1, files.len());
    }
    Ok(())
}

/// Reseal one file under `new`, through a temporary file and a rename.
fn reseal_file(
    path: &Path,
    old: Option<&LibraryKey>,
    new: &LibraryKey,
    report: &mut RekeyReport,
) -> Result<()> {
    if super::inspect::being_written(path) {
        crate::fsio::remove_durably(path)?;
        report.leftovers_removed += 1;
        return Ok(());
    }
    let mut file = fs_err::File::open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut head = vec![0u8; HEADER_LEN.min(len as usize)];
    file.read_exact(&mut head)?;
    let (plain_len, wipe) = if Header::parse(&head).is_ok() {
        if opens_with(&mut file, &head, len, new) {
            report.already_done += 1;
            return Ok(());
        }
        let key = old.ok_or_else(|| damaged(path, "sealed, but the library is not encrypted"))?;
        let opener = Opener::new(key.cipher(), &head, len).map_err(|e| damaged(path, e))?;
        let plain_len = opener.plain_len();
        replace(path, new, false, |out| {
            copy_opened(path, &mut file, &opener, out)
        })?;
        (plain_len, false)
    } else if path.extension().is_some_and(|e| e == "jsonl") {
        let Some(lines) = reseal_log(path, old, new)? else {
            report.already_done += 1;
            return Ok(());
        };
        with_old_wiped(path, old.is_none(), || {
            crate::fsio::write_atomically(path, &lines)
        })?;
        (len, old.is_none())
    } else {
        file.seek(SeekFrom::Start(0))?;
        replace(path, new, true, |out| copy_plain(&mut file, out))?;
        (len, true)
    };
    if wipe {
        report.plain_wiped += 1;
    }
    report.files_resealed += 1;
    report.bytes += plain_len;
    Ok(())
}

/// Whether the sealed file's first block opens with `key`.
fn opens_with(file: &mut fs_err::File, head: &[u8], len: u64, key: &LibraryKey) -> bool {
    let Ok(opener) = Opener::new(key.cipher(), head, len) else {
        return false;
    };
    let range = 0..(BLOCK as u64).min(opener.plain_len());
    read_span(file, &opener, &range).is_some_and(|b| opener.open(range, &b).is_ok())
}

fn read_span(
    file: &mut fs_err::File,
    opener: &Opener<'_>,
    range: &std::ops::Range<u64>,
) -> Option<Vec<u8>> {
    let span = opener.sealed_range(range);
    let mut buf = vec![0u8; (span.end - span.start) as usize];
    file.seek(SeekFrom::Start(span.start)).ok()?;
    file.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// How much plain text one step of a copy handles (bounded memory).
const STEP: u64 = 64 * BLOCK as u64;

/// Hand a sealed file's plain bytes to `out`, a step at a time.
fn copy_opened(
    path: &Path,
    file: &mut fs_err::File,
    opener: &Opener<'_>,
    out: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let plain_len = opener.plain_len();
    let mut start = 0u64;
    while start < plain_len {
        let range = start..(start + STEP).min(plain_len);
        let sealed = read_span(file, opener, &range).ok_or_else(|| damaged(path, "cut short"))?;
        out(&opener
            .open(range.clone(), &sealed)
            .map_err(|e| damaged(path, e))?)?;
        start = range.end;
    }
    Ok(())
}

/// Hand a plain file's bytes to `out`, a step at a time.
fn copy_plain(file: &mut fs_err::File, out: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut buf = vec![0u8; STEP as usize];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        out(&buf[..n])?;
    }
}

/// Put in place of `path` a file sealed with `new` from the plain bytes
/// `copy` hands over, through a temporary file and a rename, durably (and
/// see [`with_old_wiped`]).
fn replace(
    path: &Path,
    new: &LibraryKey,
    wipe_old: bool,
    copy: impl FnOnce(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>,
) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".quarry-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    let mut sealer = Sealer::new(new.cipher().clone());
    let mut sealed = Vec::with_capacity(STEP as usize + BLOCK);
    copy(&mut |plain| {
        sealer.push(plain, &mut sealed);
        tmp.write_all(&sealed)?;
        sealed.clear();
        Ok(())
    })?;
    sealer.finish(&mut sealed);
    tmp.write_all(&sealed)?;
    tmp.as_file().sync_all()?;
    with_old_wiped(path, wipe_old, || {
        tmp.persist(path).map_err(|e| Error::from(e.error))?;
        crate::fsio::sync_dir(dir);
        Ok(())
    })
}

/// Run `put`, which puts a new file in place of `path`; when `wipe`,
/// overwrite the old file's bytes with zeros afterwards, through a handle
/// opened on them before.
fn with_old_wiped(path: &Path, wipe: bool, put: impl FnOnce() -> Result<()>) -> Result<()> {
    let old = match wipe {
        true => Some(fs_err::OpenOptions::new().write(true).open(path)?),
        false => None,
    };
    put()?;
    if let Some(mut old) = old {
        let zeros = vec![0u8; BLOCK];
        let mut left = old.metadata()?.len();
        old.seek(SeekFrom::Start(0))?;
        while left > 0 {
            let n = left.min(BLOCK as u64) as usize;
            old.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        old.sync_all()?;
    }
    Ok(())
}

/// A log's lines, each sealed with `new`: lines sealed with `old` are
/// opened, plain lines taken as they are, a line torn by a crash dropped.
/// `None` when every line already opens with `new`.
fn reseal_log(path: &Path, old: Option<&LibraryKey>, new: &LibraryKey) -> Result<Option<Vec<u8>>> {
    let bytes = fs_err::read(path)?;
    let open = |line: &[u8], key: &LibraryKey| format::open_line(key.cipher(), line);
    let lines: Vec<&[u8]> = format::log_lines(&bytes).collect();
    if lines.iter().all(|l| open(l, new).is_some()) {
        return Ok(None);
    }
    let mut text = Vec::with_capacity(bytes.len() * 2);
    for line in lines {
        let plain = match (open(line, new), old) {
            (Some(p), _) => p,
            (None, Some(old)) => match open(line, old) {
                Some(p) => p,
                None => continue,
            },
            (None, None) => line.to_vec(),
        };
        text.extend(format::seal_line(new.cipher(), &plain));
        text.push(b'\n');
    }
    Ok(Some(text))
}

fn damaged(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::Sealed {
        path: path.to_path_buf(),
        reason: why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sealed::{inspect, LibraryFiles};
    use secrecy::SecretString;

    fn pass(p: &str) -> SecretString {
        SecretString::from(p.to_string())
    }

    /// A library folder's worth of files: a whole file, a log, a big file
    /// over several blocks, a lock and a leftover temporary.
    fn write_files(dir: &Path, files: &LibraryFiles) -> Vec<u8> {
        let big: Vec<u8> = (0..3 * BLOCK + 77).map(|i| (i % 251) as u8).collect();
        fs_err::create_dir_all(dir.join("vectors/data")).unwrap();
        files
            .write(&dir.join("library.json"), b"{\"folders\":[\"/secret\"]}")
            .unwrap();
        files
            .write(&dir.join("vectors/data/part.lance"), &big)
            .unwrap();
        for line in [&b"{\"q\":\"first secret line\"}"[..], b"{\"q\":\"second\"}"] {
            files.append_line(&dir.join("audit.jsonl"), line).unwrap();
        }
        fs_err::write(dir.join(".write.lock"), b"").unwrap();
        fs_err::write(dir.join(".quarry-x.tmp"), b"half a plain secret").unwrap();
        big
    }

    fn assert_opens_with(dir: &Path, key: &LibraryKey, big: &[u8]) {
        let files = LibraryFiles::with_key(Some(key.clone()));
        assert_eq!(
            files
                .read(&dir.join("vectors/data/part.lance"))
                .unwrap()
                .unwrap(),
            big
        );
        let lines = files.read_lines(&dir.join("audit.jsonl")).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], b"{\"q\":\"first secret line\"}");
        let seal = inspect(dir, key).unwrap();
        assert!(seal.all_sealed(), "{seal:?}");
        assert!(!dir.join(".quarry-x.tmp").exists());
    }

    #[test]
    fn a_plain_library_is_encrypted_in_place_and_an_interrupted_change_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let big = write_files(dir, &LibraryFiles::with_key(None));
        let new = begin(dir, NewKey::Passphrase(&pass("a long passphrase")), None).unwrap();
        let mut report = RekeyReport::default();
        let crash = reseal_files(dir, None, &new, &mut report, &mut |_, _| {}, Some(3));
        assert!(crash.is_err());
        assert!(matches!(
            LibraryKey::unlock(dir, Some(&pass("a long passphrase"))),
            Err(Error::KeyChangeUnfinished(_))
        ));
        // Resumed: the key of the change is opened again, not made anew.
        let again = begin(dir, NewKey::Keychain, Some(&pass("a long passphrase"))).unwrap();
        assert_eq!(again.id(), new.id());
        let report = finish(dir, None, &again, &mut |_, _| {}).unwrap();
        assert!(report.already_done >= 1, "{report:?}");
        assert!(report.plain_wiped >= 2, "{report:?}");
        let key = LibraryKey::unlock(dir, Some(&pass("a long passphrase")))
            .unwrap()
            .unwrap();
        assert_eq!(key.id(), new.id());
        assert_opens_with(dir, &key, &big);
    }

    #[test]
    fn after_a_rotation_the_old_key_opens_nothing_and_old_copies_stay_shut() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let old = LibraryKey::create(dir, &pass("the old passphrase")).unwrap();
        let big = write_files(dir, &LibraryFiles::with_key(Some(old.clone())));
        let backup = fs_err::read(dir.join("vectors/data/part.lance")).unwrap();
        let new = begin(dir, NewKey::Passphrase(&pass("the new passphrase")), None).unwrap();
        let report = finish(dir, Some(&old), &new, &mut |_, _| {}).unwrap();
        assert_eq!(report.old_key.as_deref(), Some(old.id()));
        assert_eq!(report.plain_wiped, 0);
        assert!(matches!(
            LibraryKey::unlock(dir, Some(&pass("the old passphrase"))),
            Err(Error::WrongKey(_))
        ));
        let key = LibraryKey::unlock(dir, Some(&pass("the new passphrase")))
            .unwrap()
            .unwrap();
        assert_opens_with(dir, &key, &big);
        // A copy made before the rotation does not open with the key left.
        assert!(format::unseal(key.cipher(), &backup).is_err());
        assert!(format::unseal(old.cipher(), &backup).is_ok());
        assert!(!dir.join(".encryption.old.json").exists());
    }
}
