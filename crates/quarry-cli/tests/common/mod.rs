//! Helpers the end-to-end tests share: the real `quarry` binary with its
//! folders set, and the models folder the test command fills.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The models folder (`QUARRY_MODELS_DIR`), with the default embedder installed.
pub fn models_dir() -> PathBuf {
    let dir = std::env::var_os("QUARRY_MODELS_DIR")
        .map(PathBuf::from)
        .expect("set QUARRY_MODELS_DIR to the models folder (`quarry models fetch` fills it)");
    assert!(
        dir.join("all-minilm-l6-v2/model.safetensors").exists(),
        "all-minilm-l6-v2 is not installed in {}; run `quarry models fetch`",
        dir.display()
    );
    dir
}

/// The sample documents of every format.
pub fn corpus_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/corpus")
}

/// `quarry ARGS` on `library`, with its own configuration folder, the real
/// models and no standard input.
pub fn quarry(library: &Path, config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_quarry"));
    c.args(args)
        .env("QUARRY_MODELS_DIR", models_dir())
        .env("QUARRY_CONFIG_DIR", config)
        .env("QUARRY_LIBRARY_DIR", library)
        .stdin(Stdio::null());
    c
}

/// Run `quarry ARGS`: (success, stdout, stderr).
pub fn run(library: &Path, config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = quarry(library, config, args).output().expect("run quarry");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run `quarry ARGS` (with `--json` among them), which must succeed, and
/// parse what it printed.
pub fn run_json(library: &Path, config: &Path, args: &[&str]) -> Value {
    let (ok, out, err) = run(library, config, args);
    assert!(ok, "quarry {args:?} failed: {err}\n{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// The file names of search hits (`--json`), best first.
pub fn file_names(hits: &Value) -> Vec<String> {
    hits.as_array()
        .expect("an array of hits")
        .iter()
        .map(|h| {
            Path::new(h["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// Copy the folder `from` to `to`, recursively.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Every file under `dir`, at any depth.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files
}
