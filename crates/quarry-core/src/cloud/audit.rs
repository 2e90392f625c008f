//! The audit log: every outbound request, appended to `audit.jsonl` in the
//! library before anything is sent (so a crash mid-request still leaves its
//! record), and its outcome appended when it ends. Keys are never written;
//! redacted values are counted, never recorded.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::redact::RedactionSummary;
use crate::error::Result;
use crate::store::sealed::LibraryFiles;

/// The log file in a library folder.
pub fn log_path(library_dir: &Path) -> PathBuf {
    library_dir.join("audit.jsonl")
}

/// One outbound request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Identifier tying the outcome to the request.
    pub id: String,
    /// When it was sent (RFC 3339, UTC).
    pub time: String,
    /// Provider name.
    pub provider: String,
    /// Host the request went to.
    pub host: String,
    /// Model asked for.
    pub model: String,
    /// The privacy mode that allowed it, and why.
    pub privacy: String,
    /// Bytes of message text sent.
    pub bytes_sent: usize,
    /// Documents whose text was included.
    pub documents: Vec<String>,
    /// Redactions applied (per kind).
    pub redactions: RedactionSummary,
    /// How it ended: `ok`, `failed: …`, or absent while in progress (or if the process died).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Milliseconds until it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
enum Line {
    Request(AuditEntry),
    Outcome {
        id: String,
        outcome: String,
        duration_ms: u64,
    },
}

fn append(library_dir: &Path, line: &Line) -> Result<()> {
    LibraryFiles::of(library_dir)?.append_line(&log_path(library_dir), &serde_json::to_vec(line)?)
}

/// Record a request about to be sent.
pub fn record_request(library_dir: &Path, entry: &AuditEntry) -> Result<()> {
    append(library_dir, &Line::Request(entry.clone()))
}

/// Record how a request ended.
pub fn record_outcome(library_dir: &Path, id: &str, outcome: &str, duration_ms: u64) -> Result<()> {
    append(
        library_dir,
        &Line::Outcome {
            id: id.to_string(),
            outcome: outcome.to_string(),
            duration_ms,
        },
    )
}

/// Every recorded request with its outcome, oldest first. Lines that cannot be
/// read (a torn last line after a crash) are skipped.
pub fn read(library_dir: &Path) -> Result<Vec<AuditEntry>> {
    let lines = LibraryFiles::of(library_dir)?.read_lines(&log_path(library_dir))?;
    let mut entries: Vec<AuditEntry> = Vec::new();
    for line in lines {
        match serde_json::from_slice::<Line>(&line) {
            Ok(Line::Request(e)) => entries.push(e),
            Ok(Line::Outcome {
                id,
                outcome,
                duration_ms,
            }) => {
                if let Some(e) = entries.iter_mut().rev().find(|e| e.id == id) {
                    e.outcome = Some(outcome);
                    e.duration_ms = Some(duration_ms);
                }
            }
            Err(_) => continue,
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn requests_and_outcomes_are_joined_and_torn_lines_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = AuditEntry {
            id: "a1".into(),
            time: "2026-11-25T12:00:00Z".into(),
            provider: "work".into(),
            host: "127.0.0.1:9".into(),
            model: "m".into(),
            privacy: "auto".into(),
            bytes_sent: 120,
            documents: vec!["/docs/a.txt".into()],
            redactions: RedactionSummary::default(),
            outcome: None,
            duration_ms: None,
        };
        record_request(dir.path(), &e).unwrap();
        record_outcome(dir.path(), "a1", "ok", 40).unwrap();
        e.id = "a2".into();
        record_request(dir.path(), &e).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(log_path(dir.path()))
            .unwrap()
            .write_all(b"{\"record\":\"outc")
            .unwrap();
        let got = read(dir.path()).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].outcome.as_deref(), Some("ok"));
        assert_eq!(got[0].duration_ms, Some(40));
        assert_eq!(got[1].outcome, None);
    }
}
