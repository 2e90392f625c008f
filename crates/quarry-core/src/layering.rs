//! The folder tree is the data flow: a module uses only modules of its own
//! or an earlier stage, and no two modules use each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The stages, in data-flow order (see the crate's documentation).
const STAGES: &[&[&str]] = &[
    &["error", "dirs", "fsio", "failpoint", "keychain"],
    &["models"],
    &["extract", "ocr", "chunk"],
    &["embed"],
    &["store"],
    &["ingest"],
    &["retrieve"],
    &["generate"],
    &["cloud"],
    &["answer"],
    &["tasks"],
    &["eval"],
];

fn stage_of(module: &str) -> usize {
    let top = module.split("::").next().unwrap_or_default();
    STAGES
        .iter()
        .position(|s| s.contains(&top))
        .unwrap_or_else(|| panic!("module {module} is in no stage: add it to STAGES"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/a/b.rs` is `a::b`, `src/a/mod.rs` is `a`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// The modules a file names through `crate::…` paths (`use` lines and
/// paths in code), as the longest prefix that is a module.
fn uses(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        for n in (1..=segments.len()).rev() {
            let candidate = segments[..n].join("::");
            if modules.contains(&candidate) {
                out.insert(candidate);
                break;
            }
        }
    }
    out
}

#[test]
fn no_module_uses_a_later_stage_and_none_use_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    modules.remove("lib");
    modules.remove("layering");
    modules.insert("extract".into());
    modules.insert("chunk".into());
    modules.insert("ocr".into());
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let from = module_of(&src, f);
        if from == "lib" || from == "layering" {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        let mut to = uses(&text, &modules);
        to.remove(&from);
        edges.insert(from, to);
    }
    assert!(edges.len() > 40, "read only {} modules", edges.len());
    let mut backwards = Vec::new();
    let mut mutual = Vec::new();
    for (from, tos) in &edges {
        for to in tos {
            if stage_of(to) > stage_of(from) {
                backwards.push(format!("{from} -> {to}"));
            }
            if edges.get(to).is_some_and(|back| back.contains(from)) && from < to {
                mutual.push(format!("{from} <-> {to}"));
            }
        }
    }
    assert!(
        backwards.is_empty(),
        "modules using a later stage: {backwards:#?}"
    );
    assert!(mutual.is_empty(), "modules using each other: {mutual:#?}");
}

#[test]
fn the_checker_sees_a_backward_edge() {
    let modules: BTreeSet<String> = ["store::library", "cloud", "cloud::privacy", "store"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let found = uses(
        "use crate::cloud::privacy::LibraryPrivacy;\nlet x = crate::store::library::Library::open;",
        &modules,
    );
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        vec!["cloud::privacy".to_string(), "store::library".to_string()]
    );
    assert!(stage_of("cloud::privacy") > stage_of("store::library"));
}
