//! An encrypted library, end to end with the real binary: `quarry init
//! --encrypt` before the first index; every file Quarry then writes opens
//! only with the library's key (`quarry check` opens each one), no file holds
//! a run of eight words of the indexed text — even inside compressed frames,
//! where the same scan finds them in a plain library — searches return what
//! a plain library returns, a wrong or missing passphrase is a clear error
//! that writes nothing, `quarry forget` checks through the key, and `kill -9`
//! during indexing leaves it consistent and still sealed. A plain library is
//! encrypted in place (`quarry encrypt`), and `quarry forget --rekey`
//! replaces the key so that a backup made before no longer opens with what
//! the library keeps.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

const PASSPHRASE: &str = "lost on a train, still private";

/// `quarry ARGS` on `library` with `passphrase` in the environment (or none).
fn quarry(library: &Path, config: &Path, passphrase: Option<&str>, args: &[&str]) -> Command {
    let mut c = common::quarry(library, config, args);
    c.env_remove("QUARRY_LIBRARY_PASSPHRASE");
    if let Some(p) = passphrase {
        c.env("QUARRY_LIBRARY_PASSPHRASE", p);
    }
    c
}

fn run(library: &Path, config: &Path, passphrase: Option<&str>, args: &[&str]) -> (bool, String) {
    let out = quarry(library, config, passphrase, args).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn json(library: &Path, config: &Path, passphrase: Option<&str>, args: &[&str]) -> Value {
    let out = quarry(library, config, passphrase, args).output().unwrap();
    assert!(
        out.status.success(),
        "quarry {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `n` real documents nobody here wrote: Debian's copyright files of 4–40 KB.
fn debian_docs(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/share/doc")
        .unwrap()
        .flatten()
        .map(|e| e.path().join("copyright"))
        .filter(|p| {
            std::fs::metadata(p).is_ok_and(|m| (4_000..40_000).contains(&m.len()))
                && std::fs::read_to_string(p).is_ok()
        })
        .collect();
    found.sort();
    assert!(
        found.len() >= n,
        "only {} copyright files here",
        found.len()
    );
    let step = found.len() / n;
    for (i, src) in found.iter().step_by(step).take(n).enumerate() {
        std::fs::copy(src, dir.join(format!("doc-{i:02}.txt"))).unwrap();
    }
}

/// Every run of eight words of the files in `docs`.
fn eight_word_runs(docs: &Path) -> HashSet<String> {
    let mut runs = HashSet::new();
    for e in std::fs::read_dir(docs).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap();
        let words: Vec<&str> = text.split_whitespace().collect();
        for w in words.windows(8) {
            runs.insert(w.join(" "));
        }
    }
    runs
}

/// The text of a file as a scan sees it: its bytes, and the content of
/// every zstd frame in it (tantivy compresses its stored text with zstd).
fn readable_text(bytes: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    let magic = [0x28, 0xb5, 0x2f, 0xfd];
    for at in (0..bytes.len().saturating_sub(4)).filter(|&i| bytes[i..i + 4] == magic) {
        if let Ok(d) = zstd::stream::read::Decoder::new(&bytes[at..]) {
            let mut out = Vec::new();
            let _ = d.take(64 << 20).read_to_end(&mut out);
            text.push(' ');
            text.push_str(&String::from_utf8_lossy(&out));
        }
    }
    text
}

/// Files of `library` that hold a run of eight words of `runs`.
fn files_with_runs(library: &Path, runs: &HashSet<String>) -> Vec<String> {
    let mut hits = Vec::new();
    for file in common::files_under(library) {
        let text = readable_text(&std::fs::read(&file).unwrap());
        let words: Vec<&str> = text.split_whitespace().collect();
        if words.windows(8).any(|w| runs.contains(&w.join(" "))) {
            hits.push(file.display().to_string());
        }
    }
    hits
}

/// Every file's length and modification time: what "nothing written" compares.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    common::files_under(dir)
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p).unwrap();
            (p, (m.len(), m.modified().unwrap()))
        })
        .collect()
}

