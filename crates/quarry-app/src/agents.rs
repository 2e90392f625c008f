//! What agents read: the access log of the MCP server (`quarry mcp`, and
//! `/mcp` of `quarry serve`). Every tool call and resource read is one line
//! of `<library>/agent-access.jsonl`: when, which client, which tool, what it
//! asked (cut short), whether it was served, how many bytes went back and
//! from which documents. `quarry audit --mcp` and the Settings screen show it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::error::{AppError, AppResult};
use quarry_core::store::sealed::LibraryFiles;

/// The file name of the access log inside a library folder.
pub const ACCESS_LOG: &str = "agent-access.jsonl";

/// The most characters of a call's arguments the log keeps.
const ARGUMENTS_KEPT: usize = 500;

/// One call an agent made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct AgentAccess {
    /// When (RFC 3339, UTC).
    pub time: String,
    /// The client's name and version as it introduced itself (`unknown` when it did not).
    pub client: String,
    /// `stdio` or `http`.
    pub transport: String,
    /// The tool called, or `resources/read`.
    pub tool: String,
    /// The arguments, as JSON cut to 500 characters.
    pub arguments: String,
    /// `served`, `refused` (not shared, outside the library) or `failed`.
    pub outcome: String,
    /// Why it was refused or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Bytes of the result sent back to the agent.
    pub bytes_returned: usize,
    /// The documents whose text was in the result.
    #[serde(default)]
    pub documents: Vec<String>,
}

impl AgentAccess {
    /// A call of `tool` with `arguments` (cut short), not yet served.
    pub fn new(client: &str, transport: &str, tool: &str, arguments: &serde_json::Value) -> Self {
        let mut args = arguments.to_string();
        if args.chars().count() > ARGUMENTS_KEPT {
            args = args.chars().take(ARGUMENTS_KEPT).collect::<String>() + "…";
        }
        AgentAccess {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            client: client.to_string(),
            transport: transport.to_string(),
            tool: tool.to_string(),
            arguments: args,
            outcome: "served".into(),
            reason: None,
            bytes_returned: 0,
            documents: Vec::new(),
        }
    }
}

/// The access log of one library, appended by every MCP session in this
/// process (one line per call, written whole).
pub struct AccessLog {
    library: PathBuf,
    path: PathBuf,
    write: Mutex<()>,
}

impl AccessLog {
    /// The log of the library in `library_dir`.
    pub fn of(library_dir: &Path) -> Self {
        AccessLog {
            library: library_dir.to_path_buf(),
            path: library_dir.join(ACCESS_LOG),
            write: Mutex::new(()),
        }
    }

    /// Append `entry` (sealed in an encrypted library).
    pub fn record(&self, entry: &AgentAccess) -> AppResult<()> {
        let _one_at_a_time = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let line = serde_json::to_vec(entry).map_err(AppError::internal)?;
        LibraryFiles::of(&self.library)?.append_line(&self.path, &line)?;
        Ok(())
    }
}

/// Every call agents made on the library in `library_dir`, oldest first. A
/// line cut short by a crash is skipped, never an error.
pub fn read(library_dir: &Path) -> AppResult<Vec<AgentAccess>> {
    let lines = LibraryFiles::of(library_dir)?.read_lines(&library_dir.join(ACCESS_LOG))?;
    Ok(lines
        .iter()
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect())
}

/// How agent clients start Quarry's MCP server, ready to paste into their
/// settings: the command, and each client's JSON with the paths filled in.
#[derive(Debug, Clone, Serialize, TS)]
pub struct AgentSetup {
    /// The program to run.
    pub command: String,
    /// Its arguments (`mcp --library DIR`).
    pub args: Vec<String>,
    /// Claude Desktop (`claude_desktop_config.json`) and Cursor (`~/.cursor/mcp.json`): `mcpServers`.
    pub claude_desktop: String,
    /// VS Code (`.vscode/mcp.json` or the user's `mcp.json`): `servers`, with `type: stdio`.
    pub vscode: String,
    /// Where Claude Desktop keeps its configuration on this system.
    pub claude_config_file: Option<String>,
}

