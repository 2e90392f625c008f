//! Keyword phase first, vectors behind: a run without its embedding phase
//! leaves every file searchable by keyword (and answerable) with the chunks
//! waiting for vectors; the next run embeds exactly those, and the library
//! ends equal to one indexed in a single run. Real binary, real MiniLM and
//! SmolLM2, real LanceDB and tantivy.

mod common;

use std::path::{Path, PathBuf};

use common::{file_names as paths, run_json};

/// File names of the top `k` hits for `query` in `mode`.
fn search(library: &Path, config: &Path, query: &str, mode: &str, k: usize) -> Vec<String> {
    let k = k.to_string();
    let hits = run_json(
        library,
        config,
        &["search", query, "--mode", mode, "--json", "-k", &k],
    );
    paths(&hits)
}

/// A small library of notes on different subjects, one with a marker word.
fn make_notes(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let notes = [
        (
            "orchids.txt",
            "Greenhouse log. The vanilla orchids flowered in the third week of March, \
             after the misting schedule was changed to twice a day.",
        ),
        (
            "invoice.txt",
            "Invoice 2291 from Harbour Freight Ltd: forty crates of ceramic tiles, \
             payable within thirty days of delivery. Reference code qzv41marker.",
        ),
        (
            "bridge.txt",
            "Inspection report: the steel truss bridge over the river showed corrosion \
             on two bearings; repainting is scheduled for the autumn.",
        ),
        (
            "recipe.txt",
            "To bake the rye loaf, let the sourdough starter ferment overnight, knead \
             with caraway seeds and bake for fifty minutes.",
        ),
    ];
    for (name, text) in notes {
        std::fs::write(dir.join(name), text).unwrap();
    }
    for i in 0..12 {
        std::fs::write(
            dir.join(format!("minutes-{i:02}.txt")),
            format!(
                "Minutes of meeting {i}. The committee reviewed the budget line {i} and \
                 agreed to revisit the staffing plan at the next meeting."
            ),
        )
        .unwrap();
    }
}

