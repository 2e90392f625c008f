//! The OS keychain for real: `quarry provider set-key` stores the key in the
//! Secret Service (gnome-keyring in a private D-Bus session), no file holds
//! it, and `quarry ask` sends it — only in the Authorization header — to the
//! provider. `scripts/deps.sh` installs gnome-keyring and dbus; without them
//! the test fails, unless `QUARRY_SKIP_KEYCHAIN=<reason>` says why this
//! machine cannot run a Secret Service (the reason is printed).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

const KEY: &str = "sk-keychain-secret-5d2e";

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

fn files_text(dir: &Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(mut f) = std::fs::File::open(&p) {
                let mut b = Vec::new();
                let _ = f.read_to_end(&mut b);
                out.push_str(&String::from_utf8_lossy(&b));
            }
        }
    }
    out
}

/// A folder with one short document, under `tmp`.
fn harbour_minutes(tmp: &Path) -> PathBuf {
    let docs = tmp.join("docs");
    std::fs::create_dir(&docs).unwrap();
    std::fs::write(
        docs.join("harbour.txt"),
        "Minutes of the harbour board. The board approved dredging of the Quaysworth channel before the spring tides.",
    )
    .unwrap();
    docs
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn keys_live_in_the_os_keychain_and_reach_only_the_provider() {
    if let Some(reason) = std::env::var_os("QUARRY_SKIP_KEYCHAIN") {
        eprintln!(
            "SKIPPED (QUARRY_SKIP_KEYCHAIN): {}",
            reason.to_string_lossy()
        );
        return;
    }
    for bin in ["dbus-run-session", "gnome-keyring-daemon"] {
        assert!(
            on_path(bin),
            "{bin} is not installed: run scripts/deps.sh (gnome-keyring, dbus), \
             or set QUARRY_SKIP_KEYCHAIN=<why> to skip this test"
        );
    }
    let models = std::env::var_os("QUARRY_MODELS_DIR")
        .map(PathBuf::from)
        .expect("set QUARRY_MODELS_DIR");
    let tmp = tempfile::tempdir().unwrap();
    let docs = harbour_minutes(tmp.path());
    // The provider: records the request head, then closes (Quarry falls back locally).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = heads.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn);
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            seen.lock().unwrap().push(head);
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
        }
    });
    let quarry = env!("CARGO_BIN_EXE_quarry");
    let script = format!(
        r#"set -e
printf test | gnome-keyring-daemon --unlock --components=secrets >/dev/null
q() {{ "{quarry}" "$@"; }}
q index "{docs}" >/dev/null
q provider add lan --base-url http://127.0.0.1:{port}/v1 --model m --timeout-s 20 >/dev/null
echo "{KEY}" | q provider set-key lan
q provider list --json
q ask "Compare the harbour board's decisions over the years" --privacy auto --route cloud --max-tokens 8 --json
"#,
        docs = docs.display()
    );
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let out = Command::new("dbus-run-session")
        .args(["--", "bash", "-c", &script])
        .env("HOME", &home)
        .env("QUARRY_MODELS_DIR", &models)
        .env("QUARRY_CONFIG_DIR", tmp.path().join("config"))
        .env("QUARRY_LIBRARY_DIR", tmp.path().join("library"))
        .env("QUARRY_LOG", "debug")
        .env_remove("QUARRY_API_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("Stored the key for 'lan' in the OS keychain."),
        "{stdout}"
    );
    assert!(stdout.contains("\"key\": \"keychain\""), "{stdout}");
    // The key went to the provider in the Authorization header, nowhere else.
    let heads = heads.lock().unwrap();
    assert_eq!(heads.len(), 1, "one request: {heads:?}");
    let auth = heads[0]
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
        .unwrap_or_default();
    let (name, value) = auth.split_once(':').expect("an Authorization header");
    assert!(name.eq_ignore_ascii_case("authorization"));
    assert_eq!(value.trim(), format!("Bearer {KEY}"));
    assert!(
        stdout.contains("\"target\": \"local\""),
        "the failed provider fell back: {stdout}"
    );
    for text in [
        stdout.to_string(),
        stderr.to_string(),
        files_text(tmp.path()),
    ] {
        assert!(!text.contains(KEY), "the key leaked");
    }
}

