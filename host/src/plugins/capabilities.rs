//! What a plugin may import. Capabilities are granted, never ambient:
//! what Rust's `wasm32-wasip2` std needs to start (clocks, random, the
//! `wasi:cli` environment, exit and standard streams, `wasi:io`) is
//! linked, and the environment, arguments and streams are empty. A
//! component importing anything else (a filesystem, sockets, HTTP) is
//! refused at load, by name, rather than failing later at a call.

/// Interfaces granted, by package and interface name without version.
const GRANTED: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "agenthost:plugin/types",
];

/// `wasi:filesystem/types@0.2.3` is granted if `wasi:filesystem/types` is.
pub fn is_granted(import: &str) -> bool {
    let unversioned = import.split('@').next().unwrap_or(import);
    GRANTED.contains(&unversioned)
}

pub fn refusal(import: &str) -> String {
    let what = match import.split(['/', '@']).next().unwrap_or(import) {
        "wasi:filesystem" => "a filesystem",
        "wasi:sockets" => "network sockets",
        "wasi:http" => "outgoing HTTP",
        _ => "a capability",
    };
    format!(
        "it imports {import} ({what}), which the host does not grant: plugins get no filesystem, network or environment"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_only_what_std_needs() {
        assert!(is_granted("wasi:io/streams@0.2.6"));
        assert!(is_granted("wasi:cli/environment@0.2.0"));
        assert!(!is_granted("wasi:filesystem/preopens@0.2.6"));
        assert!(!is_granted("wasi:sockets/tcp@0.2.6"));
        assert!(refusal("wasi:sockets/tcp@0.2.6").contains("(network sockets)"));
    }
}
