//! Proof that an encrypted library holds nothing in plain text: every file
//! of its folder is opened with the key — each block of a sealed file, each
//! line of a sealed log — and what is not sealed is named.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::format::{self, Header, Opener, BLOCK, HEADER_LEN};
use super::key::{LibraryKey, KEY_FILE};
use crate::error::Result;

/// What opening every file of an encrypted library found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SealReport {
    /// Files that opened with the key: sealed files and sealed logs.
    pub sealed: usize,
    /// Bytes of those files.
    pub sealed_bytes: u64,
    /// Empty files (locks): nothing to hide.
    pub empty: usize,
    /// Sealed files cut short while being written (a temporary file or an
    /// upload's staging file left by a crash or a writer at work): not
    /// part of the library, and no plain text either.
    pub unfinished: usize,
    /// Files in plain text, which should not exist.
    pub plain: Vec<PathBuf>,
    /// Files that did not open with the key, and why.
    pub damaged: Vec<(PathBuf, String)>,
}

impl SealReport {
    /// Whether every file is sealed and opens with the key.
    pub fn all_sealed(&self) -> bool {
        self.plain.is_empty() && self.damaged.is_empty()
    }
}

/// Open every file under the library folder `dir` with `key` (all but the
/// key file itself, which holds the key only wrapped).
pub fn inspect(dir: &Path, key: &LibraryKey) -> Result<SealReport> {
    let mut report = SealReport::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in fs_err::read_dir(&folder)? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file()
                && path != dir.join(KEY_FILE)
                && path != dir.join(super::NEXT_KEY_FILE)
            {
                inspect_file(&path, key, &mut report)?;
            }
        }
    }
    report.plain.sort();
    report.damaged.sort();
    Ok(report)
}

fn inspect_file(path: &Path, key: &LibraryKey, report: &mut SealReport) -> Result<()> {
    let mut file = fs_err::File::open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        report.empty += 1;
        return Ok(());
    }
    let mut head = vec![0u8; HEADER_LEN.min(len as usize)];
    file.read_exact(&mut head)?;
    let verdict = if Header::parse(&head).is_ok() {
        open_blocks(&mut file, &head, len, key)
    } else {
        open_log_lines(path, key)
    };
    match verdict {
        Verdict::Sealed => {
            report.sealed += 1;
            report.sealed_bytes += len;
        }
        Verdict::Plain => report.plain.push(path.to_path_buf()),
        Verdict::Damaged(_) if being_written(path) => report.unfinished += 1,
        Verdict::Damaged(why) => report.damaged.push((path.to_path_buf(), why)),
    }
    Ok(())
}

/// Whether `path` is named as a file still being written: Quarry's atomic
/// writes (`.quarry-*.tmp`), object_store's upload staging (`name#n`) and
/// lance's conditional-create staging (`name.tmp.<uuid>`).
pub(super) fn being_written(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    (name.starts_with(".quarry-") && name.ends_with(".tmp"))
        || name.contains('#')
        || name.contains(".tmp.")
}

enum Verdict {
    Sealed,
    Plain,
    Damaged(String),
}

/// Open a sealed file block by block (bounded memory, any size).
fn open_blocks(file: &mut fs_err::File, head: &[u8], len: u64, key: &LibraryKey) -> Verdict {
    let opener = match Opener::new(key.cipher(), head, len) {
        Ok(o) => o,
        Err(e) => return Verdict::Damaged(e.to_string()),
    };
    let plain_len = opener.plain_len();
    let mut start = 0u64;
    let mut buf = Vec::new();
    loop {
        let range = start..(start + BLOCK as u64).min(plain_len);
        let span = opener.sealed_range(&range);
        buf.resize((span.end - span.start) as usize, 0);
        let read = file
            .seek(SeekFrom::Start(span.start))
            .and_then(|_| file.read_exact(&mut buf));
        if let Err(e) = read {
            return Verdict::Damaged(e.to_string());
        }
        if let Err(e) = opener.open(range.clone(), &buf) {
            return Verdict::Damaged(e.to_string());
        }
        start = range.end;
        if start >= plain_len {
            return Verdict::Sealed;
        }
    }
}

/// A sealed log: every line base64 of a sealed record. A last line torn by
/// a crash is allowed; a line in plain text makes the file plain.
fn open_log_lines(path: &Path, key: &LibraryKey) -> Verdict {
    let Ok(bytes) = std::fs::read(path) else {
        return Verdict::Damaged("cannot be read".into());
    };
    let lines: Vec<&[u8]> = format::log_lines(&bytes).collect();
    let opens = |l: &[u8]| format::open_line(key.cipher(), l).is_some();
    let opened = lines.iter().filter(|l| opens(l)).count();
    let torn_last = bytes.last() != Some(&b'\n');
    match lines.len() - opened {
        0 => Verdict::Sealed,
        1 if torn_last && lines.last().is_some_and(|l| !opens(l)) && opened > 0 => Verdict::Sealed,
        _ if opened == 0 => Verdict::Plain,
        n => Verdict::Damaged(format!("{n} line(s) do not open with the key")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sealed::LibraryFiles;
    use secrecy::SecretString;

    #[test]
    fn plain_files_and_changed_bytes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let key = LibraryKey::create(dir.path(), &SecretString::from("a long passphrase")).unwrap();
        let files = LibraryFiles::with_key(Some(key.clone()));
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        files
            .write(&dir.path().join("sub/a.json"), &vec![b'a'; 3 * BLOCK + 5])
            .unwrap();
        files
            .append_line(&dir.path().join("log.jsonl"), b"{}")
            .unwrap();
        std::fs::write(dir.path().join(".lock"), b"").unwrap();
        let clean = inspect(dir.path(), &key).unwrap();
        assert_eq!((clean.sealed, clean.empty), (2, 1));
        assert!(clean.all_sealed());

        std::fs::write(dir.path().join("notes.txt"), b"the escrow account").unwrap();
        let mut bytes = std::fs::read(dir.path().join("sub/a.json")).unwrap();
        bytes[HEADER_LEN + 2 * BLOCK + 40] ^= 1;
        std::fs::write(dir.path().join("sub/a.json"), bytes).unwrap();
        // A sealed file cut short while being written is not damage.
        let sealed = std::fs::read(dir.path().join("sub/a.json")).unwrap();
        std::fs::write(
            dir.path().join("sub/b.lance#1"),
            &sealed[..HEADER_LEN + 100],
        )
        .unwrap();
        let found = inspect(dir.path(), &key).unwrap();
        assert_eq!(found.unfinished, 1);
        assert_eq!(found.plain, vec![dir.path().join("notes.txt")]);
        assert_eq!(found.damaged.len(), 1);
        assert!(
            found.damaged[0].1.contains("block 2"),
            "{:?}",
            found.damaged
        );
        assert!(!found.all_sealed());
    }
}