/// Run `script` in a private D-Bus session with its own keyring under `home`.
fn in_keyring_session(tmp: &Path, home: &Path, script: &str) -> std::process::Output {
    std::fs::create_dir_all(home).unwrap();
    let models = std::env::var_os("QUARRY_MODELS_DIR").expect("set QUARRY_MODELS_DIR");
    Command::new("dbus-run-session")
        .args(["--", "bash", "-c", script])
        .env("HOME", home)
        .env("QUARRY_MODELS_DIR", models)
        .env("QUARRY_CONFIG_DIR", tmp.join("config"))
        .env("QUARRY_LIBRARY_DIR", tmp.join("library"))
        .env_remove("QUARRY_LIBRARY_PASSPHRASE")
        .output()
        .unwrap()
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn an_encrypted_library_opens_with_its_key_from_the_keychain_and_not_without() {
    if let Some(reason) = std::env::var_os("QUARRY_SKIP_KEYCHAIN") {
        eprintln!(
            "SKIPPED (QUARRY_SKIP_KEYCHAIN): {}",
            reason.to_string_lossy()
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let docs = harbour_minutes(tmp.path());
    let quarry = env!("CARGO_BIN_EXE_quarry");
    let script = format!(
        r#"set -e
printf test | gnome-keyring-daemon --unlock --components=secrets >/dev/null
q() {{ "{quarry}" "$@" </dev/null; }}
q init --encrypt --keychain
q index "{docs}" >/dev/null
q search Quaysworth --json
q check --json
"#,
        docs = docs.display()
    );
    let out = in_keyring_session(tmp.path(), &tmp.path().join("home"), &script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("its key is kept in your OS keychain"),
        "{stdout}"
    );
    assert!(stdout.contains("harbour.txt"), "{stdout}");
    assert!(stdout.contains("\"consistent\": true"), "{stdout}");
    assert!(stdout.contains("\"plain\": []"), "{stdout}");
    let key_file = std::fs::read_to_string(tmp.path().join("library/encryption.json")).unwrap();
    assert!(
        key_file.contains("\"keychain\"") && !key_file.contains("salt"),
        "{key_file}"
    );
    assert!(!files_text(&tmp.path().join("library")).contains("Quaysworth"));

    // A new key: every file resealed, the old key's keychain entry deleted —
    // the old key file put back no longer opens anything.
    let library = tmp.path().join("library");
    let old_key_file = tmp.path().join("old-encryption.json");
    std::fs::copy(library.join("encryption.json"), &old_key_file).unwrap();
    let script = format!(
        r#"set -e
printf test | gnome-keyring-daemon --unlock --components=secrets >/dev/null
q() {{ "{quarry}" "$@" </dev/null; }}
q rekey --json
q search Quaysworth --json
cp "{old}" "{library}/encryption.json"
q search Quaysworth && exit 3 || true
"#,
        old = old_key_file.display(),
        library = library.display(),
    );
    let out = in_keyring_session(tmp.path(), &tmp.path().join("home"), &script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("\"old_unlock\": \"keychain\""), "{stdout}");
    assert!(stdout.contains("harbour.txt"), "{stdout}");
    assert!(
        stderr.contains("is not in this user's keychain"),
        "the old key still opens: {stderr}"
    );

    // Another user's keychain (a fresh one) does not hold the key: a clear
    // error, no passphrase prompt, nothing read.
    let script = format!(
        r#"printf test | gnome-keyring-daemon --unlock --components=secrets >/dev/null
"{quarry}" search Quaysworth </dev/null"#
    );
    let out = in_keyring_session(tmp.path(), &tmp.path().join("other-home"), &script);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("is not in this user's keychain"),
        "{stderr}"
    );
}
