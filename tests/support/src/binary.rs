//! The `agenthost` binary under test, started on a free port with a config
//! of the test's making, its log collected.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::Value;

use crate::postgres;

/// The `agenthost` binary cargo built for this test or bench run, which
/// lives beside the `deps` directory the running executable is in.
pub fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("a test knows its own path");
        exe.parent()
            .and_then(Path::parent)
            .expect("tests and benches run from target/<profile>/deps")
            .join("agenthost")
    })
}

/// The target directory: the nearest ancestor of the running executable
/// holding the plugin build, which `host/build.rs` puts in its `plugins/`.
fn target_dir() -> &'static Path {
    static TARGET: OnceLock<PathBuf> = OnceLock::new();
    TARGET.get_or_init(|| {
        let exe = std::env::current_exe().expect("a test knows its own path");
        exe.ancestors()
            .find(|dir| dir.join("plugins").join(WASM_TARGET).is_dir())
            .expect("the plugins were built under the target directory")
            .to_path_buf()
    })
}

const WASM_TARGET: &str = "wasm32-wasip2";

/// Where the build put the plugin components, test fixtures included.
/// Runs `agenthost serve` on a config file of `toml` (its `data_dir` a
/// fresh directory), expects it to refuse to start, and returns its stderr.
pub fn serve_refused(toml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agenthost.toml");
    let toml = format!("data_dir = {:?}\n{toml}", dir.path());
    std::fs::write(&config, toml).unwrap();
    let output = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "it started: {stderr}");
    stderr
}

pub fn plugin_build_dir() -> PathBuf {
    target_dir()
        .join("plugins")
        .join(WASM_TARGET)
        .join("release")
}

/// A compile cache shared by every test, so only the first start compiles.
pub fn shared_cache_dir() -> PathBuf {
    target_dir().join("tmp").join("agenthost-plugin-cache")
}

