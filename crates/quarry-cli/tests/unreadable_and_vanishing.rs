//! Files the indexer cannot read, and files that vanish or change while a
//! real indexing run is under way: each is reported with its reason, the run
//! finishes, the library stays consistent and the next run catches up.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{copy_tree, models_dir};
use serde_json::Value;

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `(path, reason)` pairs of a report list.
fn reasons(report: &Value, key: &str) -> Vec<(String, String)> {
    report[key]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["path"].as_str().unwrap_or_default().to_string(),
                        s["reason"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn unreadable_files_and_folders_are_listed_with_their_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    chmod(root, 0o755);
    let docs = root.join("docs");
    std::fs::create_dir(&docs).unwrap();
    std::fs::write(
        docs.join("open.txt"),
        "The lighthouse keeper logs the fog horn tests.",
    )
    .unwrap();
    std::fs::write(docs.join("secret.txt"), "Nobody may read this file.").unwrap();
    std::fs::create_dir(docs.join("locked")).unwrap();
    std::fs::write(
        docs.join("locked/inner.txt"),
        "Hidden behind a locked folder.",
    )
    .unwrap();
    chmod(&docs.join("secret.txt"), 0o000);
    chmod(&docs.join("locked"), 0o000);
    let library = root.join("library");
    let mut cmd;
    // Root reads everything, so as root the indexer runs as `nobody` (with its
    // own copy of the binary and the embedder, which root's home hides).
    if unsafe { libc::geteuid() } == 0 {
        let bin = root.join("quarry");
        std::fs::copy(env!("CARGO_BIN_EXE_quarry"), &bin).unwrap();
        chmod(&bin, 0o755);
        let models = root.join("models");
        copy_tree(
            &models_dir().join("all-minilm-l6-v2"),
            &models.join("all-minilm-l6-v2"),
        );
        for dir in [&models, &models.join("all-minilm-l6-v2")] {
            chmod(dir, 0o755);
        }
        std::fs::create_dir(&library).unwrap();
        std::fs::create_dir(root.join("home")).unwrap();
        for p in [&library, &root.join("home")] {
            std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
        }
        cmd = Command::new(&bin);
        cmd.uid(65534)
            .gid(65534)
            .env("QUARRY_MODELS_DIR", &models)
            .env("HOME", root.join("home"))
            .env("QUARRY_CONFIG_DIR", root.join("home/config"));
    } else {
        cmd = Command::new(env!("CARGO_BIN_EXE_quarry"));
        cmd.env("QUARRY_MODELS_DIR", models_dir())
            .env("QUARRY_CONFIG_DIR", root.join("config"));
    }
    let out = cmd
        .args(["index", docs.to_str().unwrap(), "--json", "--library"])
        .arg(&library)
        .output()
        .unwrap();
    // Let the temp dir be cleaned up.
    chmod(&docs.join("locked"), 0o755);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let indexed = report["indexed"].to_string();
    assert!(indexed.contains("open.txt"), "{report}");
    assert!(!indexed.contains("secret.txt") && !indexed.contains("inner.txt"));
    let skipped = reasons(&report, "skipped");
    let secret = skipped.iter().find(|(p, _)| p.ends_with("secret.txt"));
    assert_eq!(
        secret.map(|(_, r)| r.as_str()),
        Some("permission denied"),
        "{report}"
    );
    let locked = skipped.iter().find(|(p, _)| p.contains("locked"));
    assert!(
        locked.is_some_and(|(_, r)| r.contains("permission denied")),
        "the locked folder is listed: {report}"
    );
}

/// Start `quarry index DOCS --json` in small batches and return once its first
/// batch is being written (the walk is over).
fn index_under_way(docs: &Path, library: &Path) -> std::process::Child {
    let child = Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args([
            "index",
            docs.to_str().unwrap(),
            "--json",
            "--flush-chunks",
            "64",
            "--library",
        ])
        .arg(library)
        .env("QUARRY_MODELS_DIR", models_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !library.join("inflight.json").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "indexing never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// `n` one-line notes in `docs`, named by `name(i)`, made by `text(i)`.
fn write_notes(n: usize, name: impl Fn(usize) -> PathBuf, text: impl Fn(usize) -> String) {
    for i in 0..n {
        std::fs::write(name(i), text(i)).unwrap();
    }
}

/// `quarry ARGS --library LIBRARY` with the real models.
fn command(library: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_quarry"));
    c.args(args)
        .arg("--library")
        .arg(library)
        .env("QUARRY_MODELS_DIR", models_dir());
    c
}

/// `quarry ARGS --json`, which must succeed, parsed.
fn quarry(library: &Path, args: &[&str]) -> Value {
    let out = command(library, args).arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn files_that_vanish_or_change_during_indexing_are_reported_and_caught_up() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    let n = 1200;
    let name = |i: usize| docs.join(format!("note-{i:04}.txt"));
    write_notes(n, name, |i| {
        format!(
            "Field note {i}: the survey crew counted {} herons near marker {i}.",
            i * 7
        )
    });
    let library = tmp.path().join("library");
    // Once the walk is over and indexing under way, the last files vanish and
    // some others change.
    let child = index_under_way(&docs, &library);
    for i in n - 300..n {
        std::fs::remove_file(name(i)).unwrap();
    }
    for i in (600..700).step_by(10) {
        std::fs::write(
            name(i),
            format!("Field note {i}: revised, the crew saw a kingfisher instead."),
        )
        .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let vanished: Vec<_> = reasons(&report, "skipped")
        .into_iter()
        .filter(|(_, r)| r == "disappeared before it was read")
        .collect();
    assert!(
        !vanished.is_empty(),
        "no vanished file was reported: {}",
        report["skipped"]
    );
    let indexed = report["indexed"].as_array().unwrap().len();
    assert_eq!(
        indexed + vanished.len(),
        n,
        "every file was either indexed or reported as vanished"
    );
    let check = quarry(&library, &["check"]);
    assert_eq!(check["consistent"], true, "{check}");
    // The next run removes what vanished after being indexed and picks up the changes.
    let second = quarry(&library, &["index", docs.to_str().unwrap()]);
    assert!(second["skipped"].as_array().unwrap().is_empty(), "{second}");
    let status = quarry(&library, &["status"]);
    assert_eq!(status["documents"], n - 300, "{status}");
    let check = quarry(&library, &["check"]);
    assert_eq!(check["consistent"], true, "{check}");
    let hits = quarry(
        &library,
        &[
            "search",
            "kingfisher revised",
            "--mode",
            "keyword",
            "-k",
            "20",
        ],
    );
    assert_eq!(
        hits.as_array().unwrap().len(),
        10,
        "all ten changed notes are found: {hits}"
    );
    let gone = quarry(
        &library,
        &["search", "marker 1150", "--mode", "keyword", "-k", "50"],
    );
    for h in gone.as_array().unwrap() {
        let p = h["path"].as_str().unwrap();
        assert!(Path::new(p).exists(), "a hit for a deleted file: {p}");
    }
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn ctrl_c_stops_indexing_after_a_consistent_batch_and_the_next_run_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    let n = 1500;
    write_notes(
        n,
        |i| docs.join(format!("memo-{i:04}.txt")),
        |i| {
            format!(
                "Memo {i}: the depot shipped {} crates of tiles to site {i}.",
                i * 3
            )
        },
    );
    let library = tmp.path().join("library");
    let child = index_under_way(&docs, &library);
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Stopping after the current batch"));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["cancelled"], true, "{report}");
    let not_reached = report["not_reached"].as_u64().unwrap() as usize;
    let indexed = report["indexed"].as_array().unwrap().len();
    assert!(
        not_reached > 0 && indexed + not_reached == n,
        "{indexed} + {not_reached}"
    );
    assert_eq!(quarry(&library, &["check"])["consistent"], true);
    let rest = quarry(&library, &["index", docs.to_str().unwrap()]);
    assert_eq!(
        rest["indexed"].as_array().unwrap().len(),
        not_reached,
        "only the rest: {}",
        rest["unchanged"]
    );
    assert_eq!(quarry(&library, &["status"])["documents"], n);
    // Removing the folder takes every document out of both indexes.
    let out = command(&library, &["remove", docs.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = quarry(&library, &["status"]);
    assert_eq!(status["documents"], 0, "{status}");
    assert_eq!(status["chunks"], 0);
    assert_eq!(status["folders"].as_array().unwrap().len(), 0);
    assert_eq!(quarry(&library, &["check"])["consistent"], true);
}
