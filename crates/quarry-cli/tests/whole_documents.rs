//! Whole-document tasks end to end: `quarry summarize` and the questions
//! that need every passage ("list every…"), on the real binary with a real
//! model and library. The document is long enough to take several windows,
//! so the map and reduce steps both run.

mod common;

use std::path::PathBuf;

use serde_json::Value;

const SMOLLM: &str = "smollm2-135m-instruct-q4_1";

/// Suppliers, one section each, spread through the register.
const SUPPLIERS: &[(&str, &str, &str)] = &[
    (
        "Halvorsen Timber",
        "Bergen",
        "sawn spruce for the warehouse roof",
    ),
    (
        "Okafor Cables",
        "Lagos",
        "armoured power cable for the new line",
    ),
    (
        "Brightwater Pumps",
        "Leeds",
        "two centrifugal pumps for the cooling loop",
    ),
    (
        "Maison Lefèvre",
        "Lyon",
        "stainless fittings for the kitchen",
    ),
    (
        "Tanaka Bearings",
        "Osaka",
        "roller bearings for the conveyors",
    ),
    (
        "Castellano Paints",
        "Valencia",
        "fire-retardant paint for the stairwells",
    ),
    (
        "Nordvik Glass",
        "Tromsø",
        "laminated glass for the front offices",
    ),
    (
        "Pereira Logistics",
        "Porto",
        "road haulage between the two sites",
    ),
    (
        "Kowalski Steel",
        "Gdańsk",
        "structural steel for the new hall",
    ),
    (
        "Ahmadi Textiles",
        "Izmir",
        "work clothing for the production staff",
    ),
    (
        "Lindqvist Electronics",
        "Uppsala",
        "control units for the packing machines",
    ),
    (
        "Moreau Chemicals",
        "Lille",
        "cleaning agents for the food lines",
    ),
];

/// The register: an introduction, one long section per supplier, a closing
/// note. About 2,500 tokens: more than one reading window.
fn register() -> String {
    let mut t = String::from(
        "Supplier register of the Eastfield plant, 2024\n\nThis register lists the suppliers \
         the plant contracted in 2024, one section each, with what they deliver, the terms of \
         payment and the person responsible for the contract. It is reviewed every quarter by \
         the purchasing committee.\n\n",
    );
    for (i, (name, city, what)) in SUPPLIERS.iter().enumerate() {
        t.push_str(&format!(
            "Section {n}: {name}\n\n{name}, based in {city}, supplies {what}. The contract runs \
             for {years} years from the date of signature and may be renewed once by written \
             agreement. Invoices are paid within {days} days of delivery, and late deliveries \
             are charged at half a percent of the order value per day. Quality is checked on \
             arrival by the receiving team, who record every defect in the plant's log. The \
             purchasing committee reviewed the supplier in the spring and found deliveries on \
             time in most months, with minor delays during the winter. The contract owner \
             meets the supplier's account manager every quarter to review prices, volumes and \
             any complaints raised by the production teams. Safety data sheets for every \
             delivered product are kept in the plant's document system.\n\n",
            n = i + 1,
            years = 2 + i % 3,
            days = 30 + 15 * (i % 2),
        ));
    }
    t.push_str(
        "Closing note\n\nSuppliers not listed here need the purchasing committee's approval \
         before any order is placed.\n",
    );
    t
}

struct Env {
    tmp: tempfile::TempDir,
    doc: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let docs = tmp.path().join("docs");
        std::fs::create_dir(&docs).unwrap();
        std::fs::write(docs.join("register.txt"), register()).unwrap();
        std::fs::write(
            docs.join("memo.txt"),
            "The canteen closes early on Friday for the staff party.\n",
        )
        .unwrap();
        let env = Env {
            doc: docs.join("register.txt").canonicalize().unwrap(),
            tmp,
        };
        let (ok, _, err) = env.run(&["index", docs.to_str().unwrap()]);
        assert!(ok, "{err}");
        env
    }

    fn run(&self, args: &[&str]) -> (bool, String, String) {
        common::run(
            &self.tmp.path().join("library"),
            &self.tmp.path().join("config"),
            args,
        )
    }

    fn json(&self, args: &[&str]) -> Value {
        common::run_json(
            &self.tmp.path().join("library"),
            &self.tmp.path().join("config"),
            args,
        )
    }
}

