//! The candle embedder agrees with sentence-transformers (an independent
//! implementation): reference vectors computed once by
//! tests/fixtures/make_reference_embeddings.py, cosine >= 0.999 each.

use std::path::{Path, PathBuf};

use quarry_core::embed::{cosine, Embedder, Pooling};
use quarry_core::models::{ModelStore, Registry};

fn models_dir() -> PathBuf {
    std::env::var_os("QUARRY_MODELS_DIR")
        .map(PathBuf::from)
        .expect("set QUARRY_MODELS_DIR to the models folder (`quarry models fetch` fills it)")
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn minilm_matches_sentence_transformers() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/reference_embeddings.json");
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let store = ModelStore::new(models_dir(), Registry::builtin());
    let dir = store
        .require("all-minilm-l6-v2")
        .expect("all-minilm-l6-v2 installed");
    let spec = store.registry().get("all-minilm-l6-v2").unwrap();
    let embedder = Embedder::load(&dir, spec).unwrap();
    assert_eq!(
        embedder.pooling(),
        Pooling::Mean,
        "read from 1_Pooling/config.json"
    );
    let sentences: Vec<String> = reference["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert!(sentences.len() >= 12);
    let ours = embedder.embed_documents(&sentences).unwrap();
    for (i, want) in reference["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let want: Vec<f32> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(ours[i].len(), want.len());
        let c = cosine(&ours[i], &want);
        assert!(c >= 0.999, "sentence {i} ({:?}): cosine {c}", &sentences[i]);
    }
    // Batching does not change results: one at a time gives the same vectors.
    for (i, s) in sentences.iter().enumerate().take(4) {
        let single = embedder.embed_documents(std::slice::from_ref(s)).unwrap();
        assert!(cosine(&single[0], &ours[i]) > 0.9999);
    }
}
