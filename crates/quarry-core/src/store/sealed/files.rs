//! The library's own small files — its metadata, logs, caches, journals and
//! task results — written and read sealed when the library is encrypted, so
//! that no file Quarry writes into an encrypted library holds plain text.
//!
//! Whole files are sealed whole. Append-only logs (JSON lines) get one
//! sealed record per line, in base64, so appending stays one write, and a
//! line torn by a crash fails its check and is skipped on reading, as a
//! damaged plain line is.

use std::io::Write;
use std::path::Path;

use super::format::{log_lines, open_line, seal, seal_line, unseal};
use super::key::LibraryKey;
use crate::error::{Error, Result};

/// How the files of one library are written: sealed or plain.
#[derive(Debug, Clone, Default)]
pub struct LibraryFiles {
    key: Option<LibraryKey>,
}

impl LibraryFiles {
    /// The files of the library in `dir`: sealed when it is encrypted (see
    /// [`LibraryKey::for_library`] for where the key comes from).
    pub fn of(dir: &Path) -> Result<LibraryFiles> {
        Ok(LibraryFiles {
            key: LibraryKey::for_library(dir)?,
        })
    }

    /// Files sealed with `key`, or plain when `None`.
    pub fn with_key(key: Option<LibraryKey>) -> LibraryFiles {
        LibraryFiles { key }
    }

    /// Whether files are sealed.
    pub fn is_sealed(&self) -> bool {
        self.key.is_some()
    }

    /// The key files are sealed with, if any.
    pub fn key(&self) -> Option<&LibraryKey> {
        self.key.as_ref()
    }

    /// Replace `path` with `bytes`, durably (see [`crate::fsio::write_atomically`]).
    pub fn write(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        match &self.key {
            None => crate::fsio::write_atomically(path, bytes),
            Some(key) => crate::fsio::write_atomically(path, &seal(key.cipher(), bytes)),
        }
    }

    /// The bytes of `path`, `None` when there is no such file.
    pub fn read(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        let bytes = match fs_err::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match &self.key {
            None => Ok(Some(bytes)),
            Some(key) => unseal(key.cipher(), &bytes)
                .map(Some)
                .map_err(|e| Error::Sealed {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                }),
        }
    }

    /// What any file of the library holds, opened with the key when it is
    /// sealed: a sealed file whole, a sealed log's lines one after another.
    /// Anything else (a plain library's files, a file that does not open)
    /// comes as it is on disk. For scans that must see through the sealing.
    pub fn open_any(&self, path: &Path) -> Result<Vec<u8>> {
        let bytes = fs_err::read(path)?;
        let Some(key) = &self.key else {
            return Ok(bytes);
        };
        if let Ok(plain) = unseal(key.cipher(), &bytes) {
            return Ok(plain);
        }
        let mut lines = Vec::new();
        for line in log_lines(&bytes) {
            match open_line(key.cipher(), line) {
                Some(plain) => lines.extend(plain),
                None => lines.extend_from_slice(line),
            }
            lines.push(b'\n');
        }
        Ok(lines)
    }

    /// Append one line (`line` holds no newline) to the log at `path` and
    /// flush it to disk.
    pub fn append_line(&self, path: &Path, line: &[u8]) -> Result<()> {
        let record = self.record(line);
        let mut f = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        f.write_all(&record)?;
        f.sync_data()?;
        Ok(())
    }

    /// Replace the log at `path` with `lines` (each without its newline),
    /// atomically and durably.
    pub fn write_lines<'a>(
        &self,
        path: &Path,
        lines: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<()> {
        let mut text = Vec::new();
        for line in lines {
            text.extend(self.record(line));
        }
        crate::fsio::write_atomically(path, &text)
    }

    /// One line as written to a log: sealed and in base64 when sealing.
    fn record(&self, line: &[u8]) -> Vec<u8> {
        let mut record = match &self.key {
            None => line.to_vec(),
            Some(key) => seal_line(key.cipher(), line),
        };
        record.push(b'\n');
        record
    }

    /// The lines of the log at `path` (none when there is no such file).
    /// Sealed lines that fail their check (torn by a crash, or changed) are
    /// left out; plain lines come as they are, for the caller to parse.
    pub fn read_lines(&self, path: &Path) -> Result<Vec<Vec<u8>>> {
        let bytes = match fs_err::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let lines = log_lines(&bytes);
        Ok(match &self.key {
            None => lines.map(<[u8]>::to_vec).collect(),
            Some(key) => lines.filter_map(|l| open_line(key.cipher(), l)).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[test]
    fn sealed_files_and_logs_round_trip_and_hold_no_plain_text() {
        let dir = tempfile::tempdir().unwrap();
        let key = LibraryKey::create(dir.path(), &SecretString::from("a long passphrase")).unwrap();
        let files = LibraryFiles::with_key(Some(key));
        let doc = dir.path().join("cache.json");
        files
            .write(&doc, b"{\"answer\": \"the escrow account\"}")
            .unwrap();
        let log = dir.path().join("audit.jsonl");
        files
            .append_line(&log, b"{\"n\": \"first escrow\"}")
            .unwrap();
        files
            .append_line(&log, b"{\"n\": \"second escrow\"}")
            .unwrap();
        // A line torn by a crash is skipped, not fatal.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(b"AAAA")
            .unwrap();
        for f in [&doc, &log] {
            let raw = std::fs::read(f).unwrap();
            assert!(!String::from_utf8_lossy(&raw).contains("escrow"));
        }
        assert_eq!(
            files.read(&doc).unwrap().unwrap(),
            b"{\"answer\": \"the escrow account\"}"
        );
        let lines = files.read_lines(&log).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1], b"{\"n\": \"second escrow\"}");
        assert!(files.read(&dir.path().join("absent")).unwrap().is_none());
        let plain = LibraryFiles::default();
        assert!(
            matches!(plain.read(&doc), Ok(Some(b)) if b != b"{\"answer\": \"the escrow account\"}")
        );
    }
}
