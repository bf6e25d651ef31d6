//! What a plugin may import. Capabilities are granted, never ambient.
//!
//! Language runtimes import WASI interfaces at start whether or not the
//! plugin uses them (Rust's std imports `wasi:cli` and `wasi:io`; CPython
//! also imports `wasi:filesystem` and `wasi:sockets`). Those packages are
//! linked, but inert: no directory is preopened, every socket operation
//! is denied, and environment, arguments and standard input are empty. So
//! such a plugin loads, and can reach no file and no network. Anything
//! else (`wasi:http`, an unknown package) is refused at load, by name,
//! rather than failing later at a call.

/// Packages linked (inert where they could reach the outside), and ours.
const LINKED: &[&str] = &[
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
    "agenthost:plugin/types@",
];

pub fn is_granted(import: &str) -> bool {
    LINKED.iter().any(|prefix| import.starts_with(prefix))
}

pub fn refusal(import: &str) -> String {
    let what = match import.split(['/', '@']).next().unwrap_or(import) {
        "wasi:http" => "outgoing HTTP",
        "agenthost:plugin" => "an agenthost interface of another contract version",
        _ => "an interface this host does not provide",
    };
    format!(
        "it imports {import} ({what}), which the host does not grant: plugins get no network and no files"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_wasi_inertly_and_refuses_the_rest() {
        assert!(is_granted("wasi:io/streams@0.2.6"));
        assert!(is_granted("wasi:filesystem/preopens@0.2.9"));
        assert!(is_granted("agenthost:plugin/types@0.1.0"));
        assert!(!is_granted("wasi:http/outgoing-handler@0.2.6"));
        assert!(!is_granted("acme:tools/shell"));
        assert!(refusal("wasi:http/types@0.2.6").contains("(outgoing HTTP)"));
    }
}