/// `quarry ask` about the documents' licence with SmolLM2 (answers are cached).
fn ask_licence(library: &Path, config: &Path, passphrase: Option<&str>) -> (bool, String) {
    run(
        library,
        config,
        passphrase,
        &[
            "ask",
            "Which licence covers the documentation?",
            "--model",
            "smollm2-135m-instruct-q4_1",
        ],
    )
}

/// The first five hits' paths, with the fusion weight fixed: a library
/// learns its weight from its queries (`fusion-history.json`), so the same
/// query asked later may order near ties differently, which is not what
/// these comparisons are about.
fn top_paths(library: &Path, config: &Path, passphrase: Option<&str>, q: &str) -> Vec<String> {
    json(
        library,
        config,
        passphrase,
        &["search", q, "--json", "-k", "5", "--vector-weight", "0.55"],
    )
    .as_array()
    .unwrap()
    .iter()
    .map(|h| h["path"].as_str().unwrap().to_string())
    .collect()
}

fn assert_all_sealed(library: &Path, config: &Path) {
    assert_all_sealed_with(library, config, PASSPHRASE);
}

fn assert_all_sealed_with(library: &Path, config: &Path, passphrase: &str) {
    let c = json(library, config, Some(passphrase), &["check", "--json"]);
    assert_eq!(c["consistent"], true, "{c}");
    let e = &c["encryption"];
    assert_eq!(e["plain"], serde_json::json!([]), "{c}");
    assert_eq!(e["damaged"], serde_json::json!([]), "{c}");
    assert!(e["sealed"].as_u64().unwrap() > 10, "{c}");
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn an_encrypted_library_holds_no_plain_text_and_searches_like_a_plain_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (docs, config) = (tmp.path().join("docs"), tmp.path().join("config"));
    debian_docs(&docs, 12);
    let docs_s = docs.to_str().unwrap();
    let plain = tmp.path().join("plain");
    let sealed = tmp.path().join("sealed");
    json(&plain, &config, None, &["index", docs_s, "--json"]);

    let (ok, out) = run(&sealed, &config, Some(PASSPHRASE), &["init", "--encrypt"]);
    assert!(ok && out.contains("encrypted library"), "{out}");
    json(
        &sealed,
        &config,
        Some(PASSPHRASE),
        &["index", docs_s, "--json"],
    );
    let (ok, out) = ask_licence(&sealed, &config, Some(PASSPHRASE));
    assert!(ok, "{out}");
    assert!(sealed.join("answer-cache.jsonl").exists());

    // The same results as the plain library.
    for q in [
        "GNU General Public License",
        "permission is hereby granted",
        "copyright holders",
    ] {
        assert_eq!(
            top_paths(&plain, &config, None, q),
            top_paths(&sealed, &config, Some(PASSPHRASE), q),
            "{q}"
        );
    }
    // Every file opens with the key (the fusion history `ask` wrote too); no run of
    // eight words in any file, where the same scan finds them in the plain library.
    assert!(sealed.join("fusion-history.json").exists());
    assert_all_sealed(&sealed, &config);
    let runs = eight_word_runs(&docs);
    assert!(
        !files_with_runs(&plain, &runs).is_empty(),
        "the scan sees nothing even in plain files"
    );
    assert_eq!(files_with_runs(&sealed, &runs), Vec::<String>::new());

    // A wrong or missing passphrase: a clear error, nothing written.
    let before = snapshot(&sealed);
    std::thread::sleep(Duration::from_millis(20));
    let (ok, out) = run(
        &sealed,
        &config,
        Some("not the passphrase"),
        &["search", "licence"],
    );
    assert!(
        !ok && out.contains("does not open the encrypted library"),
        "{out}"
    );
    let (ok, out) = run(&sealed, &config, None, &["index", docs_s]);
    assert!(
        !ok && out.contains("is encrypted; give its passphrase"),
        "{out}"
    );
    assert_eq!(
        snapshot(&sealed),
        before,
        "a refused open wrote to the library"
    );

    // Without its key file the sealed library is not read as a plain one.
    let moved = tmp.path().join("encryption.json");
    std::fs::rename(sealed.join("encryption.json"), &moved).unwrap();
    let (ok, out) = run(&sealed, &config, None, &["search", "licence"]);
    assert!(!ok && out.contains("key file is missing"), "{out}");
    std::fs::rename(&moved, sealed.join("encryption.json")).unwrap();

    // Forgetting a document is checked through the key: the scan opens the
    // sealed files (it decodes the doc store's zstd blocks inside them).
    let gone = docs.join("doc-03.txt");
    std::fs::remove_file(&gone).unwrap();
    let report = json(
        &sealed,
        &config,
        Some(PASSPHRASE),
        &["forget", gone.to_str().unwrap(), "--json"],
    );
    assert_eq!(report["verified"], true, "{report}");
    assert!(
        report["compressed_blocks"].as_u64().unwrap() >= 1,
        "the scan did not see through the sealing: {report}"
    );
    assert_all_sealed(&sealed, &config);

    // A plain library is not encrypted in place by accident.
    let (ok, out) = run(&plain, &config, Some(PASSPHRASE), &["init", "--encrypt"]);
    assert!(!ok && out.contains("`quarry encrypt` encrypts it"), "{out}");
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn kill_9_while_indexing_an_encrypted_library_leaves_it_consistent_and_sealed() {
    let tmp = tempfile::tempdir().unwrap();
    let (docs, config) = (tmp.path().join("docs"), tmp.path().join("config"));
    debian_docs(&docs, 30);
    let docs_s = docs.to_str().unwrap();
    let index = [
        "index",
        docs_s,
        "--json",
        "--flush-chunks",
        "6",
        "--embed-batch",
        "6",
    ];

    let clean = tmp.path().join("clean");
    let t = Instant::now();
    json(&clean, &config, None, &index);
    let clean_time = t.elapsed();

    let sealed = tmp.path().join("sealed");
    assert!(run(&sealed, &config, Some(PASSPHRASE), &["init", "--encrypt"]).0);
    for point in ["index.after-keywords:3", "embed.after-vectors:2"] {
        let out = quarry(&sealed, &config, Some(PASSPHRASE), &index)
            .env("QUARRY_FAILPOINT", point)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{point} did not abort");
        assert_all_sealed(&sealed, &config);
    }
    for p in [0.3, 0.6, 0.45] {
        let mut child = quarry(&sealed, &config, Some(PASSPHRASE), &index)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(clean_time.mul_f64(p));
        let _ = child.kill();
        let _ = child.wait();
        assert_all_sealed(&sealed, &config);
    }
    json(&sealed, &config, Some(PASSPHRASE), &index);
    assert_all_sealed(&sealed, &config);
    let a = json(&clean, &config, None, &["status", "--json"]);
    let b = json(&sealed, &config, Some(PASSPHRASE), &["status", "--json"]);
    for key in ["documents", "chunks", "keyword_chunks"] {
        assert_eq!(a[key], b[key], "{key}: {a} vs {b}");
    }
    for q in ["GNU General Public License", "warranty of merchantability"] {
        assert_eq!(
            top_paths(&clean, &config, None, q),
            top_paths(&sealed, &config, Some(PASSPHRASE), q),
            "{q}"
        );
    }
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn a_plain_library_encrypted_in_place_then_rekeyed_leaves_old_copies_unreadable() {
    const NEW: &str = "a new passphrase after the forget";
    let tmp = tempfile::tempdir().unwrap();
    let (docs, config) = (tmp.path().join("docs"), tmp.path().join("config"));
    debian_docs(&docs, 12);
    let docs_s = docs.to_str().unwrap();
    let lib = tmp.path().join("lib");
    json(&lib, &config, None, &["index", docs_s, "--json"]);
    // A second version of one document: old lance versions and segments.
    let edited = docs.join("doc-05.txt");
    let text = std::fs::read_to_string(&edited).unwrap();
    std::fs::write(
        &edited,
        format!("{text}\nAppended after the first index.\n"),
    )
    .unwrap();
    json(&lib, &config, None, &["index", docs_s, "--json"]);
    let (ok, out) = ask_licence(&lib, &config, None);
    assert!(ok && lib.join("answer-cache.jsonl").exists(), "{out}");
    let queries = ["GNU General Public License", "permission is hereby granted"];
    let before: Vec<_> = queries
        .iter()
        .map(|q| top_paths(&lib, &config, None, q))
        .collect();
    let runs = eight_word_runs(&docs);
    assert!(!files_with_runs(&lib, &runs).is_empty());

    // Encrypted in place: every file sealed, no run of eight words left in
    // any file, the same results.
    let report = json(&lib, &config, Some(PASSPHRASE), &["encrypt", "--json"]);
    assert!(report["files_resealed"].as_u64().unwrap() > 10, "{report}");
    assert!(report["plain_wiped"].as_u64().unwrap() > 10, "{report}");
    assert_all_sealed(&lib, &config);
    assert_eq!(files_with_runs(&lib, &runs), Vec::<String>::new());
    for (q, paths) in queries.iter().zip(&before) {
        assert_eq!(&top_paths(&lib, &config, Some(PASSPHRASE), q), paths, "{q}");
    }
    let (ok, out) = run(&lib, &config, None, &["search", "licence"]);
    assert!(
        !ok && out.contains("is encrypted; give its passphrase"),
        "{out}"
    );
    let (ok, out) = run(&lib, &config, Some(PASSPHRASE), &["encrypt"]);
    assert!(!ok && out.contains("`quarry rekey`"), "{out}");

    // A backup, then a forget that replaces the key.
    let backup = tmp.path().join("backup");
    common::copy_tree(&lib, &backup);
    let gone = docs.join("doc-03.txt");
    std::fs::remove_file(&gone).unwrap();
    let out = quarry(
        &lib,
        &config,
        Some(PASSPHRASE),
        &["forget", gone.to_str().unwrap(), "--rekey", "--json"],
    )
    .env("QUARRY_NEW_LIBRARY_PASSPHRASE", NEW)
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verified"], true, "{report}");
    let rotation = &report["key_rotation"];
    assert!(
        rotation["files_resealed"].as_u64().unwrap() > 10,
        "{report}"
    );
    assert_ne!(rotation["old_key"], rotation["new_key"], "{report}");

    // The library opens with the new passphrase only, still whole.
    assert_all_sealed_with(&lib, &config, NEW);
    let (ok, out) = run(&lib, &config, Some(PASSPHRASE), &["search", "licence"]);
    assert!(!ok && out.contains("does not open"), "{out}");
    for (q, paths) in queries.iter().zip(&before) {
        let expected: Vec<_> = paths
            .iter()
            .filter(|p| !p.ends_with("doc-03.txt"))
            .collect();
        let got = top_paths(&lib, &config, Some(NEW), q);
        assert!(
            !got.iter().any(|p| p.ends_with("doc-03.txt")),
            "{q}: {got:?}"
        );
        // Removing a document moves the keyword statistics and the score
        // lists the fusion standardises over, so near ties may swap: the
        // documents that led before still lead, in some order.
        let top: Vec<_> = got.iter().take(4).collect();
        for p in expected.iter().take(3) {
            assert!(top.contains(p), "{q}: {p} missing from {top:?}");
        }
    }
    // Key destruction: the backup made before holds the forgotten document,
    // and what the library keeps now (its key file, the new passphrase) does
    // not open it.
    std::fs::copy(lib.join("encryption.json"), backup.join("encryption.json")).unwrap();
    let (ok, out) = run(&backup, &config, Some(NEW), &["search", "licence"]);
    assert!(!ok, "the backup opened with the new key: {out}");
    let (ok, out) = run(&backup, &config, Some(PASSPHRASE), &["search", "licence"]);
    assert!(!ok && out.contains("does not open"), "{out}");
}
