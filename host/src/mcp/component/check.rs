//! What `agenthost plugin check` says of a component server: whether this
//! host can run it, what it imports, and which grants those imports are
//! governed by.

use wasmtime::component::Component;
use wasmtime_wasi::p2::bindings::CommandPre;

use super::ComponentHost;

/// The grant that governs each WASI interface a server may import. Other
/// WASI imports (clocks, random, stdio, streams) need none.
const GOVERNED_BY: &[(&str, &str)] = &[
    ("wasi:filesystem/", "grants.dirs (files)"),
    ("wasi:http/", "grants.hosts (outgoing HTTP)"),
    ("wasi:cli/environment", "grants.env (variables)"),
    (
        "wasi:sockets/",
        "none: sockets are always denied (outgoing HTTP goes through wasi:http)",
    ),
];

/// A component the host can run as an MCP server.
pub struct ServerCheck {
    pub imports: Vec<String>,
    /// What its imports are governed by, each once, in the table's order.
    pub grants: Vec<&'static str>,
}

impl ComponentHost {
    /// Checks `wasm` as a component server: `None` when it is not a
    /// `wasi:cli` command (so not meant as one), an error when it is but
    /// cannot run here.
    pub fn check(&self, wasm: &[u8]) -> Result<Option<ServerCheck>, String> {
        let runtime = self.runtime()?;
        let component = Component::new(&runtime.engine, wasm)
            .map_err(|e| format!("not a valid WebAssembly component: {e}"))?;
        let ty = component.component_type();
        if !ty
            .exports(&runtime.engine)
            .any(|(name, _)| name.starts_with("wasi:cli/run@"))
        {
            return Ok(None);
        }
        let imports: Vec<String> = ty
            .imports(&runtime.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        runtime
            .linker
            .instantiate_pre(&component)
            .and_then(CommandPre::new)
            .map_err(|e| format!("it cannot run as an MCP server here: {e}"))?;
        Ok(Some(ServerCheck {
            grants: governing(&imports),
            imports,
        }))
    }
}

fn governing(imports: &[String]) -> Vec<&'static str> {
    GOVERNED_BY
        .iter()
        .filter(|(prefix, _)| imports.iter().any(|i| i.starts_with(prefix)))
        .map(|(_, grant)| *grant)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_governed_import_names_its_grant_once() {
        let imports = [
            "wasi:io/streams@0.2.6",
            "wasi:filesystem/types@0.2.6",
            "wasi:filesystem/preopens@0.2.6",
            "wasi:http/outgoing-handler@0.2.6",
        ]
        .map(String::from);
        assert_eq!(
            governing(&imports),
            ["grants.dirs (files)", "grants.hosts (outgoing HTTP)"]
        );
        assert!(governing(&["wasi:clocks/monotonic-clock@0.2.6".into()]).is_empty());
    }
}
