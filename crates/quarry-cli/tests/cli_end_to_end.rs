//! End to end: the real `quarry` binary, the real all-MiniLM-L6-v2 weights, a
//! real LanceDB + tantivy library on disk, real documents of every format.
//!
//! Needs the default embedder installed in QUARRY_MODELS_DIR (the README's test
//! command fetches it first).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use common::{corpus_src, models_dir};

fn file_names(hits: &[Value]) -> Vec<String> {
    common::file_names(&Value::Array(hits.to_vec()))
}

struct Env {
    _tmp: tempfile::TempDir,
    docs: PathBuf,
    library: PathBuf,
    config: PathBuf,
}

fn setup() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    for e in std::fs::read_dir(corpus_src()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), docs.join(e.file_name())).unwrap();
    }
    let library = tmp.path().join("library");
    let config = tmp.path().join("config");
    Env {
        docs: docs.canonicalize().unwrap(),
        library,
        config,
        _tmp: tmp,
    }
}

fn quarry(env: &Env, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args(args)
        .env("QUARRY_MODELS_DIR", models_dir())
        .env("QUARRY_CONFIG_DIR", &env.config)
        .env("QUARRY_LIBRARY_DIR", &env.library)
        .output()
        .expect("run quarry");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(env: &Env, args: &[&str]) -> Value {
    let (ok, out, err) = quarry(env, args);
    assert!(ok, "quarry {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn search(env: &Env, mode: &str, query: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["search", query, "--mode", mode, "--json", "-k", "5"];
    args.extend_from_slice(extra);
    json(env, &args).as_array().expect("array of hits").clone()
}

/// `name` is among the first `n` distinct files of the hits.
fn finds(hits: &[Value], name: &str, n: usize) -> bool {
    let mut names = file_names(hits);
    names.dedup();
    names.iter().take(n).any(|f| f == name)
}

const FORMATS: &[&str] = &[
    "glaciers.pdf",
    "contract.docx",
    "review.pptx",
    "bread.odt",
    "budget.xlsx",
    "staff.csv",
    "settings.json",
    "install.md",
    "octopus.html",
    "tea.txt",
    "invite.eml",
    "minutes.rtf",
];

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn index_search_edit_reindex() {
    let env = setup();
    let docs = env.docs.to_str().unwrap();
    let report = json(&env, &["index", docs, "--json"]);

    // Every format indexed; the corrupt PDF and the binary file failed with reasons.
    let indexed: Vec<String> = report["indexed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            Path::new(e[0].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for f in FORMATS {
        assert!(
            indexed.contains(&f.to_string()),
            "{f} not indexed: {report}"
        );
    }
    let listed = |key: &str| report[key].as_array().unwrap().clone();
    let reason = |name: &str| {
        listed("failed")
            .into_iter()
            .chain(listed("skipped"))
            .find(|f| f["path"].as_str().unwrap().ends_with(name))
            .map(|f| f["reason"].as_str().unwrap().to_string())
    };
    assert!(reason("broken.pdf")
        .expect("broken.pdf listed as failed")
        .contains("PDF"));
    assert!(reason("blob.dat")
        .expect("blob.dat listed as skipped")
        .contains("binary"));
    assert!(listed("failed")
        .iter()
        .any(|f| f["path"].as_str().unwrap().ends_with("broken.pdf")));
    assert!(listed("skipped")
        .iter()
        .any(|f| f["path"].as_str().unwrap().ends_with("blob.dat")));

    let status = json(&env, &["status", "--json"]);
    assert_eq!(status["documents"].as_u64(), Some(FORMATS.len() as u64));
    let chunks = status["chunks"].as_u64().unwrap();
    assert!(chunks >= FORMATS.len() as u64);
    assert_eq!(status["keyword_chunks"].as_u64(), Some(chunks));
    assert_eq!(status["failed"].as_u64(), Some(1));
    assert_eq!(status["skipped"].as_u64(), Some(1));

    // Paraphrased queries find their documents by meaning.
    let paraphrases = [
        ("ice masses in Switzerland getting smaller", "glaciers.pdf"),
        (
            "how can I cancel the deal before it runs out",
            "contract.docx",
        ),
        ("clever sea creatures with eight arms", "octopus.html"),
        ("making sourdough bread", "bread.odt"),
        ("moving computers to another facility", "invite.eml"),
    ];
    for (q, want) in paraphrases {
        let hits = search(&env, "vector", q, &[]);
        assert!(
            finds(&hits, want, 2),
            "vector: {q:?} → {:?}",
            file_names(&hits)
        );
        let hits = search(&env, "hybrid", q, &[]);
        assert!(
            finds(&hits, want, 3),
            "hybrid: {q:?} → {:?}",
            file_names(&hits)
        );
    }
    // Exact rare terms are found by keyword, and by hybrid.
    let rare = [
        ("Morteratsch", "glaciers.pdf"),
        ("Quillfeather", "budget.xlsx"),
        ("Zephyrine", "contract.docx"),
        ("Fjordline", "review.pptx"),
        ("Vortigern", "settings.json"),
        ("Halvorsen", "staff.csv"),
        ("Darjeeling", "tea.txt"),
        ("Quaysworth", "minutes.rtf"),
    ];
    for (q, want) in rare {
        let hits = search(&env, "keyword", q, &[]);
        assert_eq!(
            file_names(&hits).first().map(String::as_str),
            Some(want),
            "keyword: {q}"
        );
        let hits = search(&env, "hybrid", q, &[]);
        assert!(
            finds(&hits, want, 2),
            "hybrid: {q:?} → {:?}",
            file_names(&hits)
        );
    }
    // Hybrid searches teach the library its fusion weight (a query counts
    // when both lists have two hits or more); a fixed weight or a single
    // retriever teaches it nothing.
    let history = || -> Option<Value> {
        let bytes = std::fs::read(env.library.join("fusion-history.json")).ok()?;
        Some(serde_json::from_slice(&bytes).unwrap())
    };
    let count = |h: &Option<Value>| h.as_ref().map_or(0, |h| h["questions"].as_u64().unwrap());
    let before = count(&history());
    search(&env, "hybrid", "install time for the team data", &[]);
    let learned = history();
    assert_eq!(count(&learned), before + 1, "{learned:?}");
    search(&env, "hybrid", "team data", &["--vector-weight", "0.3"]);
    search(&env, "keyword", "team data", &[]);
    search(&env, "vector", "team data", &[]);
    assert_eq!(history(), learned, "only adaptive hybrid searches count");
    search(&env, "hybrid", "team data and install time", &[]);
    let after = history();
    assert_eq!(count(&after), before + 2, "{after:?}");
    assert_ne!(after.unwrap()["lead"], learned.unwrap()["lead"]);
    let status = json(&env, &["status", "--json"]);
    let w = status["fusion"]["vector_weight"].as_f64().unwrap();
    assert!((0.5..=0.95).contains(&w), "{status}");

    // Provenance: the PDF hit is on page 2, paths are absolute, snippets highlight.
    let hits = search(&env, "keyword", "Morteratsch", &[]);
    assert_eq!(hits[0]["page"].as_u64(), Some(2));
    assert!(Path::new(hits[0]["path"].as_str().unwrap()).is_absolute());
    assert!(hits[0]["text"].as_str().unwrap().contains("Morteratsch"));
    assert!(!hits[0]["highlights"].as_array().unwrap().is_empty());
    let hits = search(&env, "keyword", "termination notice", &[]);
    assert_eq!(hits[0]["heading"].as_str(), Some("Termination"));

    // Filters.
    let hits = search(&env, "hybrid", "report", &["--ext", "pdf"]);
    assert!(!hits.is_empty() && file_names(&hits).iter().all(|f| f.ends_with(".pdf")));
    let prefix = format!("{}/oct", docs);
    let hits = search(&env, "hybrid", "intelligence", &["--path-prefix", &prefix]);
    assert!(!hits.is_empty() && file_names(&hits).iter().all(|f| f == "octopus.html"));

    // Re-indexing an unchanged folder does nothing.
    let again = json(&env, &["index", docs, "--json"]);
    assert_eq!(again["indexed"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(again["chunks"].as_u64(), Some(0));

    // Edit one file, delete another: only those change.
    std::fs::write(
        env.docs.join("tea.txt"),
        "Coffee notes.\n\nThe Zanzibarine roast is brewed strong with cardamom.\n",
    )
    .unwrap();
    std::fs::remove_file(env.docs.join("bread.odt")).unwrap();
    let third = json(&env, &["index", docs, "--json"]);
    assert_eq!(third["indexed"].as_array().unwrap().len(), 1, "{third}");
    assert_eq!(third["removed"].as_array().unwrap().len(), 1, "{third}");
    let hits = search(&env, "keyword", "Zanzibarine", &[]);
    assert_eq!(
        file_names(&hits).first().map(String::as_str),
        Some("tea.txt")
    );
    assert!(search(&env, "keyword", "Darjeeling", &[]).is_empty());
    assert!(search(&env, "keyword", "levain", &[]).is_empty());
    let hits = search(&env, "vector", "making sourdough bread", &[]);
    assert!(!file_names(&hits).contains(&"bread.odt".to_string()));
    let status = json(&env, &["status", "--json"]);
    assert_eq!(status["documents"].as_u64(), Some(FORMATS.len() as u64 - 1));
    assert_eq!(status["chunks"].as_u64(), status["keyword_chunks"].as_u64());
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn clear_errors_for_bad_input() {
    let env = setup();
    let (ok, _, err) = quarry(&env, &["search", "anything"]);
    assert!(!ok);
    assert!(err.contains("no Quarry library"), "{err}");
    let (ok, _, err) = quarry(&env, &["index", "/definitely/not/here"]);
    assert!(!ok);
    assert!(
        err.contains("/definitely/not/here") && err.contains("no such file"),
        "{err}"
    );
    let (ok, _, err) = quarry(&env, &["search", "x", "--mode", "fuzzy"]);
    assert!(!ok);
    assert!(err.contains("fuzzy"), "{err}");
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn missing_model_names_the_command_that_fetches_it() {
    let env = setup();
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args(["index", env.docs.to_str().unwrap()])
        .env("QUARRY_MODELS_DIR", empty.path())
        .env("QUARRY_LIBRARY_DIR", &env.library)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("quarry models fetch all-minilm-l6-v2"),
        "{err}"
    );
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn models_list_shows_installed() {
    let env = setup();
    let list = json(&env, &["models", "list", "--json"]);
    let minilm = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "all-minilm-l6-v2")
        .unwrap();
    assert_eq!(minilm["installed"], true);
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "bge-small-en-v1.5"));
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn ask_answers_from_sources_and_declines_unrelated_questions() {
    let env = setup();
    let docs = env.docs.to_str().unwrap();
    json(&env, &["index", docs, "--json"]);

    let ask = |question: &str, extra: &[&str]| {
        let mut args = vec!["ask", question, "--json"];
        args.extend_from_slice(extra);
        json(&env, &args)
    };
    const GLACIER: &str = "How much length did the Morteratsch glacier lose?";
    let a = ask(GLACIER, &[]);
    assert_eq!(a["route"]["target"], "local", "{a}");
    let sources = a["sources"].as_array().unwrap();
    assert!(!sources.is_empty());
    for s in sources {
        assert!(Path::new(s["path"].as_str().unwrap()).is_absolute());
        assert!(!s["text"].as_str().unwrap().is_empty());
    }
    assert!(
        sources[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("glaciers.pdf"),
        "{a}"
    );
    assert_eq!(sources[0]["page"].as_u64(), Some(2));
    let answer = a["answer"].as_str().unwrap();
    assert!(!answer.is_empty());
    // Evidence first: the best-matching sentence is on the terminal before
    // the model's route and answer.
    let (ok, _, err) = quarry(&env, &["ask", GLACIER, "--no-cache"]);
    assert!(ok, "{err}");
    let shown = err.find("Best-matching sentences").expect(&err);
    assert!(shown < err.find("[local:").expect(&err), "{err}");
    assert!(
        err[shown..].lines().nth(1).unwrap().contains("Morteratsch"),
        "{err}"
    );
    // Every citation points at a listed source.
    for n in a["cited"].as_array().unwrap() {
        let n = n.as_u64().unwrap() as usize;
        assert!(n >= 1 && n <= sources.len(), "{a}");
    }
    for part in answer.split('[').skip(1) {
        if let Some((num, _)) = part.split_once(']') {
            if let Ok(n) = num.trim().parse::<usize>() {
                assert!(
                    n >= 1 && n <= sources.len(),
                    "dangling citation in {answer}"
                );
            }
        }
    }
    let t = &a["timings"];
    assert!(t["first_token_ms"].as_f64().unwrap() > 0.0);
    assert!(t["total_ms"].as_f64().unwrap() >= t["first_token_ms"].as_f64().unwrap());

    // Greedy answers are deterministic: the model runs again (the cache is
    // bypassed, so this cannot pass by replaying the first answer).
    let b = ask(GLACIER, &["--no-cache"]);
    assert_eq!(
        b["route"]["target"], "local",
        "generated again, not cached: {b}"
    );
    assert!(
        b["timings"]["generated_tokens"].as_u64().unwrap() > 0,
        "{b}"
    );
    assert_eq!(a["answer"], b["answer"]);
    // Without --no-cache the same question is served from the cache.
    let c = ask(GLACIER, &[]);
    assert_eq!(c["route"]["target"], "cache", "{c}");
    assert_eq!(a["answer"], c["answer"]);

    // Nothing relevant: Quarry says so and does not call the model.
    let none = ask("What is the airspeed velocity of an unladen swallow?", &[]);
    assert_eq!(none["route"]["target"], "none", "{none}");
    assert!(none["answer"].as_str().unwrap().contains("do not contain"));
    assert_eq!(none["timings"]["generated_tokens"].as_u64(), Some(0));
    assert!(none["sources"].as_array().unwrap().is_empty());

    // The library's relevance floor: its baseline was measured at the first
    // question, and every question that reached retrieval counted (the one
    // served from the cache did not); only the swallow scored under 0.40.
    let status = json(&env, &["status", "--json"]);
    let f = &status["relevance_floor"];
    assert_eq!(f["questions"].as_u64(), Some(4), "{f}");
    assert_eq!(f["under_floor"].as_u64(), Some(1), "{f}");
    assert_eq!(f["floor"].as_f64(), Some(0.4f32 as f64), "{f}");
    let b = &f["baseline"];
    assert_eq!(b["embedder"], "all-minilm-l6-v2", "{f}");
    let (median, p90) = (b["median"].as_f64().unwrap(), b["p90"].as_f64().unwrap());
    assert!(0.0 < median && median <= p90 && p90 < 0.4, "{f}");
    // An embedder whose registry floor sits under what unrelated questions
    // score in this library (here: MiniLM given 0.01) gets the library's
    // floor instead, the baseline's 90th percentile, and `ask` declines by it.
    std::fs::create_dir_all(&env.config).unwrap();
    let registry = env.config.join("models.toml");
    let toml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/models.toml"),
    )
    .unwrap();
    assert!(toml.contains("relevance_floor = 0.40"));
    std::fs::write(
        &registry,
        toml.replace("relevance_floor = 0.40", "relevance_floor = 0.01"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args([
            "ask",
            "What is the airspeed velocity of an unladen swallow?",
            "--json",
        ])
        .env("QUARRY_MODELS_DIR", models_dir())
        .env("QUARRY_CONFIG_DIR", &env.config)
        .env("QUARRY_LIBRARY_DIR", &env.library)
        .env("QUARRY_MODEL_REGISTRY", &registry)
        .output()
        .unwrap();
    let again: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(again["route"]["target"], "none", "{again}");
    let reason = again["route"]["reason"].as_str().unwrap();
    assert!(reason.contains(&format!("< {p90:.2},")), "{reason} / {p90}");
}

/// A PDF whose font names glyphs the parser does not know: the parser logs a
/// warning per glyph. The terminal shows none of that unless asked.
#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn dependency_warnings_stay_out_of_normal_output() {
    let env = setup();
    let noisy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/noisy");
    let noisy = noisy.to_str().unwrap();
    let (ok, _, quiet) = quarry(&env, &["index", noisy, "--no-embed"]);
    assert!(ok, "{quiet}");
    assert!(
        !quiet.contains("pdf_extract"),
        "dependency log in normal output: {quiet}"
    );
    assert!(!quiet.contains('\x1b'), "colour codes on a pipe: {quiet:?}");
    let hits = search(&env, "keyword", "dredging", &[]);
    assert_eq!(
        file_names(&hits),
        ["odd-glyphs.pdf"],
        "the PDF was still indexed"
    );
    // --verbose brings the dependencies' warnings back.
    std::fs::remove_dir_all(&env.library).unwrap();
    let (ok, _, verbose) = quarry(&env, &["index", noisy, "--no-embed", "--verbose"]);
    assert!(ok, "{verbose}");
    assert!(verbose.contains("unknown glyph name"), "{verbose}");
}

const LONG_NOTES: &[(&str, &str)] = &[
    ("beekeeping.txt", "A healthy hive in late summer holds about forty thousand bees; the keeper checks the brood frames every ten days and leaves the honey above the queen excluder for winter stores."),
    ("harbour.txt", "The harbour master records every ship that enters the inner basin, its draught and its berth, and closes the lock gates two hours before low water to keep the basin level steady."),
    ("orchard.txt", "Apple trees in the north orchard are pruned in February while dormant, cutting out crossing branches so that light reaches the fruiting spurs and air moves freely against scab."),
    ("printing.txt", "The letterpress is inked with a brayer, the forme is locked up in the chase, and each sheet of damp cotton paper is fed by hand so the type bites evenly into it."),
    ("weather.txt", "The weather station logs air pressure, humidity and wind speed every ten minutes and sends the readings to the county office, which issues frost warnings to farmers."),
];

/// `quarry eval --synthetic`: the local model writes questions from the
/// user's own library, and every mode is scored on them, with the caveat.
#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn eval_on_the_users_own_library_without_labels() {
    let env = setup();
    // The fixtures are short; these five have passages long enough to ask about.
    for (name, topic) in LONG_NOTES {
        let body = format!("{topic} ").repeat(4);
        std::fs::write(env.docs.join(name), body).unwrap();
    }
    let docs = env.docs.to_str().unwrap();
    let (ok, _, err) = quarry(&env, &["index", docs]);
    assert!(ok, "{err}");
    let v = json(&env, &["eval", "--synthetic", "4", "--json"]);
    let questions = v["questions"].as_array().expect("questions");
    assert!(!questions.is_empty() && questions.len() <= 4, "{v}");
    assert_eq!(
        v["passages"], 4,
        "four documents have a long enough passage"
    );
    for q in questions {
        let path = q["path"].as_str().unwrap();
        assert!(path.starts_with(docs), "{q}");
        assert!(
            q["question"].as_str().unwrap().split_whitespace().count() >= 3,
            "{q}"
        );
    }
    for mode in ["keyword", "vector", "hybrid"] {
        let m = &v["modes"][mode];
        assert_eq!(
            m["queries"].as_u64().unwrap() as usize,
            questions.len(),
            "{v}"
        );
        let ndcg = m["ndcg@10"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&ndcg), "{mode}: {ndcg}");
    }
    assert!(v["caveat"].as_str().unwrap().contains("compare the modes"));
    // The human form says what the figure cannot say; an empty library is a clear error.
    let (ok, out, err) = quarry(&env, &["eval", "--synthetic", "1"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("do not compare them with other libraries"),
        "{out}"
    );
    let root = env.library.parent().unwrap();
    let (nothing, empty) = (root.join("nothing"), root.join("empty"));
    std::fs::create_dir(&nothing).unwrap();
    let (ok, _, err) = quarry(
        &env,
        &[
            "index",
            nothing.to_str().unwrap(),
            "--library",
            empty.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = quarry(
        &env,
        &[
            "eval",
            "--synthetic",
            "2",
            "--library",
            empty.to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert!(err.contains("index some documents first"), "{err}");
}

/// A real instruction-tuned 1.5B model (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M,
/// 1.1 GB: `quarry models fetch qwen2.5-coder-1.5b-instruct-q4_k_m`) answers
/// from the right passage and cites it.
#[test]
#[ignore = "needs the real models, the 1.1 GB one included: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn a_real_1_5b_model_answers_from_the_source_and_cites_it() {
    let env = setup();
    let docs = env.docs.to_str().unwrap();
    json(&env, &["index", docs, "--json"]);
    let a = json(
        &env,
        &[
            "ask",
            "How much length did the Morteratsch glacier lose?",
            "--model",
            "qwen2.5-coder-1.5b-instruct-q4_k_m",
            "--max-tokens",
            "48",
            "--json",
        ],
    );
    assert_eq!(a["route"]["target"], "local", "{a}");
    let answer = a["answer"].as_str().unwrap().to_lowercase();
    assert!(answer.contains("forty") || answer.contains("40"), "{a}");
    let first = &a["sources"][0];
    assert!(
        first["path"].as_str().unwrap().ends_with("glaciers.pdf"),
        "{a}"
    );
    assert_eq!(first["page"], 2);
    assert!(
        a["cited"].as_array().unwrap().contains(&Value::from(1)),
        "cites [1]: {a}"
    );
    assert!(a["timings"]["prompt_tokens"].as_u64().unwrap() > 100, "{a}");
}
