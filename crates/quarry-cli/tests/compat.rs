//! A library written by an earlier release opens, checks and searches in
//! this one: `tests/fixtures/library-0.1` was written by release 0.1 (the
//! sample notes in `tests/fixtures/compat-docs`, indexed with
//! all-MiniLM-L6-v2) and is checked in as it was written. A change to the
//! library format that cannot read it must come with a migration.

mod common;

use std::path::{Path, PathBuf};

use common::{copy_tree, file_names, run_json};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/library-0.1")
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn a_library_written_by_release_0_1_opens_and_searches() {
    let tmp = tempfile::tempdir().unwrap();
    let library = tmp.path().join("library");
    copy_tree(&fixture(), &library);
    let config = tmp.path().join("config");
    let status = run_json(&library, &config, &["status", "--json"]);
    assert_eq!(status["documents"], 3, "{status}");
    assert_eq!(status["pending_embeddings"], 0, "{status}");
    assert!(status["chunks"].as_u64().unwrap() >= 3, "{status}");
    assert_eq!(status["embedder"], "all-minilm-l6-v2");
    let check = run_json(&library, &config, &["check", "--json"]);
    assert_eq!(check["consistent"], true, "{check}");
    for mode in ["keyword", "vector", "hybrid"] {
        let hits = run_json(
            &library,
            &config,
            &[
                "search",
                "dredging the harbour channel",
                "--mode",
                mode,
                "--json",
            ],
        );
        assert_eq!(
            file_names(&hits).first().map(String::as_str),
            Some("harbour.md"),
            "{mode}: {hits}"
        );
    }
}
