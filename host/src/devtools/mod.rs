//! `agenthost plugin ...`: the plugin developer's tools.
//!
//! `check` and `test` load the component exactly as the server would
//! (same sandbox, limits and checks), so a plugin that passes here loads
//! there, and one that is refused here is refused with the same message.

mod conformance;
mod scaffold;

use std::path::Path;

pub use conformance::test;
pub use scaffold::{Kind, new};

use crate::mcp::{ComponentHost, ServerCheck};
use crate::plugins::{Checked, PluginFailure, PluginRuntime, SandboxLimits, kind_name};

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error(transparent)]
    Plugin(#[from] PluginFailure),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("{failed} of {total} conformance checks failed")]
    Failed { failed: usize, total: usize },
}

/// A runtime with the server's default limits, no compile cache and no
/// built-ins: `check` and `test` never register what they load.
fn runtime() -> Result<PluginRuntime, DevError> {
    let limits = SandboxLimits::from_config(&crate::config::Limits::default());
    Ok(PluginRuntime::empty(limits, None)?)
}

fn read(path: &Path) -> Result<Vec<u8>, DevError> {
    std::fs::read(path).map_err(|source| DevError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Loads the component as the server would and describes it: as an MCP
/// server when it is a `wasi:cli` command, else as a plugin.
pub async fn check(path: &Path) -> Result<String, DevError> {
    let wasm = read(path)?;
    let servers = ComponentHost::new(Default::default(), None);
    let refused = |reason| PluginFailure::Load {
        origin: path.display().to_string(),
        reason,
    };
    if let Some(server) = servers.check(&wasm).map_err(refused)? {
        return Ok(describe_server(&server));
    }
    let checked = runtime()?.check(&path.display().to_string(), &wasm).await?;
    Ok(describe(&checked))
}

fn describe_server(server: &ServerCheck) -> String {
    let grants = match server.grants.as_slice() {
        [] => "none needed".to_owned(),
        grants => grants.join("\n             "),
    };
    format!(
        "kind:        MCP server (a wasi:cli command, for transport = \"wasm\")\nimports:     {}\ngrants:      {grants}\nresult:      the host can run it\n",
        server.imports.join(", ")
    )
}

fn describe(checked: &Checked) -> String {
    let meta = &checked.metadata;
    let imports = if checked.imports.is_empty() {
        "none".to_owned()
    } else {
        checked.imports.join(", ")
    };
    format!(
        "name:        {}\nkind:        {}\nversion:     {}\ndescription: {}\ncontract:    {}\nimports:     {imports}\nresult:      the host loads it\n",
        meta.name,
        kind_name(meta.kind),
        meta.version,
        meta.description,
        checked.contract
    )
}
