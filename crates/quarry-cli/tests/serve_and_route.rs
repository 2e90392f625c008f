//! End to end over real HTTP: `quarry serve` on loopback with the real models
//! and a real library; the cloud route through a second Quarry acting as the
//! provider; local-only proven to open no connection with a provider
//! configured; redaction and the audit log; keys absent from every file and
//! every line Quarry writes.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::models_dir;
use serde_json::{json, Value};

const SECRET: &str = "sk-quarry-test-secret-8c1f";
const GENERATOR: &str = "smollm2-135m-instruct-q4_1";

struct Env {
    tmp: tempfile::TempDir,
    docs: PathBuf,
    library: PathBuf,
    config: PathBuf,
}

fn setup(extra: &[(&str, &str)]) -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/corpus");
    for e in std::fs::read_dir(corpus).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), docs.join(e.file_name())).unwrap();
    }
    for (name, text) in extra {
        std::fs::write(docs.join(name), text).unwrap();
    }
    let env = Env {
        docs: docs.canonicalize().unwrap(),
        library: tmp.path().join("library"),
        config: tmp.path().join("config"),
        tmp,
    };
    let (ok, _, err) = quarry(&env, &["index", env.docs.to_str().unwrap()], &[]);
    assert!(ok, "index failed: {err}");
    env
}

fn command(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_quarry"));
    c.args(args)
        .env("QUARRY_MODELS_DIR", models_dir())
        .env("QUARRY_CONFIG_DIR", &env.config)
        .env("QUARRY_LIBRARY_DIR", &env.library)
        .env_remove("QUARRY_API_KEY")
        .env_remove("OPENAI_API_KEY");
    for (k, v) in vars {
        c.env(k, v);
    }
    c
}

