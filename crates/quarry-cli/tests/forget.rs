//! `quarry forget` over the real binary and a real library: after a document
//! was indexed in several versions, asked about and kept in results, no file
//! of the library holds its text; the rest is intact and searchable; a copy
//! left where the check looks is found and fails the command; a passage
//! another document holds word for word (a saved second copy) is not taken
//! for a copy left behind.

mod common;

use std::path::{Path, PathBuf};

use common::{copy_tree, corpus_src, run, run_json};

const CLAIM: &str = "Claim file for Marguerite Oyelaran-Whitcombe, policy number QX-4471-PIER.\n\
The insured warehouse at Pier Nine, Saltmarsh Quay, flooded on 14 February after the tidal barrier failed.\n\
Loss adjuster Ferdinand Kowalczyk-Amato estimated the damage to stored textiles at 212,400 pounds.\n";

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    common::files_under(dir)
        .into_iter()
        .filter(|p| {
            std::fs::read(p)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
        })
        .collect()
}

struct Env {
    _tmp: tempfile::TempDir,
    docs: PathBuf,
    library: PathBuf,
    config: PathBuf,
}

impl Env {
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        run(&self.library, &self.config, args)
    }
}

/// The corpus plus the claim, indexed in four versions of the claim (each
/// run writes new fragments and segments).
fn setup() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    copy_tree(&corpus_src(), &docs);
    let env = Env {
        docs: docs.canonicalize().unwrap(),
        library: tmp.path().join("library"),
        config: tmp.path().join("config"),
        _tmp: tmp,
    };
    let claim = env.docs.join("claim-x.txt");
    let mut text = CLAIM.to_string();
    for revision in 0..4 {
        std::fs::write(&claim, &text).unwrap();
        let (ok, _, err) = env.run(&["index", env.docs.to_str().unwrap()]);
        assert!(ok, "{err}");
        text.push_str(&format!(
            "Revision {revision}: the adjuster revisited Pier Nine for Marguerite Oyelaran-Whitcombe.\n"
        ));
    }
    env
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn a_forgotten_document_is_in_no_file_and_the_rest_is_intact() {
    let env = setup();
    let claim = env.docs.join("claim-x.txt");
    // Derived copies: kept extraction results (one for the claim, one for
    // another document), as `quarry extract` keeps them.
    let tasks = env.library.join("tasks");
    std::fs::create_dir_all(&tasks).unwrap();
    let glaciers = env.docs.join("glaciers.pdf");
    let kept = format!(
        "{}\n{}\n",
        serde_json::json!({"path": claim, "fields": {"claimant": "Marguerite Oyelaran-Whitcombe"}}),
        serde_json::json!({"path": glaciers, "fields": {"glacier": "Morteratsch"}}),
    );
    std::fs::write(tasks.join("extract-test.jsonl"), kept).unwrap();
    assert!(!files_containing(&env.library, "Oyelaran-Whitcombe").is_empty());
    let before = run_json(
        &env.library,
        &env.config,
        &["search", "Morteratsch glacier", "--json"],
    );

    // The user deleted the file before asking Quarry to forget it.
    std::fs::remove_file(&claim).unwrap();
    let report = run_json(
        &env.library,
        &env.config,
        &["forget", claim.to_str().unwrap(), "--json"],
    );
    assert_eq!(report["verified"], true, "{report}");
    assert_eq!(report["documents"][0]["path"], claim.to_str().unwrap());
    assert!(report["text_probes"].as_u64().unwrap() >= 3, "{report}");
    assert!(report["vector_probes"].as_u64().unwrap() >= 1, "{report}");
    assert!(
        report["compressed_blocks"].as_u64().unwrap() >= 1,
        "tantivy's store was decoded: {report}"
    );
    assert_eq!(report["residues"], serde_json::json!([]));
    for needle in ["Oyelaran-Whitcombe", "Kowalczyk-Amato", "QX-4471-PIER"] {
        assert_eq!(
            files_containing(&env.library, needle),
            Vec::<PathBuf>::new(),
            "{needle}"
        );
    }
    let kept = std::fs::read_to_string(tasks.join("extract-test.jsonl")).unwrap();
    assert!(
        kept.contains("Morteratsch") && !kept.contains("Oyelaran"),
        "{kept}"
    );

    // The rest: consistent, and searchable as before.
    let check = run_json(&env.library, &env.config, &["check", "--json"]);
    assert_eq!(check["consistent"], true, "{check}");
    let after = run_json(
        &env.library,
        &env.config,
        &["search", "Morteratsch glacier", "--json"],
    );
    assert_eq!(after[0]["path"], before[0]["path"]);
    let gone = run_json(
        &env.library,
        &env.config,
        &["search", "Oyelaran-Whitcombe tidal barrier", "--json"],
    );
    assert!(
        gone.as_array()
            .unwrap()
            .iter()
            .all(|h| h["path"] != claim.to_str().unwrap()),
        "{gone}"
    );
    // A path with nothing indexed under it is a clear error.
    let (ok, _, err) = env.run(&["forget", claim.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("no indexed document is at or under it"),
        "{err}"
    );
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn a_copy_left_in_the_library_is_found_and_fails_the_command() {
    let env = setup();
    // A copy of the claim's text somewhere Quarry does not manage (a
    // note someone saved into the library folder) is still a copy.
    std::fs::write(env.library.join("notes.txt"), CLAIM).unwrap();
    let claim = env.docs.join("claim-x.txt");
    let (ok, out, _) = env.run(&["forget", claim.to_str().unwrap()]);
    assert!(!ok, "copies found fail the command: {out}");
    assert!(
        out.contains("COPIES FOUND") && out.contains("notes.txt"),
        "{out}"
    );
    assert!(out.contains("still on disk in a folder"), "{out}");
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn a_document_whose_twin_stays_is_forgotten_without_a_false_alarm() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    copy_tree(&corpus_src(), &docs);
    let (library, config) = (tmp.path().join("library"), tmp.path().join("config"));
    // The same attachment saved twice: identical passages, identical vectors.
    let (first, twin) = (docs.join("claim-x.txt"), docs.join("claim-x (copy).txt"));
    std::fs::write(&first, CLAIM).unwrap();
    std::fs::write(&twin, CLAIM).unwrap();
    let (ok, _, err) = run(&library, &config, &["index", docs.to_str().unwrap()]);
    assert!(ok, "{err}");
    std::fs::remove_file(&first).unwrap();
    let report = run_json(
        &library,
        &config,
        &["forget", first.to_str().unwrap(), "--json"],
    );
    assert_eq!(report["residues"], serde_json::json!([]), "{report}");
    assert_eq!(report["verified"], true, "{report}");
    let shared = report["shared_with_other_documents"].as_u64().unwrap();
    let probes =
        report["text_probes"].as_u64().unwrap() + report["vector_probes"].as_u64().unwrap();
    assert_eq!(shared, probes, "every probe is the twin's too: {report}");
    let hits = run_json(
        &library,
        &config,
        &["search", "Oyelaran-Whitcombe tidal barrier", "--json"],
    );
    let twin = twin.canonicalize().unwrap();
    let paths: Vec<&str> = hits
        .as_array()
        .unwrap()
        .iter()
        .take(3)
        .map(|h| h["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&twin.to_str().unwrap()), "{hits}");
    assert!(!paths.contains(&first.to_str().unwrap()), "{hits}");
}
