//! `quarry extract` and `quarry classify` end to end: the real binary, real
//! models, a real library; tables written, every value cited and checked,
//! results kept across runs and across Ctrl-C.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const SMOLLM: &str = "smollm2-135m-instruct-q4_1";
const QWEN: &str = "qwen2.5-coder-1.5b-instruct-q4_k_m";

const CLAIM1: &str = "Claim notification\n\nPolicy number: HX-44120-B\nClaimant: Maria Fernandes\n\
Date of loss: 14 February 2024\n\nOn the night of 14 February 2024 a pipe burst in the upstairs \
bathroom of the insured property at 12 Rua Augusta, Lisbon. Water damaged the ceiling and the \
kitchen below. The claimant estimates the cost of repairs at EUR 8,450.00, supported by a \
contractor quote.\n";
const CLAIM2: &str = "To whom it may concern,\n\nI am writing to report a fire at my workshop on \
March 3, 2023. My policy is number QP-99812. The fire started in the electrical panel and \
destroyed two lathes and stock. The total loss amounts to $23,900.\n\nSincerely,\nTom Becker\n";
const MEMO: &str = "Team lunch is moved to Friday. Please bring your own cutlery; the office \
dishwasher is broken until further notice.\n";

const FIELDS: &str = r#"{"fields": [
 {"name": "policy_number", "type": "string", "description": "the insurance policy number"},
 {"name": "claimant", "type": "string", "description": "the person who makes the claim"},
 {"name": "loss_date", "type": "date", "description": "the date the loss happened"},
 {"name": "amount", "type": "number", "description": "the amount of money claimed"},
 {"name": "cause", "type": "enum", "choices": ["fire", "water", "theft", "other"], "description": "what caused the loss"}
]}"#;

struct Env {
    tmp: tempfile::TempDir,
    docs: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let docs = tmp.path().join("claims");
        std::fs::create_dir(&docs).unwrap();
        for (name, text) in [
            ("claim1.txt", CLAIM1),
            ("claim2.txt", CLAIM2),
            ("memo.txt", MEMO),
        ] {
            std::fs::write(docs.join(name), text).unwrap();
        }
        std::fs::write(tmp.path().join("fields.json"), FIELDS).unwrap();
        let env = Env {
            docs: docs.canonicalize().unwrap(),
            tmp,
        };
        env.ok(&["index", env.docs.to_str().unwrap()]);
        env
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        common::quarry(&self.path("library"), &self.path("config"), args)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run quarry")
    }

    fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "quarry {args:?} failed: {stderr}");
        (stdout, stderr)
    }

    fn extract(&self, model: &str, out: &str) -> (String, String) {
        let schema = self.path("fields.json");
        let out = self.path(out);
        self.ok(&[
            "extract",
            "--schema",
            schema.to_str().unwrap(),
            "--model",
            model,
            "--out",
            out.to_str().unwrap(),
        ])
    }

    fn table(&self, name: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(self.path(name)).unwrap();
        serde_json::from_str::<Value>(&text)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn doc<'a>(rows: &'a [Value], name: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["path"].as_str().unwrap().ends_with(name))
        .unwrap_or_else(|| panic!("{name} not in {rows:?}"))
}

