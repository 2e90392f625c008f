//! Picking the answer model for the machine, over the real binary: the probe
//! of this machine's speed, the ranking of the registry's answer models, a
//! real model measured, and the user's choice honoured by `ask`.
//!
//! Needs the default embedder and generator installed (the README's test
//! command fetches them).

mod common;

use std::path::Path;

use serde_json::Value;

use common::{corpus_src, models_dir, run, run_json};

const SMOL: &str = "smollm2-135m-instruct-q4_1";
const GEMMA: &str = "gemma3-270m-q4_k_m";

fn settings_generator(config: &Path) -> Option<String> {
    // settings.toml: one `generator = "…"` line when a model is chosen.
    let text = std::fs::read_to_string(config.join("settings.toml")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("generator = "))
        .map(|v| serde_json::from_str::<String>(v).expect("a quoted string"))
}

fn fit<'a>(rec: &'a Value, id: &str) -> &'a Value {
    rec["recommendation"]["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("{id} not ranked: {rec}"))
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn the_machine_is_probed_once_and_models_ranked_for_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (lib, config) = (tmp.path().join("library"), tmp.path().join("config"));
    let rec = run_json(&lib, &config, &["models", "recommend", "--json"]);
    let machine = &rec["machine"];
    assert!(machine["facts"]["threads"].as_u64().unwrap() >= 1, "{rec}");
    assert!(machine["facts"]["memory_mb"].as_u64().unwrap() > 0, "{rec}");
    assert!(machine["products"]["decode_gb_s"].as_f64().unwrap() > 0.0);
    assert!(machine["products"]["prefill_gmac_s"].as_f64().unwrap() > 0.0);
    assert!(config.join("machine.json").is_file());
    // Every answer model is ranked, largest first; the test-only Gemma base
    // model is not an answer model.
    let models = rec["recommendation"]["models"].as_array().unwrap();
    let params: Vec<u64> = models
        .iter()
        .map(|m| m["params_m"].as_u64().unwrap())
        .collect();
    assert!(params.windows(2).all(|w| w[0] >= w[1]), "{params:?}");
    assert!(models.iter().all(|m| m["id"] != "gemma3-270m-q4_k_m"));
    let smol = fit(&rec, SMOL);
    assert_eq!(smol["installed"], true);
    assert_eq!(smol["basis"], "estimated");
    // A 3B model is estimated slower to its first word than the 135M.
    let big = fit(&rec, "qwen2.5-3b-instruct-q4_k_m");
    assert!(
        big["first_word_s"].as_f64().unwrap() > 5.0 * smol["first_word_s"].as_f64().unwrap(),
        "{rec}"
    );
    let best_installed = rec["recommendation"]["best_installed"].as_str().unwrap();
    assert_eq!(fit(&rec, best_installed)["installed"], true);

    // The saved probe is reused, not run again.
    let again = run_json(&lib, &config, &["models", "recommend", "--json"]);
    assert_eq!(again["machine"]["probed_at"], machine["probed_at"]);
    assert_eq!(again["machine"]["products"], machine["products"]);

    // A real model measured on this machine replaces its estimate and is kept.
    let measured = run_json(
        &lib,
        &config,
        &[
            "models",
            "recommend",
            "--json",
            "--measure",
            SMOL,
            "--prompt-tokens",
            "300",
        ],
    );
    let smol = fit(&measured, SMOL);
    assert_eq!(smol["basis"], "measured", "{measured}");
    let speed = &measured["machine"]["measured"][SMOL];
    assert!(speed["prefill_tok_s"].as_f64().unwrap() > 1.0, "{speed}");
    assert!(speed["decode_tok_s"].as_f64().unwrap() > 1.0, "{speed}");
    assert!(speed["prompt_tokens"].as_u64().unwrap() >= 300, "{speed}");
    let later = run_json(&lib, &config, &["models", "recommend", "--json"]);
    assert_eq!(fit(&later, SMOL)["basis"], "measured");

    // Bad budgets and models are refused with a reason.
    let (ok, _, err) = run(&lib, &config, &["models", "recommend", "--budget", "0"]);
    assert!(!ok && err.contains("--budget"), "{err}");
    let (ok, _, err) = run(
        &lib,
        &config,
        &["models", "recommend", "--measure", "all-minilm-l6-v2"],
    );
    assert!(!ok && err.contains("not an answer model"), "{err}");

    // The human form names the machine and the recommendation.
    let (ok, out, err) = run(&lib, &config, &["models", "recommend"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("this machine:") && out.contains("recommended:"),
        "{out}"
    );
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn the_chosen_answer_model_is_used_until_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let (lib, config) = (tmp.path().join("library"), tmp.path().join("config"));
    // Models that cannot answer are refused, and nothing is saved.
    let (ok, _, err) = run(&lib, &config, &["models", "use", "all-minilm-l6-v2"]);
    assert!(!ok && err.contains("not an answer model"), "{err}");
    let (ok, _, err) = run(
        &lib,
        &config,
        &["models", "use", "qwen2.5-3b-instruct-q4_k_m"],
    );
    assert!(!ok && err.contains("quarry models fetch"), "{err}");
    assert_eq!(settings_generator(&config), None);

    // --apply chooses the best installed model within the budget.
    let rec = run_json(&lib, &config, &["models", "recommend", "--json", "--apply"]);
    let best = rec["recommendation"]["best_installed"].as_str().unwrap();
    assert_eq!(settings_generator(&config).as_deref(), Some(best));

    // A GGUF file of the user's own, by path, is accepted.
    let own = tmp.path().join("my-own-model.gguf");
    let smol_file = models_dir()
        .join(SMOL)
        .join("SmolLM2-135M-Instruct.Q4_1.gguf");
    std::fs::copy(smol_file, &own).unwrap();
    let (ok, out, err) = run(&lib, &config, &["models", "use", own.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("my-own-model"), "{out}");
    assert_eq!(settings_generator(&config).as_deref(), own.to_str());
    let (ok, out, _) = run(&lib, &config, &["models", "list"]);
    assert!(ok);
    assert!(
        !out.contains("(answers use it)"),
        "a path is not a registry entry: {out}"
    );

    // Another installed generator by id: `ask` answers with it, and a model
    // named for one command still wins over the choice.
    run_json(
        &lib,
        &config,
        &["index", corpus_src().to_str().unwrap(), "--json"],
    );
    let (ok, _, err) = run(&lib, &config, &["models", "use", GEMMA]);
    assert!(ok, "{err}");
    let q = "How much length did the Morteratsch glacier lose?";
    let chosen = run_json(&lib, &config, &["ask", q, "--json", "--no-cache"]);
    let named = run_json(
        &lib,
        &config,
        &["ask", q, "--json", "--no-cache", "--model", SMOL],
    );
    let (chosen, named) = (&chosen["route"]["model"], &named["route"]["model"]);
    assert!(
        chosen.as_str().unwrap().to_lowercase().contains("gemma"),
        "{chosen}"
    );
    assert_ne!(chosen, named);

    // A registry id; `models list` marks it; --default goes back.
    run(&lib, &config, &["models", "use", SMOL]);
    assert_eq!(settings_generator(&config).as_deref(), Some(SMOL));
    let (_, out, _) = run(&lib, &config, &["models", "list"]);
    let line = out.lines().find(|l| l.contains(SMOL)).unwrap();
    assert!(line.contains("(answers use it)"), "{out}");
    let (ok, _, err) = run(&lib, &config, &["models", "use", "--default"]);
    assert!(ok, "{err}");
    assert_eq!(settings_generator(&config), None);
}