/// A temporary folder with the notes in `docs`, and where the configuration
/// and the library go.
fn setup() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    make_notes(&docs);
    let (config, lib) = (tmp.path().join("config"), tmp.path().join("library"));
    (tmp, docs, config, lib)
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn keywords_first_then_vectors_equals_one_run() {
    let (tmp, docs, config, lib) = setup();
    let docs_s = docs.to_str().unwrap();

    // Keyword phase only.
    let first = run_json(&lib, &config, &["index", docs_s, "--json", "--no-embed"]);
    let chunks = first["chunks"].as_u64().unwrap();
    assert_eq!(first["indexed"].as_array().unwrap().len(), 16, "{first}");
    assert_eq!(first["embedded"], 0, "{first}");
    assert_eq!(
        first["pending_embeddings"].as_u64(),
        Some(chunks),
        "{first}"
    );
    let status = run_json(&lib, &config, &["status", "--json"]);
    assert_eq!(status["chunks"].as_u64(), Some(chunks), "{status}");
    assert_eq!(status["pending_embeddings"].as_u64(), Some(chunks));
    assert_eq!(status["keyword_chunks"].as_u64(), Some(chunks));
    let check = run_json(&lib, &config, &["check", "--json"]);
    assert_eq!(check["consistent"], true, "{check}");
    assert_eq!(
        check["pending_embeddings"].as_u64(),
        Some(chunks),
        "{check}"
    );

    // Searchable by keyword at once, in keyword and hybrid mode; no vectors yet.
    let kw = search(&lib, &config, "qzv41marker", "keyword", 10);
    assert_eq!(kw.first().map(String::as_str), Some("invoice.txt"));
    let hybrid = search(&lib, &config, "vanilla orchids", "hybrid", 10);
    assert_eq!(hybrid.first().map(String::as_str), Some("orchids.txt"));
    let vec = search(&lib, &config, "vanilla orchids", "vector", 10);
    assert!(vec.is_empty(), "vectors before embedding: {vec:?}");

    // A question about a keyword-only passage is answered, not declined by the
    // relevance floor (its similarity is computed on the spot).
    let a = run_json(
        &lib,
        &config,
        &[
            "ask",
            "When did the vanilla orchids flower?",
            "--json",
            "--max-tokens",
            "24",
            "--no-cache",
        ],
    );
    assert_eq!(a["route"]["target"], "local", "{a}");
    assert!(
        paths(&a["sources"]).contains(&"orchids.txt".to_string()),
        "{a}"
    );
    // And an unrelated one still is.
    let ask_unrelated = || {
        run_json(
            &lib,
            &config,
            &[
                "ask",
                "What is the airspeed velocity of an unladen swallow?",
                "--json",
                "--no-cache",
            ],
        )
    };
    let none = ask_unrelated();
    assert_eq!(none["route"]["target"], "none", "{none}");
    // No vectors yet: the library's relevance baseline waits for them.
    let status = run_json(&lib, &config, &["status", "--json"]);
    assert!(status["relevance_floor"]["baseline"].is_null(), "{status}");

    // The next run reads no file again and embeds exactly the waiting chunks.
    let second = run_json(&lib, &config, &["index", docs_s, "--json"]);
    assert!(second["indexed"].as_array().unwrap().is_empty(), "{second}");
    assert_eq!(second["unchanged"], 16, "{second}");
    assert_eq!(second["embedded"].as_u64(), Some(chunks), "{second}");
    assert_eq!(second["pending_embeddings"], 0, "{second}");
    let vec = search(
        &lib,
        &config,
        "when did the greenhouse plants bloom",
        "vector",
        3,
    );
    assert_eq!(
        vec.first().map(String::as_str),
        Some("orchids.txt"),
        "{vec:?}"
    );
    // With its vectors, the next question measures it over all of them.
    ask_unrelated();
    let status = run_json(&lib, &config, &["status", "--json"]);
    assert_eq!(
        status["relevance_floor"]["baseline"]["chunks"].as_u64(),
        Some(chunks),
        "{status}"
    );

    // Equal to a library indexed in one run.
    let once = tmp.path().join("once");
    run_json(&once, &config, &["index", docs_s, "--json"]);
    let a = run_json(&lib, &config, &["status", "--json"]);
    let b = run_json(&once, &config, &["status", "--json"]);
    for key in [
        "documents",
        "chunks",
        "keyword_chunks",
        "pending_embeddings",
    ] {
        assert_eq!(a[key], b[key], "{key}: {a} vs {b}");
    }
    for q in ["steel truss corrosion", "bread with caraway"] {
        let x = search(&lib, &config, q, "hybrid", 5);
        assert_eq!(x, search(&once, &config, q, "hybrid", 5), "{q}");
    }
    // The minutes are near-duplicates whose scores tie, so their order (and
    // which five of them come first) is not fixed: both libraries must find
    // five of them and nothing else.
    for library in [&lib, &once] {
        let x = search(library, &config, "budget meeting", "hybrid", 5);
        assert_eq!(x.len(), 5, "{x:?}");
        assert!(x.iter().all(|p| p.starts_with("minutes-")), "{x:?}");
    }
    let check = run_json(&lib, &config, &["check", "--json"]);
    assert_eq!(check["consistent"], true, "{check}");
    assert_eq!(check["pending_embeddings"], 0, "{check}");
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn a_changed_file_waiting_for_vectors_is_replaced_cleanly() {
    let (_tmp, docs, config, lib) = setup();
    let docs_s = docs.to_str().unwrap();
    run_json(&lib, &config, &["index", docs_s, "--json", "--no-embed"]);
    // Edit one waiting file and delete another before any vector is made.
    let edited: PathBuf = docs.join("bridge.txt");
    std::fs::write(
        &edited,
        "Inspection report: the suspension bridge cables were re-tensioned in May.",
    )
    .unwrap();
    std::fs::remove_file(docs.join("recipe.txt")).unwrap();
    let r = run_json(&lib, &config, &["index", docs_s, "--json"]);
    assert_eq!(r["indexed"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["removed"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["pending_embeddings"], 0, "{r}");
    let check = run_json(&lib, &config, &["check", "--json"]);
    assert_eq!(check["consistent"], true, "{check}");
    assert_eq!(check["documents"], 15, "{check}");
    let old = search(&lib, &config, "corrosion bearings", "keyword", 10);
    assert!(old.is_empty(), "old text still found: {old:?}");
    let new = search(&lib, &config, "cables tightened on a bridge", "vector", 1);
    assert_eq!(new, vec!["bridge.txt".to_string()]);
}
