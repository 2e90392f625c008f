//! `quarry doctor --privacy` over the real binary: the air-gap report names
//! what a provider may receive under each mode, finds a server that answers
//! without its token, and finds a model file that no longer matches its
//! pinned checksum — each of those makes it exit non-zero.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use common::{models_dir, quarry, run};
use serde_json::Value;

struct Env {
    _tmp: tempfile::TempDir,
    library: std::path::PathBuf,
    config: std::path::PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let docs = tmp.path().join("docs");
        std::fs::create_dir(&docs).unwrap();
        std::fs::write(
            docs.join("permit.txt"),
            "The Quaysworth dredging permit was signed by the harbour master in March.",
        )
        .unwrap();
        let env = Env {
            library: tmp.path().join("library"),
            config: tmp.path().join("config"),
            _tmp: tmp,
        };
        let (ok, _, err) = env.run(&["index", docs.to_str().unwrap()]);
        assert!(ok, "{err}");
        env
    }

    fn run(&self, args: &[&str]) -> (bool, String, String) {
        run(&self.library, &self.config, args)
    }

    /// The report as JSON, and whether the command succeeded (nothing
    /// listens on port 9 here).
    fn report(&self) -> (bool, Value) {
        self.report_at("127.0.0.1:9")
    }

    /// The report, probing `serve_addr` for `quarry serve`.
    fn report_at(&self, serve_addr: &str) -> (bool, Value) {
        let (ok, out, err) = self.run(&[
            "doctor",
            "--privacy",
            "--json",
            "--serve-addr",
            serve_addr,
            "--agents-addr",
            "127.0.0.1:9",
        ]);
        let report = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
        (ok, report)
    }
}

fn risks(report: &Value) -> String {
    report["risks"].to_string()
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn the_report_follows_providers_and_modes() {
    let env = Env::new();
    let (ok, r) = env.report();
    assert!(ok, "{r}");
    assert_eq!(r["text_can_leave"], false);
    assert_eq!(r["policy"]["mode"], "local-only");
    assert_eq!(r["providers"], serde_json::json!([]));
    let models: Vec<_> = r["models"].as_array().unwrap().iter().collect();
    assert_eq!(models[0]["id"], "all-minilm-l6-v2");
    assert!(
        models[0]["verdict"]
            .as_str()
            .unwrap()
            .starts_with("matches"),
        "{r}"
    );
    assert!(r["downloads"].to_string().contains("huggingface.co"), "{r}");
    let at_rest = r["at_rest"].as_str().unwrap();
    assert!(at_rest.starts_with("plain files"), "{r}");

    let (ok, _, err) = env.run(&[
        "provider",
        "add",
        "peer",
        "--base-url",
        "https://api.example.test/v1",
        "--model",
        "m",
    ]);
    assert!(ok, "{err}");
    let (ok, r) = env.report();
    assert!(ok, "{r}");
    assert_eq!(r["text_can_leave"], true, "a flag can override local-only");
    let receives = r["providers"][0]["receives"].as_str().unwrap();
    assert!(
        receives.starts_with("nothing now") && receives.contains("--privacy"),
        "{receives}"
    );

    assert!(env.run(&["privacy", "auto"]).0);
    let (_, r) = env.report();
    let receives = r["providers"][0]["receives"].as_str().unwrap();
    assert!(receives.contains("whenever the router"), "{receives}");

    // Plain http to a host on the network is a risk while it can be used...
    let (ok, _, err) = env.run(&[
        "provider",
        "add",
        "peer",
        "--base-url",
        "http://192.0.2.7:8000/v1",
        "--model",
        "m",
    ]);
    assert!(ok, "{err}");
    let (ok, r) = env.report();
    assert!(!ok, "a risk exits non-zero");
    assert!(risks(&r).contains("plain http"), "{r}");
    let (_, text, _) = env.run(&["doctor", "--privacy", "--serve-addr", "127.0.0.1:9"]);
    assert!(
        text.contains("Attention:") && text.contains("plain http"),
        "{text}"
    );

    // ...and nothing at all once the library never leaves the device.
    let lib = env.library.to_str().unwrap().to_string();
    assert!(
        env.run(&["privacy", "--library", &lib, "--never-leaves-device", "on"])
            .0
    );
    let (ok, r) = env.report();
    assert!(ok, "{r}");
    assert_eq!(r["text_can_leave"], false);
    assert_eq!(r["never_leaves_device"], true);
    assert!(r["providers"][0]["receives"]
        .as_str()
        .unwrap()
        .starts_with("nothing"));

    // Encrypted in place, the report says how the library is kept.
    let quarry = |args: &[&str]| {
        common::quarry(&env.library, &env.config, args)
            .env("QUARRY_LIBRARY_PASSPHRASE", "a passphrase for the report")
            .output()
            .unwrap()
    };
    let out = quarry(&["encrypt"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = quarry(&[
        "doctor",
        "--privacy",
        "--json",
        "--serve-addr",
        "127.0.0.1:9",
        "--agents-addr",
        "127.0.0.1:9",
    ]);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let at_rest = r["at_rest"].as_str().unwrap();
    assert!(
        at_rest.starts_with("encrypted") && at_rest.contains("passphrase"),
        "{r}"
    );
}

/// `quarry serve ARGS` on port 0; its address.
fn serve(env: &Env, args: &[&str]) -> (Child, String) {
    let mut all = vec!["serve", "--addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut child = quarry(&env.library, &env.config, &all)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    // Keep reading: a closed pipe would end the server at its next line.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let addr = line.trim().rsplit("http://").next().unwrap().to_string();
    (child, addr)
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn the_report_probes_servers_and_hashes_the_models() {
    let env = Env::new();
    let (mut locked, addr) = serve(&env, &[]);
    let (ok, r) = env.report_at(&addr);
    let _ = locked.kill();
    let _ = locked.wait();
    assert!(ok, "{r}");
    assert!(
        r["endpoints"].to_string().contains("listening, locked"),
        "{r}"
    );
    assert!(
        r["endpoints"].to_string().contains("readable by you only"),
        "{r}"
    );

    let (mut open, addr) = serve(&env, &["--no-token"]);
    let (ok, r) = env.report_at(&addr);
    let _ = open.kill();
    let _ = open.wait();
    assert!(!ok, "an unlocked server exits non-zero");
    assert!(risks(&r).contains("answers without a token"), "{r}");

    // A models folder whose tokenizer was changed after it was verified.
    let tampered = env._tmp.path().join("models");
    let minilm = tampered.join("all-minilm-l6-v2");
    let real = models_dir().join("all-minilm-l6-v2");
    common::copy_tree(&real, &minilm);
    let tokenizer = minilm.join("tokenizer.json");
    let mut text = std::fs::read_to_string(&tokenizer).unwrap();
    text.push(' ');
    std::fs::write(&tokenizer, text).unwrap();
    let out = quarry(
        &env.library,
        &env.config,
        &[
            "doctor",
            "--privacy",
            "--json",
            "--serve-addr",
            "127.0.0.1:9",
        ],
    )
    .env("QUARRY_MODELS_DIR", &tampered)
    .output()
    .unwrap();
    assert!(!out.status.success());
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(risks(&r).contains("differ from the pinned checksum"), "{r}");
    assert!(risks(&r).contains("tokenizer.json"), "{r}");
    assert!(
        !risks(&r).contains("model.safetensors"),
        "only the changed file: {r}"
    );
    assert!(
        r["models"][1]["verdict"]
            .as_str()
            .unwrap()
            .contains("not installed"),
        "the generator is not in that folder: {r}"
    );
    assert!(Path::new(&tokenizer).exists());
}