/// Where a test keeps a file for people to look at after the run
/// (`target/test-artifacts/name`).
pub fn artifact_path(name: &str) -> PathBuf {
    let dir = target_dir().join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A file of `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
}

/// The `[[mcp_servers]]` entry for the built-in demo server.
pub fn demo_server_toml() -> String {
    format!(
        "[[mcp_servers]]\nid = \"demo\"\nname = \"Demo tools\"\ndescription = \"Clock, arithmetic and notes\"\ntransport = \"stdio\"\ncommand = {:?}\nargs = [\"demo-mcp\"]\n",
        bin().display().to_string()
    )
}

/// The `[[mcp_servers]]` entry for the third-party Python FastMCP server.
pub fn fastmcp_server_toml(id: &str) -> String {
    let script = fixture("fastmcp_server.py");
    format!(
        "[[mcp_servers]]\nid = \"{id}\"\nname = \"Python text tools\"\ntransport = \"stdio\"\ncommand = \"python3\"\nargs = [{:?}]\ntimeout = 20\n",
        script.display().to_string()
    )
}

/// The real binary, started on a free port with a config of our making.
pub struct Agenthost {
    child: Child,
    pub base: String,
    logs: Arc<Mutex<String>>,
    /// Sent as `x-api-key` by the request helpers below.
    key: Option<String>,
    /// Where it keeps its data: an SQLite directory, or a PostgreSQL URL.
    data: Data,
    _dir: tempfile::TempDir,
}

/// Where a host keeps its data.
#[derive(Clone, Debug)]
enum Data {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Agenthost {
    /// Starts with `config` (TOML) written to a file; `data_dir` defaults
    /// to the shared test cache.
    pub fn start(config: &str) -> Agenthost {
        Self::start_with_env(config, &[])
    }

    /// [`start`](Self::start), with extra environment variables.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Agenthost {
        Self::start_binary(bin(), config, env)
    }

    /// [`start_with_env`](Self::start_with_env) of another `agenthost`
    /// binary, such as an earlier build to compare against.
    pub fn start_binary(binary: &Path, config: &str, env: &[(&str, &str)]) -> Agenthost {
        let dir = tempfile::tempdir().unwrap();
        // Tests share compiled plugins, unless one brings its own cache,
        // but never a database.
        let cache = if config.contains("cache_dir") {
            String::new()
        } else {
            format!(
                "cache_dir = {:?}\n",
                shared_cache_dir().display().to_string()
            )
        };
        let data_dir = data_dir_in(config).unwrap_or_else(|| dir.path().join("data"));
        let mut config = if config.contains("data_dir") {
            format!("{cache}{config}")
        } else {
            let data = data_dir.display().to_string();
            format!("{cache}data_dir = {data:?}\n{config}")
        };
        // A suite run on PostgreSQL: a database per data directory, so a
        // host restarted on the same data finds it again.
        let data = match database_url_in(&config) {
            Some(url) => Data::Postgres(url),
            None if postgres::postgres_backend() => {
                let url = postgres::database(&data_dir.display().to_string());
                config = format!("database_url = {url:?}\n{config}");
                Data::Postgres(url)
            }
            None => Data::Sqlite(data_dir),
        };
        let path = dir.path().join("agenthost.toml");
        std::fs::write(&path, config).unwrap();
        let mut command = Command::new(binary);
        command.arg("serve").arg("--config").arg(&path);
        let mut host = Self::spawn(command, dir, env);
        host.data = data;
        host
    }

    /// What the host keeps at rest, as bytes: its SQLite files, or a dump
    /// of its PostgreSQL database. For looking for what must not be there
    /// in the clear.
    pub fn data_at_rest(&self) -> Vec<u8> {
        match &self.data {
            Data::Postgres(url) => postgres::dump(url),
            Data::Sqlite(dir) => ["agenthost.db", "agenthost.db-wal"]
                .iter()
                .flat_map(|file| std::fs::read(dir.join(file)).unwrap_or_default())
                .collect(),
        }
    }

    /// Starts with no config file at all, as a newcomer would.
    pub fn start_with_defaults() -> Agenthost {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(bin());
        command.arg("serve");
        Self::spawn(command, dir, &[])
    }

    /// Runs with the provider variables of the developer's shell removed,
    /// then `env` added.
    fn spawn(mut command: Command, dir: tempfile::TempDir, env: &[(&str, &str)]) -> Agenthost {
        command
            .args(["--listen", "127.0.0.1:0"])
            .current_dir(dir.path())
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("ANTHROPIC_BASE_URL")
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Self::spawn_command(command, dir)
    }

    pub fn spawn_command(mut command: Command, dir: tempfile::TempDir) -> Agenthost {
        let mut child = command.spawn().expect("agenthost starts");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    // The address ends where the text or JSON line goes on.
                    let address = rest
                        .split(|c: char| !(c.is_ascii_alphanumeric() || ".:[]".contains(c)))
                        .next()
                        .unwrap_or_default();
                    let _ = port_tx.send(address.to_owned());
                }
                let mut logs = sink.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let addr = match port_rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("agenthost did not start; logs:\n{}", logs.lock().unwrap());
            }
        };
        let data = Data::Sqlite(dir.path().join("data"));
        Agenthost {
            child,
            base: format!("http://{addr}"),
            logs,
            key: None,
            data,
            _dir: dir,
        }
    }

    /// Makes the request helpers send `key`, for tests of keyed mode whose
    /// subject is not who is calling.
    pub fn with_key(mut self, key: &str) -> Agenthost {
        self.key = Some(key.to_owned());
        self
    }

    /// A request to `path` with this host's key, if it has one.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = client().request(method, self.url(path));
        match &self.key {
            Some(key) => request.header("x-api-key", key),
            None => request,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) {
        unsafe_kill(self.child.id(), "TERM");
        let _ = self.child.wait();
    }

    /// Sends `signal` (`TERM`, `INT`...) and returns at once.
    pub fn signal(&self, signal: &str) {
        unsafe_kill(self.child.id(), signal);
    }

    /// The exit status, once the process has exited within `limit`.
    pub fn exit_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub async fn post(&self, path: &str, body: &str) -> (StatusCode, String) {
        let response = self
            .request(reqwest::Method::POST, path)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (response.status(), crate::body_text(response).await)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    /// `DELETE path`, with `key` (else this host's) as `x-api-key`; the
    /// body as JSON.
    pub async fn delete(&self, path: &str, key: Option<&str>) -> (StatusCode, Value) {
        let request = match key {
            Some(key) => client().delete(self.url(path)).header("x-api-key", key),
            None => self.request(reqwest::Method::DELETE, path),
        };
        let response = request.send().await.unwrap();
        (
            response.status(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    pub async fn post_json(&self, path: &str, body: &str) -> (StatusCode, Value) {
        let (status, text) = self.post(path, body).await;
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
        )
    }
}

impl Drop for Agenthost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

/// The `data_dir` a test's config names, if it names one.
fn data_dir_in(config: &str) -> Option<PathBuf> {
    top_level_string(config, "data_dir").map(PathBuf::from)
}

fn database_url_in(config: &str) -> Option<String> {
    top_level_string(config, "database_url")
}

/// A quoted top-level value of a test's config, such as
/// `data_dir = "/tmp/x"`.
fn top_level_string(config: &str, key: &str) -> Option<String> {
    config.lines().find_map(|line| {
        let rest = line.trim().strip_prefix(key)?.trim().strip_prefix('=')?;
        serde_json::from_str::<String>(rest.trim()).ok()
    })
}

/// An HTTP client that sends its bodies as JSON, as the seed contracts
/// ask; a test that means to send something else says so.
pub fn client() -> reqwest::Client {
    // reqwest is built without a default TLS crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let json = reqwest::header::HeaderValue::from_static("application/json");
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .default_headers(
            [(reqwest::header::CONTENT_TYPE, json)]
                .into_iter()
                .collect(),
        )
        .build()
        .unwrap()
}
