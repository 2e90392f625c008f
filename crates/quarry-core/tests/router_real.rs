//! The router's task classifier, measured on the held-out labelled set
//! (tests/fixtures/router/labelled.jsonl: 250 questions, none of them among
//! the built-in training examples) with the real MiniLM embedder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use quarry_core::answer::router::{parse_labelled, TaskClassifier, TaskLabel};
use quarry_core::models::{ModelStore, Registry};
use quarry_core::Embedder;

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn classifier_accuracy_on_the_held_out_set() {
    let models = std::env::var_os("QUARRY_MODELS_DIR")
        .map(PathBuf::from)
        .expect("set QUARRY_MODELS_DIR");
    let store = ModelStore::new(models, Registry::builtin());
    let spec = store.registry().get("all-minilm-l6-v2").unwrap();
    let embedder = Embedder::load(&store.require("all-minilm-l6-v2").unwrap(), spec).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let built = Instant::now();
    let classifier = TaskClassifier::builtin(&embedder, cache.path()).unwrap();
    let build_s = built.elapsed().as_secs_f64();
    // The second build comes from the cache.
    let cached = Instant::now();
    TaskClassifier::builtin(&embedder, cache.path()).unwrap();
    let cached_ms = cached.elapsed().as_secs_f64() * 1000.0;

    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/router/labelled.jsonl");
    let set = parse_labelled(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(set.len() >= 200, "{} labelled questions", set.len());
    let mut correct = 0;
    let mut by_kind: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut confusion = [[0usize; 2]; 2];
    let mut ms = Vec::new();
    for q in &set {
        let v = classifier.classify(&embedder, &q.question).unwrap();
        ms.push(v.ms);
        let ok = v.label == q.label;
        correct += ok as usize;
        let e = by_kind.entry(q.kind.clone()).or_default();
        e.0 += ok as usize;
        e.1 += 1;
        let (t, p) = (
            (q.label == TaskLabel::Frontier) as usize,
            (v.label == TaskLabel::Frontier) as usize,
        );
        confusion[t][p] += 1;
        if !ok {
            eprintln!(
                "miss ({:?}, score {:+.3}): {}",
                q.label, v.score, q.question
            );
        }
    }
    ms.sort_by(f64::total_cmp);
    let accuracy = correct as f64 / set.len() as f64;
    eprintln!(
        "router accuracy {:.3} ({correct}/{}); local→local {} local→frontier {} frontier→local {} frontier→frontier {}",
        accuracy,
        set.len(),
        confusion[0][0],
        confusion[0][1],
        confusion[1][0],
        confusion[1][1]
    );
    for (k, (ok, n)) in &by_kind {
        eprintln!("  {k}: {ok}/{n}");
    }
    eprintln!(
        "decision latency (embedding included): p50 {:.1} ms, p95 {:.1} ms; centroids built in {build_s:.1} s, loaded from cache in {cached_ms:.1} ms",
        ms[ms.len() / 2],
        ms[ms.len() * 95 / 100]
    );
    assert!(accuracy >= 0.85, "router accuracy {accuracy:.3}");
}