/// Every value is cited at a passage of its own document, a verified one is
/// written there, and an empty one has neither citation nor verification.
fn assert_cited_and_checked(rows: &[Value]) {
    for r in rows {
        let path = r["path"].as_str().unwrap();
        assert!(Path::new(path).is_absolute(), "{r}");
        let fields = r["fields"].as_object().unwrap();
        assert_eq!(fields.len(), 5, "{r}");
        for (name, f) in fields {
            if f["value"].is_null() {
                assert_eq!(f["verified"], false, "{name}: {r}");
                assert!(f["citation"].is_null(), "{name}: {r}");
                continue;
            }
            let c = &f["citation"];
            assert_eq!(c["path"], path, "{name}: {r}");
            let passage = c["passage"].as_str().unwrap().to_lowercase();
            if f["verified"] == true && f["value"].is_string() && name != "loss_date" {
                let v = f["value"].as_str().unwrap().to_lowercase();
                assert!(
                    passage.contains(&v),
                    "{name} verified but not in its passage: {r}"
                );
            }
        }
    }
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn extract_writes_cited_checked_tables_and_keeps_results_across_runs() {
    let env = Env::new();
    let (_, err) = env.extract(SMOLLM, "t.json");
    assert!(err.contains("[3/3]") && err.contains("docs/min"), "{err}");
    let rows = env.table("t.json");
    assert_eq!(rows.len(), 3);
    assert_cited_and_checked(&rows);

    // A second run reuses every result and writes the other formats.
    let (_, err) = env.extract(SMOLLM, "t.csv");
    assert!(err.contains("(3 kept from an earlier run)"), "{err}");
    assert!(err.contains("0 extracted, 3 kept"), "{err}");
    let csv = std::fs::read_to_string(env.path("t.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "path,policy_number,claimant,loss_date,amount,cause,unverified,error"
    );
    assert_eq!(lines.count(), 3, "{csv}");
    env.extract(SMOLLM, "t.xlsx");
    let mut book = zip::ZipArchive::new(std::fs::File::open(env.path("t.xlsx")).unwrap()).unwrap();
    let mut strings = String::new();
    book.by_name("xl/sharedStrings.xml")
        .unwrap()
        .read_to_string(&mut strings)
        .unwrap();
    assert!(
        strings.contains("claim1.txt") && strings.contains("policy_number"),
        "{strings}"
    );

    // A changed document is extracted again; the others are kept.
    std::fs::write(
        env.docs.join("claim2.txt"),
        format!("{CLAIM2}\nP.S. Photos attached.\n"),
    )
    .unwrap();
    env.ok(&["index", env.docs.to_str().unwrap()]);
    let (_, err) = env.extract(SMOLLM, "t.json");
    assert!(err.contains("1 extracted, 2 kept"), "{err}");

    // Only what a folder argument and --ext select; JSON on stdout.
    let schema = env.path("fields.json");
    let memo = env.docs.join("memo.txt");
    let (out, _) = env.ok(&[
        "extract",
        memo.to_str().unwrap(),
        "--schema",
        schema.to_str().unwrap(),
        "--model",
        SMOLLM,
        "--json",
    ]);
    let only: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(only.len(), 1, "{out}");
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn bad_schemas_and_outputs_are_refused_clearly() {
    let env = Env::new();
    let bad = env.path("bad.json");
    for (schema, says) in [
        (
            r#"{"fields": [{"name": "a", "type": "money"}]}"#,
            "unknown type",
        ),
        (r#"{"fields": []}"#, "1 to 32 fields"),
        ("not json", "not JSON"),
    ] {
        std::fs::write(&bad, schema).unwrap();
        let out = env.run(&[
            "extract",
            "--schema",
            bad.to_str().unwrap(),
            "--model",
            SMOLLM,
        ]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{schema}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(says),
            "{schema}: {}",
            text(&out.stderr)
        );
    }
    let schema = env.path("fields.json");
    let out = env.run(&[
        "extract",
        "--schema",
        schema.to_str().unwrap(),
        "--out",
        "t.pdf",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(".csv, .xlsx or .json"),
        "{}",
        text(&out.stderr)
    );
    let out = env.run(&["extract", "/nowhere", "--schema", schema.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no indexed documents match"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn a_schema_saved_with_the_library_runs_by_name_over_the_documents_a_search_finds() {
    let env = Env::new();
    let (_, err) = env.ok(&["schemas"]);
    assert!(err.contains("no schemas saved"), "{err}");
    // Extract from what a search finds, and save the schema on the way.
    let schema = env.path("fields.json");
    let query = "burst pipe water damage in the bathroom";
    let (out, err) = env.ok(&[
        "extract",
        "--schema",
        schema.to_str().unwrap(),
        "--save-schema",
        "Claims",
        "--query",
        query,
        "--top",
        "1",
        "--model",
        SMOLLM,
        "--json",
    ]);
    assert!(
        err.contains("saved the schema as \"Claims\" (5 fields)"),
        "{err}"
    );
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.len(), 1, "{out}");
    assert!(
        rows[0]["path"].as_str().unwrap().ends_with("claim1.txt"),
        "{out}"
    );
    // By rank, not by path: claim2 comes after claim1 in path order.
    let (out, _) = env.ok(&[
        "extract",
        "--schema",
        "claims",
        "--query",
        "fire in my workshop",
        "--top",
        "1",
        "--model",
        SMOLLM,
        "--json",
    ]);
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.len(), 1, "{out}");
    assert!(
        rows[0]["path"].as_str().unwrap().ends_with("claim2.txt"),
        "{out}"
    );

    // Listed; run by name (in another case) it is the same schema: the
    // results kept for the file's schema are reused, not extracted again.
    let (out, _) = env.ok(&["schemas", "--json"]);
    let list: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(list.len(), 1, "{out}");
    assert_eq!(list[0]["name"], "Claims");
    assert_eq!(list[0]["schema"]["fields"].as_array().unwrap().len(), 5);
    let (out, _) = env.ok(&["schemas", "--show", "CLAIMS"]);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["fields"][4]["choices"][1], "water", "{out}");
    let (_, err) = env.ok(&["extract", "--schema", "CLAIMS", "--model", SMOLLM, "--json"]);
    assert!(err.contains("extracting from 3 documents (2 kept"), "{err}");

    // A name nothing is saved under, deleting, and --top without --query.
    let out = env.run(&["extract", "--schema", "invoices", "--model", SMOLLM]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no schema is saved as \"invoices\"; saved: Claims"),
        "{}",
        text(&out.stderr)
    );
    env.ok(&["schemas", "--delete", "claims"]);
    let out = env.run(&["schemas", "--delete", "claims"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = env.run(&["extract", "--schema", "Claims", "--top", "3"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--query"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn ctrl_c_keeps_what_is_done_and_the_next_run_goes_on() {
    let env = Env::new();
    let schema = env.path("fields.json");
    let mut child = env
        .cmd(&[
            "extract",
            "--schema",
            schema.to_str().unwrap(),
            "--model",
            SMOLLM,
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("[1/3]") {
            break;
        }
    }
    assert!(seen.contains("[1/3]"), "{seen}");
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
    let status = child.wait().unwrap();
    let rest = rest.join("\n");
    assert!(status.success(), "{seen}{rest}");
    assert!(rest.contains("what is done is kept"), "{seen}{rest}");
    let (_, err) = env.extract(SMOLLM, "t.json");
    let kept: usize = err
        .split("extracting from 3 documents (")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    assert!((1..3).contains(&kept), "{err}");
    assert_eq!(env.table("t.json").len(), 3);
}

#[test]
#[ignore = "needs the real models, the 1.1 GB one included: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn a_real_1_5b_model_fills_the_table_and_leaves_absent_fields_empty() {
    let env = Env::new();
    env.extract(QWEN, "t.json");
    let rows = env.table("t.json");
    assert_cited_and_checked(&rows);
    let c1 = &doc(&rows, "claim1.txt")["fields"];
    assert_eq!(c1["policy_number"]["value"], "HX-44120-B", "{c1}");
    assert_eq!(c1["policy_number"]["check"], "quoted", "{c1}");
    assert_eq!(c1["loss_date"]["value"], "2024-02-14", "{c1}");
    assert_eq!(c1["loss_date"]["check"], "normalised", "{c1}");
    assert_eq!(c1["amount"]["value"].as_f64(), Some(8450.0), "{c1}");
    assert_eq!(c1["amount"]["verified"], true, "{c1}");
    let c2 = &doc(&rows, "claim2.txt")["fields"];
    assert_eq!(c2["claimant"]["value"], "Tom Becker", "{c2}");
    assert_eq!(c2["cause"]["value"], "fire", "{c2}");
    let memo = &doc(&rows, "memo.txt")["fields"];
    for f in ["policy_number", "claimant", "loss_date", "amount"] {
        assert!(memo[f]["value"].is_null(), "{f} invented: {memo}");
    }
    // A classifier over the same documents.
    let (out, _) = env.ok(&[
        "classify",
        "--labels",
        "insurance claim,office notice",
        "--model",
        QWEN,
        "--json",
    ]);
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(
        doc(&rows, "memo.txt")["fields"]["category"]["value"],
        "office notice",
        "{out}"
    );
    assert_eq!(
        doc(&rows, "claim2.txt")["fields"]["category"]["value"],
        "insurance claim",
        "{out}"
    );
}
