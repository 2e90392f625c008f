//! Finding the files to index: gitignore-style rules (`.gitignore`, `.ignore`,
//! `.quarryignore`), hidden files skipped, a size cap, known binary types
//! skipped, the library's own folder excluded.

use std::path::{Path, PathBuf};

use crate::extract::Format;

/// Options of a walk.
#[derive(Debug, Clone)]
pub struct WalkOptions {
    /// Files larger than this are skipped.
    pub max_file_bytes: u64,
    /// Index hidden files and folders too.
    pub include_hidden: bool,
    /// Follow symbolic links (loops are detected and reported).
    pub follow_links: bool,
    /// Folders never entered (e.g. the library itself).
    pub exclude: Vec<PathBuf>,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions {
            max_file_bytes: 100 << 20,
            include_hidden: false,
            follow_links: false,
            exclude: Vec::new(),
        }
    }
}

/// A file to consider for indexing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Absolute path.
    pub path: PathBuf,
    /// The root folder it was found under.
    pub root: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
}

/// A path passed over, and why.
#[derive(ts_rs::TS, Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// The path.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// Modification time of a file in nanoseconds since the epoch (0 when unknown).
pub fn mtime_ns(md: &std::fs::Metadata) -> i64 {
    md.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Walk `root` (a folder or a single file).
pub fn walk(root: &Path, opts: &WalkOptions) -> (Vec<Candidate>, Vec<Skipped>) {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    let exclude = opts.exclude.clone();
    let walker = ignore::WalkBuilder::new(root)
        .hidden(!opts.include_hidden)
        .follow_links(opts.follow_links)
        .git_ignore(true)
        .git_global(false)
        .git_exclude(true)
        .ignore(true)
        .parents(true)
        .require_git(false)
        .add_custom_ignore_filename(".quarryignore")
        .filter_entry(move |e| !exclude.iter().any(|x| e.path().starts_with(x)))
        .build();
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(err) => {
                let path = error_path(&err).unwrap_or_else(|| root.to_path_buf());
                skipped.push(Skipped {
                    path,
                    reason: describe_walk_error(&err),
                });
                continue;
            }
        };
        let Some(ft) = entry.file_type() else {
            continue;
        };
        if ft.is_dir() {
            continue;
        }
        let path = entry.path().to_path_buf();
        if ft.is_symlink() && !opts.follow_links {
            continue;
        }
        if !ft.is_file() && !ft.is_symlink() {
            skipped.push(Skipped {
                path,
                reason: "not a regular file".into(),
            });
            continue;
        }
        if Format::for_path(&path).is_none() {
            let ext = path
                .extension()
                .map(|e| e.to_string_lossy().to_string())
                .unwrap_or_default();
            skipped.push(Skipped {
                path,
                reason: format!("unsupported file type .{ext}"),
            });
            continue;
        }
        let md = match entry.metadata() {
            Ok(m) => m,
            Err(e) => {
                skipped.push(Skipped {
                    path,
                    reason: describe_walk_error(&e),
                });
                continue;
            }
        };
        if md.len() > opts.max_file_bytes {
            skipped.push(Skipped {
                path,
                reason: format!(
                    "larger than the {} MiB limit ({} MiB)",
                    opts.max_file_bytes >> 20,
                    md.len() >> 20
                ),
            });
            continue;
        }
        files.push(Candidate {
            path,
            root: root.to_path_buf(),
            size: md.len(),
            mtime_ns: mtime_ns(&md),
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    (files, skipped)
}

fn error_path(err: &ignore::Error) -> Option<PathBuf> {
    match err {
        ignore::Error::WithPath { path, .. } => Some(path.clone()),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            error_path(err)
        }
        ignore::Error::Loop { child, .. } => Some(child.clone()),
        _ => None,
    }
}

fn describe_walk_error(err: &ignore::Error) -> String {
    match err {
        ignore::Error::WithPath { err, .. }
        | ignore::Error::WithDepth { err, .. }
        | ignore::Error::WithLineNumber { err, .. } => describe_walk_error(err),
        ignore::Error::Loop { ancestor, .. } => {
            format!("symbolic link loop back to {}", ancestor.display())
        }
        ignore::Error::Io(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            "permission denied".into()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respects_ignore_rules_hidden_and_size() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        std::fs::write(p.join("a.txt"), "a").unwrap();
        std::fs::write(p.join("b.log"), "b").unwrap();
        std::fs::write(p.join(".gitignore"), "*.log\n").unwrap();
        std::fs::write(p.join(".hidden.txt"), "h").unwrap();
        std::fs::write(p.join("big.txt"), vec![b'x'; 2048]).unwrap();
        std::fs::write(p.join("song.mp3"), "x").unwrap();
        std::fs::create_dir(p.join("lib")).unwrap();
        std::fs::write(p.join("lib/x.txt"), "x").unwrap();
        let opts = WalkOptions {
            max_file_bytes: 1024,
            exclude: vec![p.join("lib")],
            ..Default::default()
        };
        let (files, skipped) = walk(p, &opts);
        let names: Vec<_> = files
            .iter()
            .map(|f| f.path.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["a.txt"]);
        assert!(skipped
            .iter()
            .any(|s| s.path.ends_with("big.txt") && s.reason.contains("limit")));
        assert!(skipped
            .iter()
            .any(|s| s.path.ends_with("song.mp3") && s.reason.contains("unsupported")));
    }
}