/// The passage numbers `text` cites.
fn markers(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('[') {
        rest = &rest[i + 1..];
        let Some(j) = rest.find(']') else { break };
        out.extend(
            rest[..j]
                .split(',')
                .filter_map(|n| n.trim().parse::<usize>().ok()),
        );
        rest = &rest[j..];
    }
    out
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn summarize_reads_every_part_cites_passages_and_keeps_the_summary() {
    let env = Env::new();
    let path = env.doc.to_str().unwrap();
    let first = env.json(&["summarize", path, "--model", SMOLLM, "--json"]);
    let s = &first.as_array().unwrap()[0];
    assert_eq!(s["path"], path, "{s}");
    let text = s["text"].as_str().unwrap();
    assert!(text.len() > 40, "a summary, not a word: {s}");
    let passages = s["passages"].as_u64().unwrap() as usize;
    assert!(passages >= 8, "every section is read: {s}");
    assert_eq!(s["left_out"], 0, "{s}");
    // Notes on at least two parts, then the summary: more than one call.
    assert!(s["calls"].as_u64().unwrap() >= 3, "map and reduce ran: {s}");
    // Every marker in the text is a cited passage of this document.
    let cited: Vec<&Value> = s["cited"].as_array().unwrap().iter().collect();
    for n in markers(text) {
        let c = cited
            .iter()
            .find(|c| c["n"] == n)
            .unwrap_or_else(|| panic!("[{n}] is not among the cited passages: {s}"));
        assert_eq!(c["path"], path);
        assert!(n <= passages, "{s}");
        let passage = c["text"].as_str().unwrap();
        assert!(register().contains(passage.trim()), "{passage}");
    }
    // Asked again for the same content: kept, no model call.
    let (ok, out, err) = env.run(&["summarize", path, "--model", SMOLLM]);
    assert!(ok, "{err}");
    assert!(err.contains("kept from before"), "{err}");
    assert!(
        out.contains(text.split('[').next().unwrap().trim()),
        "{out}"
    );
    // --redo writes it again.
    let (ok, _, err) = env.run(&["summarize", path, "--model", SMOLLM, "--redo"]);
    assert!(ok && err.contains("model calls"), "{err}");
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn summarize_refuses_what_the_library_does_not_hold() {
    let env = Env::new();
    let outside = env.tmp.path().join("elsewhere.txt");
    std::fs::write(&outside, "not indexed").unwrap();
    let (ok, _, err) = env.run(&["summarize", outside.to_str().unwrap(), "--model", SMOLLM]);
    assert!(!ok);
    assert!(err.contains("no indexed document"), "{err}");
    let (ok, _, err) = env.run(&["summarize", "--model", SMOLLM]);
    assert!(!ok, "a path is required: {err}");
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn list_every_questions_read_the_whole_document_and_fact_questions_do_not() {
    let env = Env::new();
    let path = env.doc.to_str().unwrap();
    let q = "List every supplier named in the register.";
    let a = env.json(&["ask", q, "--model", SMOLLM, "--path-prefix", path, "--json"]);
    let reason = a["route"]["reason"].as_str().unwrap();
    assert_eq!(a["route"]["target"], "local", "{a}");
    assert!(reason.contains("needs whole documents"), "{reason}");
    assert!(reason.contains("read all"), "{reason}");
    let sources = a["sources"].as_array().unwrap();
    assert!(sources.len() >= 8, "every passage is a source: {a}");
    assert!(
        reason.contains(&format!("read all {} passages", sources.len())),
        "{reason}"
    );
    assert!(
        sources.iter().all(|s| s["path"] == path),
        "only the chosen document: {a}"
    );
    assert!(!a["answer"].as_str().unwrap().trim().is_empty(), "{a}");
    // The same question told to use the best passages only.
    let top = env.json(&[
        "ask",
        q,
        "--model",
        SMOLLM,
        "--path-prefix",
        path,
        "--whole",
        "never",
        "--json",
    ]);
    assert!(top["sources"].as_array().unwrap().len() <= 5, "{top}");
    // A fact in one passage stays with the best passages.
    let fact = env.json(&[
        "ask",
        "Where is Tanaka Bearings based?",
        "--model",
        SMOLLM,
        "--json",
    ]);
    let reason = fact["route"]["reason"].as_str().unwrap();
    assert!(!reason.contains("whole documents"), "{reason}");
}

#[test]
fn the_register_spans_several_reading_windows() {
    // The tests above rely on a document longer than one window (1,500
    // tokens, about 6,000 characters of English).
    assert!(register().len() > 9000, "{}", register().len());
}
