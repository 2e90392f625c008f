//! Switching a library's embedder: every chunk re-embedded into a new table
//! while the old one keeps serving searches, an interrupted switch leaving the
//! library on the old embedder and resuming later, the swap, and the old
//! table dropped by the next writer.
//!
//! Only all-MiniLM-L6-v2's weights can be fetched here, so the second embedder
//! is a registry entry over the same weights with nomic-style task prefixes:
//! its vectors differ, and the whole switch path is real.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::models_dir;
use serde_json::Value;

struct Env {
    _tmp: tempfile::TempDir,
    docs: PathBuf,
    library: PathBuf,
    models: PathBuf,
    registry: PathBuf,
}

fn setup() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let docs = tmp.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    for e in std::fs::read_dir(root.join("tests/fixtures/corpus"))
        .unwrap()
        .flatten()
    {
        std::fs::copy(e.path(), docs.join(e.file_name())).unwrap();
    }
    let mut registry = std::fs::read_to_string(root.join("models/models.toml")).unwrap();
    registry.push_str(
        r#"
[[model]]
id = "minilm-twin"
role = "embedder"
format = "safetensors"
architecture = "bert"
dim = 384
max_tokens = 256
query_prefix = "search_query: "
document_prefix = "search_document: "
description = "test: all-MiniLM-L6-v2's weights with task prefixes"
files = [{ path = "model.safetensors" }, { path = "tokenizer.json" }, { path = "config.json" }]
"#,
    );
    let registry_path = tmp.path().join("models.toml");
    std::fs::write(&registry_path, registry).unwrap();
    let models = tmp.path().join("models");
    std::fs::create_dir(&models).unwrap();
    let real = models_dir().join("all-minilm-l6-v2");
    std::os::unix::fs::symlink(&real, models.join("all-minilm-l6-v2")).unwrap();
    std::os::unix::fs::symlink(&real, models.join("minilm-twin")).unwrap();
    Env {
        docs,
        library: tmp.path().join("library"),
        models,
        registry: registry_path,
        _tmp: tmp,
    }
}

fn run(env: &Env, args: &[&str], failpoint: Option<&str>) -> (bool, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_quarry"));
    c.args(args)
        .arg("--library")
        .arg(&env.library)
        .env("QUARRY_MODELS_DIR", &env.models)
        .env("QUARRY_MODEL_REGISTRY", &env.registry);
    if let Some(f) = failpoint {
        c.env("QUARRY_FAILPOINT", f);
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(env: &Env, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let (ok, out, err) = run(env, &a, None);
    assert!(ok, "quarry {args:?}: {err}");
    serde_json::from_str(&out).unwrap()
}

fn top_file(env: &Env, query: &str) -> String {
    let hits = json(env, &["search", query, "--mode", "vector", "-k", "1"]);
    let p = hits[0]["path"].as_str().unwrap();
    Path::new(p)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn switching_embedders_reembeds_resumes_and_swaps() {
    let env = setup();
    json(&env, &["index", env.docs.to_str().unwrap()]);
    let before = json(&env, &["status"]);
    assert_eq!(before["embedder"], "all-minilm-l6-v2");
    let chunks = before["chunks"].as_u64().unwrap();
    assert!(chunks > 10);
    let paraphrase = "ice melting in the mountains";
    assert_eq!(top_file(&env, paraphrase), "glaciers.pdf");

    // Interrupted after two batches of four: still on the old embedder, consistent, searchable.
    let (ok, _, err) = run(
        &env,
        &["reembed", "minilm-twin", "--batch", "4"],
        Some("reembed.after-batch:2"),
    );
    assert!(!ok, "the failpoint aborts the switch: {err}");
    let status = json(&env, &["status"]);
    assert_eq!(status["embedder"], "all-minilm-l6-v2", "{status}");
    assert_eq!(status["chunks"], chunks);
    assert_eq!(json(&env, &["check"])["consistent"], true);
    assert_eq!(top_file(&env, paraphrase), "glaciers.pdf");

    // Resumed: only the rest is embedded, then the library switches.
    let report = json(&env, &["reembed", "minilm-twin", "--batch", "4"]);
    assert_eq!(report["chunks"], chunks, "{report}");
    assert_eq!(
        report["embedded"],
        chunks - 8,
        "the first 8 were kept: {report}"
    );
    let status = json(&env, &["status"]);
    assert_eq!(status["embedder"], "minilm-twin", "{status}");
    assert_eq!(status["chunks"], chunks);
    assert_eq!(json(&env, &["check"])["consistent"], true);
    assert_eq!(top_file(&env, paraphrase), "glaciers.pdf");
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(env.library.join("library.json")).unwrap())
            .unwrap();
    assert_eq!(meta["chunks_table"], "chunks_minilm_twin");
    assert!(
        env.library.join("lance/chunks.lance").exists(),
        "kept for searchers still on it"
    );

    // The next writer drops the old table; indexing goes on with the new embedder.
    let again = json(&env, &["index", env.docs.to_str().unwrap()]);
    assert!(again["indexed"].as_array().unwrap().is_empty(), "{again}");
    assert!(!env.library.join("lance/chunks.lance").exists());
    std::fs::write(
        env.docs.join("new.txt"),
        "The lighthouse on Skerry Point was automated in 1987.",
    )
    .unwrap();
    json(&env, &["index", env.docs.to_str().unwrap()]);
    assert_eq!(
        top_file(&env, "when did the lighthouse stop needing a keeper"),
        "new.txt"
    );
    let (ok, _, err) = run(&env, &["reembed", "minilm-twin"], None);
    assert!(!ok && err.contains("already uses"), "{err}");
}
