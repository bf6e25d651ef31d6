//! Third-party MCP servers and clients written in Python and Node, run
//! as the tests' peers.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::binary::fixture;

/// The Python of the virtual environment that holds the `mcp` 2.x SDK,
/// beside the 1.x the fixtures' servers need (`tests/run.sh` makes it).
pub fn python_mcp2() -> String {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/python-mcp2/bin/python");
    assert!(
        python.exists(),
        "{} is missing; `tests/run.sh` makes it (python3 -m venv target/python-mcp2 && target/python-mcp2/bin/pip install -r tests/requirements-mcp2.txt)",
        python.display()
    );
    python.display().to_string()
}

/// The reference server `@modelcontextprotocol/server-everything`, as
/// `tests/run.sh` installs it, to run with `node` and a transport.
pub fn server_everything() -> String {
    fixture("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
        .display()
        .to_string()
}

/// A fixture server process listening on a port of the kernel's choosing
/// (the Python SDK test server on an HTTP transport, by default), stopped
/// on drop.
pub struct FixtureServer {
    child: Child,
    pub port: u16,
    /// Held open so a late print in the fixture never meets a closed pipe.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl FixtureServer {
    pub fn start(transport: &str) -> FixtureServer {
        Self::start_script("fastmcp_server.py", &["--transport", transport])
    }

    /// A fixture server script, given `args`. The fixture binds a port of
    /// the kernel's choosing and prints it once it listens
    /// (`fixtures/listen.py`).
    pub fn start_script(script: &str, args: &[&str]) -> FixtureServer {
        Self::start_with("python3", script, args)
    }

    /// A fixture script run by `program` (`python3`, `node`), given `args`,
    /// that prints its port once it listens.
    pub fn start_with(program: &str, script: &str, args: &[&str]) -> FixtureServer {
        let mut child = Command::new(program)
            .arg(fixture(script))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} {script} does not start: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{script} printed no port, only {line:?}"));
        FixtureServer {
            child,
            port,
            _stdout: stdout,
        }
    }
}

impl Drop for FixtureServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a client program (asynchronously, so mock servers on the test's
/// runtime keep serving) in `dir`, requires success, and returns its
/// standard output.
pub async fn run_client(program: &str, args: &[&str], dir: &std::path::Path) -> String {
    let output = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The official Python MCP client (`fixtures/mcp_client.py`) against the
/// MCP endpoint at `url`, with `key`, pinned to `end_user` if given: it
/// lists the tools, makes `calls` (`[[name, arguments], ...]`) and
/// returns what it saw.
pub async fn run_mcp_client(url: &str, key: &str, end_user: Option<&str>, calls: &Value) -> Value {
    let args = [
        fixture("mcp_client.py").display().to_string(),
        url.to_owned(),
        key.to_owned(),
        end_user.unwrap_or("-").to_owned(),
        calls.to_string(),
    ];
    run_json_client("python3", &args).await
}

/// [`run_client`] in this directory, its output parsed as JSON.
pub async fn run_json_client(program: &str, args: &[String]) -> Value {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run_client(program, &args, std::path::Path::new(".")).await;
    serde_json::from_str(&output).unwrap()
}
