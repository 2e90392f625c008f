//! What the terminal shows of the logs: Quarry's own warnings, and nothing
//! from its dependencies unless asked (a PDF parser alone printed 21,501
//! warnings indexing 129 PDFs). `--verbose` shows Quarry's progress notes
//! and the dependencies' warnings; `QUARRY_LOG` or `RUST_LOG` (tracing's
//! filter syntax) override both.

/// Quarry's own crates (their log targets).
const OURS: &[&str] = &[
    "quarry",
    "quarry_core",
    "quarry_extract",
    "quarry_app",
    "quarry_server",
    "quarry_cli",
    "quarry_desktop",
];

/// The default filter: dependencies at `error` (or `warn` when verbose),
/// Quarry's crates at `warn` (or `info`).
pub fn default_filter(verbose: bool) -> String {
    let (deps, ours) = if verbose {
        ("warn", "info")
    } else {
        ("error", "warn")
    };
    let mut f = deps.to_string();
    for c in OURS {
        f.push_str(&format!(",{c}={ours}"));
    }
    f
}

/// The filter in force: `QUARRY_LOG`, else `RUST_LOG`, else the default.
pub fn filter(verbose: bool, env: impl Fn(&str) -> Option<String>) -> String {
    env("QUARRY_LOG")
        .or_else(|| env("RUST_LOG"))
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| default_filter(verbose))
}

/// Send logs to standard error under [`filter`] (call once, at start).
pub fn init(verbose: bool) {
    let spec = filter(verbose, |k| std::env::var(k).ok());
    let filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter(verbose)));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_are_quiet_unless_asked() {
        let quiet = default_filter(false);
        assert!(quiet.starts_with("error,"));
        assert!(quiet.contains("quarry_core=warn"));
        assert!(default_filter(true).starts_with("warn,"));
        let none = |_: &str| None;
        assert_eq!(filter(false, none), quiet);
        let rust_log = |k: &str| (k == "RUST_LOG").then(|| "debug".to_string());
        assert_eq!(filter(false, rust_log), "debug");
        let both = |k: &str| Some(if k == "QUARRY_LOG" { "trace" } else { "debug" }.to_string());
        assert_eq!(filter(true, both), "trace");
    }
}
