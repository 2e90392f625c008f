//! `quarry watch`: creations, edits, renames and deletions reach the library
//! within seconds, while searches keep working.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn base(library: &Path, config: &Path) -> Command {
    common::quarry(library, config, &[])
}

/// Paths of the keyword hits for `word`.
fn hits(library: &Path, config: &Path, word: &str) -> Vec<String> {
    let out = base(library, config)
        .args(["search", word, "--mode", "keyword", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| h["path"].as_str().unwrap().to_string())
        .collect()
}

/// Wait until `cond` holds (polling), returning how long it took.
fn within(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while t.elapsed() < limit {
        if cond() {
            return t.elapsed();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what}: not seen within {limit:?}");
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn watch_picks_up_creations_edits_renames_and_deletions() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    let docs = docs.canonicalize().unwrap();
    let library = tmp.path().join("library");
    let config = tmp.path().join("config");
    std::fs::write(docs.join("start.txt"), "The library starts with one note.").unwrap();
    let out = base(&library, &config)
        .args(["index", docs.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());

    let mut child = base(&library, &config)
        .args(["watch", "--debounce-ms", "300", "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let limit = Duration::from_secs(60);
    let path = |name: &str| -> PathBuf { docs.join(name) };
    let has = |word: &str, name: &str| {
        hits(&library, &config, word).contains(&path(name).to_string_lossy().into_owned())
    };
    // The watcher is up once a creation is seen.
    std::fs::write(path("new.txt"), "Quokka sightings near the harbour.").unwrap();
    let t_create = within(limit, "creation", || has("quokka", "new.txt"));
    // An edit replaces the old text.
    std::fs::write(path("new.txt"), "Pangolin sightings near the harbour.").unwrap();
    let t_edit = within(limit, "edit", || {
        has("pangolin", "new.txt") && !has("quokka", "new.txt")
    });
    // A rename moves the document.
    std::fs::rename(path("new.txt"), path("renamed.txt")).unwrap();
    let t_rename = within(limit, "rename", || {
        has("pangolin", "renamed.txt") && !has("pangolin", "new.txt")
    });
    // A new folder with a file in it.
    std::fs::create_dir(path("sub")).unwrap();
    std::fs::write(path("sub/deep.txt"), "Axolotl care instructions.").unwrap();
    let t_folder = within(limit, "file in a new folder", || {
        has("axolotl", "sub/deep.txt")
    });
    // A deletion removes it.
    std::fs::remove_file(path("renamed.txt")).unwrap();
    let t_delete = within(limit, "deletion", || {
        hits(&library, &config, "pangolin").is_empty()
    });
    // Between bursts the watcher gives the new chunks their vectors.
    let t_vectors = within(limit, "vectors for the new chunks", || {
        let out = base(&library, &config)
            .args(["status", "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["pending_embeddings"] == 0
    });
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("vectors made within {t_vectors:?} of the deletion");
    eprintln!(
        "seen after: create {t_create:?}, edit {t_edit:?}, rename {t_rename:?}, new folder {t_folder:?}, delete {t_delete:?}"
    );
    // The untouched file is still there.
    assert!(has("starts", "start.txt"));
}