/// The setup for `binary` (the `quarry` command) serving the library in `library`.
pub fn agent_setup(binary: &Path, library: &Path) -> AgentSetup {
    let command = binary.display().to_string();
    let args = vec![
        "mcp".to_string(),
        "--library".to_string(),
        library.display().to_string(),
    ];
    let server = serde_json::json!({ "command": command, "args": args });
    let mut vscode_server = server.clone();
    vscode_server["type"] = "stdio".into();
    let pretty = |v: serde_json::Value| serde_json::to_string_pretty(&v).unwrap_or_default();
    let claude_config_file = if cfg!(target_os = "macos") {
        std::env::var_os("HOME").map(|h| {
            Path::new(&h)
                .join("Library/Application Support/Claude/claude_desktop_config.json")
                .display()
                .to_string()
        })
    } else if cfg!(windows) {
        std::env::var_os("APPDATA").map(|a| {
            Path::new(&a)
                .join("Claude")
                .join("claude_desktop_config.json")
                .display()
                .to_string()
        })
    } else {
        None
    };
    AgentSetup {
        claude_desktop: pretty(serde_json::json!({ "mcpServers": { "quarry": server } })),
        vscode: pretty(serde_json::json!({ "servers": { "quarry": vscode_server } })),
        command,
        args,
        claude_config_file,
    }
}

/// Where the desktop app's MCP endpoint over HTTP listens: loopback, port
/// `QUARRY_AGENTS_PORT`, else 7312 (`quarry serve` takes 7311).
pub fn endpoint_addr() -> std::net::SocketAddr {
    let port = std::env::var("QUARRY_AGENTS_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(7312);
    ([127, 0, 0, 1], port).into()
}

/// The desktop app's MCP endpoint over HTTP while it runs: where, and the
/// token clients must send (`Authorization: Bearer <token>`).
#[derive(Debug, Clone, Serialize, TS)]
pub struct HttpEndpoint {
    /// `http://127.0.0.1:PORT/mcp`.
    pub url: String,
    /// The user's server token.
    pub token: String,
}

/// What the Settings screen shows of agents: whether they may read the
/// library, how to connect one, and what they read.
#[derive(Debug, Clone, Serialize, TS)]
pub struct AgentsView {
    /// Agents may read the library (it is not marked not-shared-with-agents).
    pub shared: bool,
    /// How to connect a client over stdio.
    pub setup: AgentSetup,
    /// The most recent calls, newest first (at most 200).
    pub recent: Vec<AgentAccess>,
    /// Calls in the whole log.
    pub total: usize,
}

/// The agents' view of the engine's library; `binary` is the `quarry` command
/// clients should start.
pub fn agents_view(engine: &crate::Engine, binary: &Path) -> AppResult<AgentsView> {
    let log = read(&engine.library_dir)?;
    Ok(AgentsView {
        shared: !engine.library().meta().privacy.not_shared_with_agents,
        setup: agent_setup(binary, &engine.library_dir),
        total: log.len(),
        recent: log.into_iter().rev().take(200).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn calls_are_kept_in_order_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let log = AccessLog::of(dir.path());
        let long = serde_json::json!({"query": "x".repeat(2000)});
        let mut first = AgentAccess::new("claude 1.0", "stdio", "search", &long);
        first.bytes_returned = 42;
        first.documents = vec!["/docs/a.txt".into()];
        log.record(&first).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(ACCESS_LOG))
            .unwrap()
            .write_all(b"{\"time\":\"torn")
            .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(ACCESS_LOG))
            .unwrap()
            .write_all(b"\n")
            .unwrap();
        let mut second = AgentAccess::new("unknown", "http", "read_document", &long);
        second.outcome = "refused".into();
        log.record(&second).unwrap();
        let got = read(dir.path()).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], first);
        assert!(got[0].arguments.chars().count() <= ARGUMENTS_KEPT + 1);
        assert_eq!(got[1].outcome, "refused");
    }

    #[test]
    fn the_setup_names_the_binary_and_the_library() {
        let setup = agent_setup(
            Path::new("/opt/quarry/bin/quarry"),
            Path::new("/home/ana/My Library"),
        );
        let claude: serde_json::Value = serde_json::from_str(&setup.claude_desktop).unwrap();
        let server = &claude["mcpServers"]["quarry"];
        assert_eq!(server["command"], "/opt/quarry/bin/quarry");
        assert_eq!(
            server["args"],
            serde_json::json!(["mcp", "--library", "/home/ana/My Library"])
        );
        let vscode: serde_json::Value = serde_json::from_str(&setup.vscode).unwrap();
        assert_eq!(vscode["servers"]["quarry"]["type"], "stdio");
        assert_eq!(vscode["servers"]["quarry"]["args"], server["args"]);
    }

    #[test]
    fn a_library_no_agent_used_has_an_empty_log() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_empty());
    }
}