fn quarry(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> (bool, String, String) {
    let out = command(env, args, vars)
        .stdin(Stdio::null())
        .output()
        .expect("run quarry");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running `quarry serve`, killed on drop.
struct Server {
    child: Child,
    base: String,
    /// The token it requires, from the link it printed.
    token: String,
}

/// Each running server's token, by port: [`http`] sends it.
fn tokens() -> &'static Mutex<std::collections::HashMap<u16, String>> {
    static TOKENS: OnceLock<Mutex<std::collections::HashMap<u16, String>>> = OnceLock::new();
    TOKENS.get_or_init(Default::default)
}

/// The port of an `http://host:port/...` URL (0 without one).
fn port_of(url: &str) -> u16 {
    let authority = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or("");
    authority
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(0)
}

/// Adds the token of the server a request goes to (ureq's middleware
/// signature, whose error type is ureq's own).
#[allow(clippy::result_large_err)]
fn with_token(
    req: ureq::Request,
    next: ureq::MiddlewareNext,
) -> Result<ureq::Response, ureq::Error> {
    let token = tokens().lock().unwrap().get(&port_of(req.url())).cloned();
    match token {
        Some(t) => next.handle(req.set("Authorization", &format!("Bearer {t}"))),
        None => next.handle(req),
    }
}

/// An HTTP client that sends the token of the server it calls, as the UI
/// does; `ureq::get`/`ureq::post` send none.
fn http() -> ureq::Agent {
    ureq::AgentBuilder::new().middleware(with_token).build()
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(env: &Env) -> Server {
    serve_with(env, &[])
}

fn serve_with(env: &Env, extra: &[&str]) -> Server {
    serve_with_vars(env, extra, &[])
}

fn serve_with_vars(env: &Env, extra: &[&str], vars: &[(&str, &str)]) -> Server {
    let mut args = vec!["serve", "--addr", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut child = command(env, &args, vars)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start quarry serve");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut line, mut link) = (String::new(), String::new());
    out.read_line(&mut line).unwrap();
    out.read_line(&mut link).unwrap();
    let base = line
        .trim()
        .rsplit(' ')
        .next()
        .filter(|u| u.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    // Locked by default: the second line is the UI's link with the kept
    // token; a token given on the command line is never printed.
    let given = extra
        .iter()
        .position(|a| *a == "--token")
        .map(|i| extra[i + 1].to_string());
    let token = match given {
        Some(t) => {
            assert!(!link.contains(&t), "a given token is not printed: {link}");
            t
        }
        None => link
            .split_once("#token=")
            .and_then(|(_, t)| t.split_whitespace().next())
            .unwrap_or_else(|| panic!("no token in {link:?}"))
            .to_string(),
    };
    let port = port_of(&base);
    tokens().lock().unwrap().insert(port, token.clone());
    // Keep reading its output so the server never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Server { child, base, token }
}

/// Meaning search switched to the multilingual embedder from the API: a
/// model that is not installed is a clear error; a switch stopped at once
/// leaves the library as it was; an installed one embeds the library again
/// in the background (progress streams, phase `re-embedding` then
/// `re-embedded`), and then the library and its searches use it.
fn switch_embedder_over_http(base: &str) {
    let (code, body) = error_of(
        http()
            .post(&format!("{base}/api/embedder"))
            .send_json(json!({"embedder": "no-such-embedder"})),
    );
    assert!((400..500).contains(&code), "{code}: {body}");
    let before = get(&format!("{base}/api/settings"));
    assert_eq!(before["embedder"], "all-minilm-l6-v2", "{before}");
    let start = || {
        http()
            .post(&format!("{base}/api/embedder"))
            .send_json(json!({"embedder": "multilingual-e5-small-q4"}))
            .unwrap()
    };
    // Stopped: the switch ends before it swaps (it stops at the latest after
    // the batch being embedded), and search stays on the old embedder.
    assert_eq!(start().status(), 202);
    let stopping = cancel_job(base);
    assert_eq!(stopping["stopping"], true, "{stopping}");
    let (last, _) = follow_progress(base, &["stopped", "re-embedded", "failed"], 300);
    assert_eq!(last["phase"], "stopped", "{last}");
    assert_eq!(last["embedder"], "multilingual-e5-small-q4", "{last}");
    let unchanged = get(&format!("{base}/api/settings"));
    assert_eq!(unchanged["embedder"], "all-minilm-l6-v2", "{unchanged}");

    let accepted = start();
    assert_eq!(accepted.status(), 202);
    let (last, phases) = follow_progress(base, &["re-embedded", "failed"], 300);
    let saw_progress = phases.iter().any(|p| p == "re-embedding");
    assert_eq!(last["phase"], "re-embedded", "{last}");
    assert_eq!(last["embedder"], "multilingual-e5-small-q4", "{last}");
    assert!(last["chunks"].as_u64().unwrap() > 0, "{last}");
    assert!(saw_progress, "the switch's progress streamed");
    let after = get(&format!("{base}/api/settings"));
    assert_eq!(after["embedder"], "multilingual-e5-small-q4", "{after}");
    let found = get(&format!(
        "{base}/api/search?q=when%20did%20the%20orchids%20bloom&k=3&mode=vector"
    ));
    assert!(
        found["hits"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["path"].as_str().unwrap().ends_with("orchids.txt")),
        "meaning search with the new embedder: {found}"
    );
}

/// Follow `/api/status/stream` until a phase in `until` (within `secs`):
/// the last progress, and every phase seen.
fn follow_progress(base: &str, until: &[&str], secs: u64) -> (Value, Vec<String>) {
    let stream = http()
        .get(&format!("{base}/api/status/stream"))
        .call()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut last, mut phases) = (Value::Null, Vec::new());
    for line in BufReader::new(stream.into_reader()).lines() {
        if let Some(d) = line.unwrap().strip_prefix("data: ") {
            last = serde_json::from_str(d).unwrap();
            let phase = last["phase"].as_str().unwrap_or_default().to_string();
            let end = until.contains(&phase.as_str());
            phases.push(phase);
            if end {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the job did not finish: {last}");
    }
    (last, phases)
}

/// `POST /api/index/cancel`: whether a job was told to stop.
fn cancel_job(base: &str) -> Value {
    http()
        .post(&format!("{base}/api/index/cancel"))
        .send_json(json!({}))
        .unwrap()
        .into_json()
        .unwrap()
}

fn get(url: &str) -> Value {
    http().get(url).call().unwrap().into_json().unwrap()
}

fn error_of(r: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    match r {
        Err(ureq::Error::Status(code, resp)) => (code, resp.into_json().unwrap()),
        Ok(resp) => panic!("expected an error, got {}", resp.status()),
        Err(e) => panic!("transport error {e}"),
    }
}

/// Server-sent events of a response: (event name, data).
fn sse(body: &str) -> Vec<(String, String)> {
    let mut events = Vec::new();
    for block in body.split("\n\n") {
        let mut name = String::from("message");
        let mut data = String::new();
        for line in block.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_string();
            } else if let Some(d) = line.strip_prefix("data: ") {
                data.push_str(d);
            }
        }
        if !data.is_empty() {
            events.push((name, data));
        }
    }
    events
}

fn ask_sse(base: &str, body: Value) -> Vec<(String, Value)> {
    let text = http()
        .post(&format!("{base}/api/ask"))
        .send_json(body)
        .unwrap()
        .into_string()
        .unwrap();
    sse(&text)
        .into_iter()
        .map(|(n, d)| (n, serde_json::from_str(&d).unwrap()))
        .collect()
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn server_status_search_ask_index_and_openai_endpoints() {
    let env = setup(&[]);
    let server = serve(&env);
    let base = &server.base;

    let status = get(&format!("{base}/api/status"));
    assert!(
        status["library"]["documents"].as_u64().unwrap() >= 10,
        "{status}"
    );
    assert!(status["library"]["failures"]
        .to_string()
        .contains("broken.pdf"));
    assert_eq!(status["indexing"]["running"], false);

    let found = get(&format!("{base}/api/search?q=Morteratsch%20glacier&k=3"));
    let hits = found["hits"].as_array().unwrap();
    assert!(
        hits[0]["path"].as_str().unwrap().ends_with("glaciers.pdf"),
        "{found}"
    );
    assert!(!hits[0]["highlights"].as_array().unwrap().is_empty());
    let docx = get(&format!("{base}/api/search?q=termination&ext=docx"));
    for h in docx["hits"].as_array().unwrap() {
        assert!(h["path"].as_str().unwrap().ends_with(".docx"), "{h}");
    }
    let (code, body) = error_of(
        http()
            .get(&format!("{base}/api/search?q=x&mode=psychic"))
            .call(),
    );
    assert_eq!(code, 400, "{body}");

    // Ask: the events arrive in order and the answer cites the glacier report.
    let question =
        json!({"question": "How much length did the Morteratsch glacier lose?", "max_tokens": 40});
    let events = ask_sse(base, question.clone());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    // Evidence first: the best-matching sentences before the model is called.
    assert_eq!(names[0], "evidence", "{names:?}");
    let evidence = events[0].1.as_array().unwrap();
    assert!(
        evidence[0]["text"]
            .as_str()
            .unwrap()
            .contains("Morteratsch"),
        "{evidence:?}"
    );
    assert_eq!(names[1], "sources", "{names:?}");
    assert_eq!(names[2], "route");
    assert!(names.contains(&"token"));
    assert_eq!(*names.last().unwrap(), "done", "{events:?}");
    assert_eq!(events[2].1["target"], "local");
    let done = &events.last().unwrap().1;
    assert!(!done["answer"].as_str().unwrap().is_empty());
    assert!(done["sources"][0]["path"]
        .as_str()
        .unwrap()
        .ends_with("glaciers.pdf"));
    // The same question again, the library unchanged: the cached answer.
    let again = ask_sse(base, question);
    let route = &again.iter().find(|(n, _)| n == "route").unwrap().1;
    assert_eq!(route["target"], "cache", "{route}");
    assert_eq!(again.last().unwrap().1["answer"], done["answer"]);

    // A follow-up does not process the conversation again: it was prepared
    // while the user read the answer. A question without that history
    // reuses only the instructions, so the follow-up reuses more.
    let reused = |body: Value| {
        let events = ask_sse(base, body);
        let done = &events.last().unwrap().1;
        assert!(done["timings"].is_object(), "{events:?}");
        done["timings"]["reused_prompt_tokens"].as_u64().unwrap()
    };
    let history = json!([
        {"role": "user", "content": "How much length did the Morteratsch glacier lose?"},
        {"role": "assistant", "content": done["answer"]},
    ]);
    let follow_up = reused(
        json!({"question": "And the Pers glacier, how much did it lose?",
        "history": history, "max_tokens": 20, "no_cache": true}),
    );
    let alone = reused(json!({"question": "What did the Pers glacier lose?",
        "max_tokens": 20, "no_cache": true}));
    assert!(alone > 20, "the instructions are reused: {alone}");
    assert!(
        follow_up > alone + 20,
        "the conversation is reused too: {follow_up} vs {alone}"
    );

    // OpenAI-compatible endpoints.
    let models = get(&format!("{base}/v1/models"));
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"quarry-rag") && ids.contains(&GENERATOR),
        "{ids:?}"
    );
    let reply: Value = http().post(&format!("{base}/v1/chat/completions"))
        .send_json(json!({"model": "quarry-rag", "max_tokens": 30,
            "messages": [{"role": "user", "content": "How much length did the Morteratsch glacier lose?"}]}))
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(reply["object"], "chat.completion");
    assert!(!reply["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .is_empty());
    assert!(reply["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    let streamed = http()
        .post(&format!("{base}/v1/chat/completions"))
        .send_json(json!({"model": GENERATOR, "stream": true, "max_tokens": 8,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello."}]}]}))
        .unwrap()
        .into_string()
        .unwrap();
    let chunks = sse(&streamed);
    assert_eq!(chunks.last().unwrap().1, "[DONE]");
    let first: Value = serde_json::from_str(&chunks[0].1).unwrap();
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    let (code, body) = error_of(
        http()
            .post(&format!("{base}/v1/chat/completions"))
            .send_json(json!({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]})),
    );
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );

    // The preview's document text, only from inside the library's folders.
    let doc_url = |p: &str| format!("{base}/api/document?path={}", p.replace('/', "%2F"));
    let glaciers = env.docs.join("glaciers.pdf");
    let doc = get(&doc_url(glaciers.to_str().unwrap()));
    assert!(doc["blocks"].to_string().contains("Morteratsch"), "{doc}");
    assert_eq!(doc["blocks"][1]["page"], 2);
    let (code, body) = error_of(http().get(&doc_url("/etc/passwd")).call());
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (403, Some("outside_library"))
    );
    let settings = get(&format!("{base}/api/settings"));
    assert_eq!(
        settings["privacy"]["in_force"]["mode"], "local-only",
        "{settings}"
    );
    assert_eq!(settings["providers"], json!([]));
    let home = http().get(&format!("{base}/")).call().unwrap();
    assert_eq!(home.content_type(), "text/html");

    // A page on another origin cannot reach the server through DNS rebinding.
    let (code, _) = error_of(
        http()
            .get(&format!("{base}/api/status"))
            .set("Host", "evil.example:80")
            .call(),
    );
    assert_eq!(code, 403);

    // Adding a folder: a bad path is a clear error; a good one is indexed in
    // the background, its progress streams, and its text becomes searchable.
    let (code, body) = error_of(
        http()
            .post(&format!("{base}/api/index"))
            .send_json(json!({"paths": ["/no/such/folder"]})),
    );
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (400, Some("bad_path")),
        "{body}"
    );
    let more = env.tmp.path().join("more");
    std::fs::create_dir(&more).unwrap();
    std::fs::write(
        more.join("orchids.txt"),
        "Greenhouse log. The vanilla orchids flowered in the third week of March after the misting schedule changed.",
    )
    .unwrap();
    let accepted = http()
        .post(&format!("{base}/api/index"))
        .send_json(json!({"paths": [more]}))
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let (last, _) = follow_progress(base, &["done", "failed"], 120);
    assert_eq!(last["phase"], "done", "{last}");
    assert_eq!(last["files_done"], 1, "{last}");
    let found = get(&format!(
        "{base}/api/search?q=vanilla%20orchids%20misting&k=1"
    ));
    assert!(
        found["hits"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("orchids.txt"),
        "{found}"
    );
    let status = get(&format!("{base}/api/status"));
    assert_eq!(
        status["library"]["folders"].as_array().unwrap().len(),
        2,
        "{status}"
    );
    switch_embedder_over_http(base);
    // Removing that folder takes its document out again.
    let removed: Value = http()
        .post(&format!("{base}/api/folders/remove"))
        .send_json(json!({"path": more}))
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(removed["removed_documents"], 1, "{removed}");
    assert_eq!(removed["verified"], true, "removal is checked: {removed}");
    let found = get(&format!(
        "{base}/api/search?q=vanilla%20orchids%20misting&k=3&mode=keyword"
    ));
    assert_eq!(found["hits"], json!([]), "{found}");
    let cancel = cancel_job(base);
    assert_eq!(cancel["stopping"], false, "nothing is running");
}

/// Everything Quarry wrote (config, library) as one string.
fn all_files_text(dirs: &[&Path]) -> String {
    let mut text = String::new();
    let mut stack: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(mut f) = std::fs::File::open(&p) {
                let mut bytes = Vec::new();
                let _ = f.read_to_end(&mut bytes);
                text.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    text
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn cloud_route_through_a_second_quarry_with_redaction_audit_and_no_key_leaks() {
    let env = setup(&[(
        "permit.txt",
        "Dredging permit. For the Quaysworth dredging permit contact the harbour auditor Jane Roe at jane.roe@harbour.example or +1 (555) 201-3344.",
    )]);
    // The provider: another Quarry serving its OpenAI-compatible endpoint.
    let provider = serve_with(&env, &["--token", SECRET]);
    let url = format!("{}/v1", provider.base);
    let (ok, out, err) = quarry(
        &env,
        &[
            "provider",
            "add",
            "peer",
            "--base-url",
            &url,
            "--model",
            GENERATOR,
            "--redact",
            "--timeout-s",
            "120",
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("local-only"),
        "adding a provider says nothing is sent yet: {out}"
    );
    let vars = [("QUARRY_API_KEY", SECRET), ("QUARRY_LOG", "debug")];
    let (ok, out, err) = quarry(
        &env,
        &[
            "ask",
            "Who do I contact about the Quaysworth dredging permit?",
            "--privacy",
            "auto",
            "--route",
            "cloud",
            "--max-tokens",
            "40",
            "--sources",
            "2",
            "--json",
        ],
        &vars,
    );
    assert!(ok, "{err}");
    let a: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(a["route"]["target"], "cloud", "{a}");
    assert_eq!(a["route"]["provider"], "peer");
    assert!(!a["answer"].as_str().unwrap().trim().is_empty(), "{a}");
    let sent = a["sent"].to_string();
    assert!(
        sent.contains("[EMAIL_1]") && sent.contains("[PHONE_1]"),
        "{sent}"
    );
    assert!(
        !sent.contains("jane.roe@harbour.example") && !sent.contains("201-3344"),
        "{sent}"
    );
    assert_eq!(a["sent"]["redactions"]["counts"]["EMAIL"], 1);
    // The audit log names the provider, the bytes and the documents.
    let (ok, out, err) = quarry(&env, &["audit", "--json"], &[]);
    assert!(ok, "{err}");
    let log: Value = serde_json::from_str(&out).unwrap();
    let entries = log.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{log}");
    assert_eq!(entries[0]["provider"], "peer");
    assert_eq!(entries[0]["outcome"], "ok");
    assert!(entries[0]["bytes_sent"].as_u64().unwrap() > 100);
    assert!(
        entries[0]["documents"].to_string().contains("permit.txt"),
        "{log}"
    );
    assert_eq!(entries[0]["redactions"]["counts"]["PHONE"], 1);
    // The key is in no file and no output line (debug logging on).
    let (_, list_out, list_err) = quarry(&env, &["provider", "list", "--json"], &vars);
    assert!(
        list_out.contains("$QUARRY_API_KEY"),
        "the key's source is shown: {list_out}"
    );
    for text in [
        &out,
        &err,
        &list_out,
        &list_err,
        &all_files_text(&[&env.config, &env.library]),
    ] {
        assert!(!text.contains(SECRET), "the key leaked");
    }
    // A provider that fails falls back to the local model, and says so.
    drop(provider);
    let (ok, out, err) = quarry(
        &env,
        &[
            "ask",
            "Who do I contact about the Quaysworth dredging permit?",
            "--privacy",
            "auto",
            "--route",
            "cloud",
            "--max-tokens",
            "20",
            "--no-cache",
            "--json",
        ],
        &vars,
    );
    assert!(ok, "{err}");
    let a: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(a["route"]["target"], "local", "{a}");
    assert!(
        a["route"]["reason"].as_str().unwrap().contains("peer"),
        "{a}"
    );
    assert!(!err.contains(SECRET) && !out.contains(SECRET));
}

/// Counts connections to a loopback port.
struct Trap {
    port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Trap {
    fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        h.fetch_add(1, Ordering::SeqCst);
                        drop(conn);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Trap { port, hits, stop }
    }
    fn hits(&self) -> usize {
        // Let a late connection land before counting.
        std::thread::sleep(Duration::from_millis(100));
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn local_only_and_never_leaves_device_open_no_connection() {
    let env = setup(&[]);
    let trap = Trap::new();
    let url = format!("http://127.0.0.1:{}/v1", trap.port);
    let (ok, _, err) = quarry(
        &env,
        &[
            "provider",
            "add",
            "trap",
            "--base-url",
            &url,
            "--model",
            "m",
        ],
        &[],
    );
    assert!(ok, "{err}");
    let vars = [("QUARRY_API_KEY", SECRET)];
    let ask = |extra: &[&str]| -> Value {
        let mut args = vec![
            "ask",
            "Compare the glacier report with the harbour board minutes.",
            "--max-tokens",
            "8",
            "--no-cache",
            "--json",
        ];
        args.extend_from_slice(extra);
        let (ok, out, err) = quarry(&env, &args, &vars);
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    // Default (local-only), even when cloud is requested.
    let a = ask(&["--route", "cloud"]);
    assert_eq!(a["route"]["target"], "local");
    assert!(
        a["route"]["reason"]
            .as_str()
            .unwrap()
            .contains("local-only"),
        "{a}"
    );
    assert_eq!(trap.hits(), 0);
    // A never-leaves-device library beats the global setting and the flag.
    let lib = env.library.to_str().unwrap();
    assert!(quarry(&env, &["privacy", "auto"], &[]).0);
    assert!(
        quarry(
            &env,
            &["privacy", "--library", lib, "--never-leaves-device", "on"],
            &[]
        )
        .0
    );
    let a = ask(&["--privacy", "auto", "--route", "cloud"]);
    assert_eq!(a["route"]["target"], "local");
    assert!(
        a["route"]["reason"]
            .as_str()
            .unwrap()
            .contains("never-leaves-device"),
        "{a}"
    );
    assert_eq!(trap.hits(), 0);
    // Ask mode with no terminal to confirm on: nothing is sent.
    assert!(
        quarry(
            &env,
            &["privacy", "--library", lib, "--never-leaves-device", "off"],
            &[]
        )
        .0
    );
    let a = ask(&["--privacy", "ask", "--route", "cloud"]);
    assert_eq!(a["route"]["target"], "local");
    assert!(
        a["route"]["reason"].as_str().unwrap().contains("declined"),
        "{a}"
    );
    assert_eq!(trap.hits(), 0);
    assert!(quarry(&env, &["audit", "--json"], &[]).1.trim() == "[]");
    // The control: when egress is allowed the trap does see the connection
    // (so the zeros above mean something), and the failure falls back locally.
    let a = ask(&["--route", "cloud"]);
    assert!(trap.hits() >= 1, "the allowed request reached the listener");
    assert_eq!(a["route"]["target"], "local", "{a}");
    assert!(
        a["route"]["reason"].as_str().unwrap().contains("trap"),
        "{a}"
    );
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn the_server_is_locked_by_default_on_loopback_too() {
    let env = setup(&[]);
    let url = |s: &Server| format!("{}/api/status", s.base);
    // No --token: the user's kept token, made once with user-only permissions.
    let server = serve(&env);
    let kept = std::fs::read_to_string(env.config.join("server-token")).unwrap();
    assert_eq!(
        kept.trim(),
        server.token,
        "the printed link carries the kept token"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(env.config.join("server-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (code, body) = error_of(ureq::get(&url(&server)).call());
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (401, Some("unauthorized")),
        "loopback is locked too"
    );
    for path in ["/v1/models", "/api/search?q=glacier"] {
        let (code, _) = error_of(ureq::get(&format!("{}{path}", server.base)).call());
        assert_eq!(code, 401, "{path}");
    }
    let (code, _) = error_of(ureq::post(&format!("{}/mcp", server.base)).send_json(json!({})));
    assert_eq!(code, 401, "MCP is locked");
    let (code, _) = error_of(
        ureq::get(&url(&server))
            .set("Authorization", "Bearer wrong")
            .call(),
    );
    assert_eq!(code, 401);
    assert_eq!(http().get(&url(&server)).call().unwrap().status(), 200);
    // The UI's page itself holds no data and loads without the token.
    let home = ureq::get(&format!("{}/", server.base)).call().unwrap();
    assert_eq!(home.content_type(), "text/html");
    // A second server keeps the same token.
    let again = serve(&env);
    assert_eq!(again.token, server.token);
    drop((server, again));

    // A token of one's own.
    let server = serve_with(&env, &["--token", SECRET]);
    assert_eq!(server.token, SECRET);
    let (code, _) = error_of(ureq::get(&url(&server)).call());
    assert_eq!(code, 401);
    let ok = ureq::get(&url(&server))
        .set("Authorization", &format!("Bearer {SECRET}"))
        .call()
        .unwrap();
    assert_eq!(ok.status(), 200);
    drop(server);

    // Unlocked only when asked, and only on loopback.
    let mut child = command(&env, &["serve", "--addr", "127.0.0.1:0", "--no-token"], &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut line, mut warning) = (String::new(), String::new());
    out.read_line(&mut line).unwrap();
    out.read_line(&mut warning).unwrap();
    assert!(warning.contains("any program on this machine"), "{warning}");
    let base = line.trim().rsplit(' ').next().unwrap().to_string();
    let open = ureq::get(&format!("{base}/api/status")).call();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(open.unwrap().status(), 200);
    let (ok, _, err) = quarry(&env, &["serve", "--addr", "0.0.0.0:0", "--no-token"], &[]);
    assert!(!ok);
    assert!(err.contains("--no-token serves only loopback"), "{err}");
}

/// Milliseconds since the epoch of a UTC date.
fn ms_of(y: i32, m: u32, d: u32) -> i64 {
    chrono::NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn dates_models_and_opening_in_the_system_viewer() {
    let env = setup(&[]);
    // Two documents of different ages.
    let dated = env.tmp.path().join("dated");
    std::fs::create_dir(&dated).unwrap();
    let when = |y| std::time::UNIX_EPOCH + Duration::from_millis(ms_of(y, 6, 1) as u64);
    for (name, year) in [("ledger-1999.md", 1999), ("ledger-2024.md", 2024)] {
        let path = dated.join(name);
        std::fs::write(
            &path,
            format!("# Zeppelin ledger\n\nThe zeppelin ledger of {year} lists the hangar rents.\n"),
        )
        .unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(when(year))
            .unwrap();
    }
    let (ok, _, err) = quarry(&env, &["index", dated.to_str().unwrap()], &[]);
    assert!(ok, "{err}");

    // The viewer is a recorder, so the test sees what it was asked to open.
    let opened = env.tmp.path().join("opened.txt");
    let viewer = env.tmp.path().join("viewer.sh");
    std::fs::write(
        &viewer,
        format!("#!/bin/sh\necho \"$@\" >> '{}'\n", opened.display()),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&viewer, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let server = serve_with_vars(&env, &[], &[("QUARRY_OPEN_WITH", viewer.to_str().unwrap())]);
    let base = &server.base;

    // Date filters: by the files' modification times, half-open ranges.
    let search = |extra: &str| -> Vec<String> {
        get(&format!(
            "{base}/api/search?q=zeppelin%20ledger%20hangar&k=10{extra}"
        ))["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["path"].as_str().unwrap().to_string())
            .collect()
    };
    let y2020 = ms_of(2020, 1, 1);
    let before = search(&format!("&modified_before_ms={y2020}"));
    assert!(!before.is_empty());
    assert!(
        before.iter().all(|p| p.ends_with("ledger-1999.md")),
        "{before:?}"
    );
    let after = search(&format!("&modified_after_ms={y2020}"));
    assert!(after[0].ends_with("ledger-2024.md"), "{after:?}");
    assert!(
        !after.iter().any(|p| p.ends_with("ledger-1999.md")),
        "{after:?}"
    );
    let window = search(&format!(
        "&modified_after_ms={}&modified_before_ms={}",
        ms_of(2024, 1, 1),
        ms_of(2025, 1, 1)
    ));
    assert_eq!(window.len(), 1, "{window:?}");
    assert!(search(&format!("&modified_after_ms={}", ms_of(2200, 1, 1))).is_empty());
    // The CLI takes local dates.
    let (ok, out, err) = quarry(
        &env,
        &[
            "search",
            "zeppelin ledger",
            "--modified-before",
            "2020-01-01",
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("ledger-1999.md") && !out.contains("ledger-2024.md"),
        "{out}"
    );
    let (ok, _, err) = quarry(&env, &["search", "x", "--modified-after", "yesterday"], &[]);
    assert!(!ok && err.contains("not a date"), "{err}");

    // Each folder's share of the library.
    let status = get(&format!("{base}/api/status"));
    let folders = status["library"]["per_folder"].as_array().unwrap();
    assert_eq!(folders.len(), 2, "{status}");
    let dated_row = folders
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("dated"))
        .unwrap();
    assert_eq!(dated_row["documents"], 2, "{dated_row}");
    assert!(dated_row["last_indexed_ms"].as_i64().unwrap() > ms_of(2025, 1, 1));

    // Models: what is installed and in use; fetching an installed one only
    // verifies it; unknown ids and bad import paths are clear errors.
    let embedder = get(&format!("{base}/api/status"))["library"]["embedder"]
        .as_str()
        .unwrap()
        .to_string();
    let models = get(&format!("{base}/api/models"));
    let row = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == embedder.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{embedder} not listed: {models}"));
    assert_eq!(
        (row["installed"].clone(), row["in_use"].clone()),
        (json!(true), json!(true)),
        "{row}"
    );
    assert!(row["size_bytes"].as_u64().unwrap() > 1_000_000, "{row}");
    let started: Value = http()
        .post(&format!("{base}/api/models/fetch"))
        .send_json(json!({"id": embedder}))
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(started["id"], embedder.as_str());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let fetch = get(&format!("{base}/api/models"))["fetch"].clone();
        if fetch["running"] == false {
            assert_eq!(fetch["phase"], "done", "{fetch}");
            break;
        }
        assert!(Instant::now() < deadline, "fetch never finished: {fetch}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, body) = error_of(
        http()
            .post(&format!("{base}/api/models/fetch"))
            .send_json(json!({"id": "no-such-model"})),
    );
    assert_eq!(code, 404, "{body}");
    let (code, body) = error_of(
        http()
            .post(&format!("{base}/api/models/import"))
            .send_json(json!({"path": "/no/such/model.gguf"})),
    );
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (400, Some("bad_path")),
        "{body}"
    );

    // Opening in the system viewer: PDFs at the cited page; only documents of
    // the library.
    let glaciers = env.docs.join("glaciers.pdf");
    let r: Value = http()
        .post(&format!("{base}/api/open"))
        .send_json(json!({"path": glaciers, "page": 2}))
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(r["page"], 2, "{r}");
    let (code, body) = error_of(
        http()
            .post(&format!("{base}/api/open"))
            .send_json(json!({"path": "/etc/passwd"})),
    );
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (403, Some("outside_library")),
        "{body}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = std::fs::read_to_string(&opened).unwrap_or_default();
        if !got.is_empty() {
            assert_eq!(got.trim(), format!("{} --page 2", glaciers.display()));
            break;
        }
        assert!(Instant::now() < deadline, "the viewer was never started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn extraction_and_summaries_stream_over_http_and_tables_export() {
    let claim = "Claim notification. Policy number: HX-44120-B. Claimant: Maria Fernandes. \
                 The loss happened on 14 February 2024.";
    let env = setup(&[("claim.txt", claim)]);
    let server = serve_with(&env, &["--model", GENERATOR]);
    let claim_path = env.docs.join("claim.txt").to_string_lossy().to_string();
    let schema = json!({"fields": [
        {"name": "policy_number", "description": "the insurance policy number"},
        {"name": "claimant", "description": "who makes the claim"},
    ]});
    let request = json!({"schema": schema, "paths": [claim_path]});
    let body = http()
        .post(&format!("{}/api/extract", server.base))
        .send_json(request.clone())
        .unwrap()
        .into_string()
        .unwrap();
    let events: Vec<(String, Value)> = sse(&body)
        .into_iter()
        .map(|(n, d)| (n, serde_json::from_str(&d).unwrap()))
        .collect();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["started", "document", "done"], "{body}");
    assert_eq!(events[0].1["total"], 1, "{body}");
    assert_eq!(events[0].1["schema"]["fields"].as_array().unwrap().len(), 2);
    let doc = &events[1].1["fields"];
    assert_eq!(doc["path"], claim_path.as_str(), "{body}");
    for f in ["policy_number", "claimant"] {
        let v = &doc["fields"][f];
        assert!(v["verified"].is_boolean(), "{f}: {doc}");
        if !v["value"].is_null() {
            assert_eq!(v["citation"]["path"], claim_path.as_str(), "{f}: {doc}");
        }
    }
    assert_eq!(events[2].1["extracted"], 1, "{body}");

    // The kept results as files.
    let table = |format: &str| {
        let mut r = request.clone();
        r["format"] = json!(format);
        let resp = http()
            .post(&format!("{}/api/extract/table", server.base))
            .send_json(r)
            .unwrap();
        let mime = resp.content_type().to_string();
        let mut bytes = Vec::new();
        resp.into_reader().read_to_end(&mut bytes).unwrap();
        (mime, bytes)
    };
    let (mime, csv) = table("csv");
    assert!(mime.starts_with("text/csv"), "{mime}");
    let csv = String::from_utf8(csv).unwrap();
    assert!(
        csv.starts_with("path,policy_number,claimant,unverified,error\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 2, "{csv}");
    let (_, xlsx) = table("xlsx");
    assert_eq!(&xlsx[..2], b"PK", "an xlsx is a zip");

    // Saved with the library, the schema runs by name (in any case): the
    // same schema, so the kept result is reused. A query picks documents.
    let saved: Value = http()
        .put(&format!("{}/api/schemas", server.base))
        .send_json(json!({"name": "Claims", "schema": schema}))
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(saved["name"], "Claims", "{saved}");
    let list = get(&format!("{}/api/schemas", server.base));
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["schema"]["fields"][1]["name"], "claimant", "{list}");
    let run = |request: Value| -> Vec<(String, Value)> {
        let body = http()
            .post(&format!("{}/api/extract", server.base))
            .send_json(request)
            .unwrap()
            .into_string()
            .unwrap();
        sse(&body)
            .into_iter()
            .map(|(n, d)| (n, serde_json::from_str(&d).unwrap()))
            .collect()
    };
    let events =
        run(json!({"schema": "claims", "query": "Maria Fernandes policy claim", "top": 1}));
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0].1["total"], 1, "{events:?}");
    assert_eq!(events[1].1["kept"], true, "{events:?}");
    assert_eq!(
        events[1].1["fields"]["path"],
        claim_path.as_str(),
        "{events:?}"
    );
    let deleted = http()
        .delete(&format!("{}/api/schemas?name=CLAIMS", server.base))
        .call()
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let (code, err) = error_of(
        http()
            .delete(&format!("{}/api/schemas?name=claims", server.base))
            .call(),
    );
    assert_eq!(code, 404, "{err}");
    let events = run(json!({"schema": "claims"}));
    assert_eq!(events[0].0, "error", "{events:?}");
    assert!(
        events[0].1["message"]
            .as_str()
            .unwrap()
            .contains("no schema is saved as"),
        "{events:?}"
    );
    let (code, err) = error_of(
        http()
            .put(&format!("{}/api/schemas", server.base))
            .send_json(json!({"name": " ", "schema": schema})),
    );
    assert_eq!(code, 400, "{err}");

    // While an extraction holds the local model, a question says it waits
    // for it (and what it is) instead of hanging silently; once the
    // extraction's client leaves, the answer comes.
    let resp = http()
        .post(&format!("{}/api/extract", server.base))
        .send_json(json!({"schema": schema, "redo": true}))
        .unwrap();
    let mut lines = std::io::BufReader::new(resp.into_reader()).lines();
    let mut next_event = move || loop {
        let line = lines.next().expect("the extraction stream ended").unwrap();
        if let Some(name) = line.strip_prefix("event: ") {
            return name.to_string();
        }
    };
    assert_eq!(next_event(), "started");
    let base = server.base.clone();
    let asking = std::thread::spawn(move || {
        ask_sse(
            &base,
            json!({"question": "What is the policy number?", "no_cache": true}),
        )
    });
    // Two documents take seconds: the question has reached the model by then.
    assert_eq!(next_event(), "document");
    assert_eq!(next_event(), "document");
    drop(next_event);
    let events = asking.join().unwrap();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let waiting = events
        .iter()
        .find(|(n, _)| n == "waiting")
        .unwrap_or_else(|| panic!("no waiting event: {names:?}"));
    assert!(
        waiting.1["busy"]
            .as_str()
            .unwrap()
            .starts_with("an extraction from"),
        "{waiting:?}"
    );
    assert_eq!(names.last(), Some(&"done"), "{names:?}");

    // A schema that cannot be read is an error event, not a dropped stream.
    let body = http()
        .post(&format!("{}/api/extract", server.base))
        .send_json(json!({"schema": {"fields": [{"name": "a", "type": "money"}]}}))
        .unwrap()
        .into_string()
        .unwrap();
    let events = sse(&body);
    assert_eq!(events.len(), 1, "{body}");
    assert_eq!(events[0].0, "error", "{body}");
    assert!(events[0].1.contains("unknown type"), "{body}");

    // A summary streams its text, then comes with the passages it cites;
    // asked again, it is the kept one.
    let summarize = |path: &str| {
        let body = http()
            .post(&format!("{}/api/summarize", server.base))
            .send_json(json!({ "path": path }))
            .unwrap()
            .into_string()
            .unwrap();
        sse(&body)
            .into_iter()
            .map(|(n, d)| (n, serde_json::from_str::<Value>(&d).unwrap()))
            .collect::<Vec<_>>()
    };
    let events = summarize(&claim_path);
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "done", "{events:?}");
    let streamed: String = events
        .iter()
        .filter(|(n, _)| n == "token")
        .map(|(_, d)| d["text"].as_str().unwrap())
        .collect();
    let text = done["summary"]["text"].as_str().unwrap();
    assert!(!text.is_empty(), "{done}");
    assert_eq!(done["kept"], false, "{done}");
    assert_eq!(done["summary"]["path"], claim_path.as_str(), "{done}");
    assert!(
        streamed.contains(text.split('[').next().unwrap().trim()),
        "{streamed} / {text}"
    );
    let again = summarize(&claim_path);
    assert_eq!(again.last().unwrap().1["kept"], true, "{again:?}");
    assert_eq!(again.last().unwrap().1["summary"]["text"], text);
    // Not an indexed document: an error event that says so.
    let events = summarize("/nowhere/missing.txt");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "error", "{events:?}");
    assert!(
        events[0].1["message"]
            .as_str()
            .unwrap()
            .contains("not an indexed document"),
        "{events:?}"
    );
}
