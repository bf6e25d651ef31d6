//! The dependency direction `lib.rs` states, checked on every test run: a
//! module that reaches past its layer fails here, naming the file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and the modules it may use.
const ALLOWED: &[(&str, &[&str])] = &[
    ("config", &[]),
    ("timestamp", &[]),
    ("metrics", &[]),
    ("sealing", &[]),
    ("demo_mcp", &[]),
    ("wasm", &[]),
    ("auth", &["config"]),
    ("store", &["config", "metrics", "timestamp"]),
    ("plugins", &["config", "metrics", "wasm"]),
    ("devtools", &["config", "mcp", "plugins"]),
    ("traces", &["config", "plugins"]),
    ("mcp", &["config", "timestamp", "wasm"]),
    (
        "dispatch",
        &["auth", "mcp", "metrics", "store", "timestamp", "traces"],
    ),
    ("usage", &["auth", "store", "timestamp"]),
    (
        "connections",
        &["config", "mcp", "sealing", "store", "timestamp"],
    ),
    (
        "registry",
        &["auth", "config", "mcp", "metrics", "sealing", "store"],
    ),
    (
        "agent",
        &[
            "auth", "config", "dispatch", "mcp", "metrics", "plugins", "traces", "usage",
        ],
    ),
    (
        "chat",
        &[
            "agent",
            "auth",
            "config",
            "connections",
            "dispatch",
            "mcp",
            "metrics",
            "plugins",
            "store",
            "timestamp",
        ],
    ),
    (
        "http",
        &[
            "auth",
            "chat",
            "config",
            "connections",
            "metrics",
            "registry",
            "usage",
        ],
    ),
    (
        "server",
        &[
            "agent",
            "auth",
            "chat",
            "config",
            "connections",
            "dispatch",
            "http",
            "mcp",
            "metrics",
            "plugins",
            "registry",
            "sealing",
            "store",
            "traces",
            "usage",
        ],
    ),
];

/// Files allowed more than their module: the operator's plugin routes,
/// and the state that holds the runtime for them.
const ALSO_ALLOWED: &[(&str, &[&str])] = &[
    ("http/admin.rs", &["plugins"]),
    ("http/mod.rs", &["plugins"]),
];

#[test]
fn modules_only_use_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut violations = Vec::new();
    let mut seen = BTreeSet::new();
    for file in rust_files(&src) {
        let relative = file.strip_prefix(&src).unwrap_or(&file);
        let relative = relative.to_string_lossy().replace('\\', "/");
        let module = relative
            .split('/')
            .next()
            .unwrap_or_default()
            .trim_end_matches(".rs")
            .to_owned();
        if ["lib", "main", "layering"].contains(&module.as_str()) {
            continue;
        }
        let Some(permitted) = allowed.get(module.as_str()) else {
            violations.push(format!(
                "{relative}: module `{module}` has no entry in ALLOWED"
            ));
            continue;
        };
        seen.insert(module.clone());
        let extra = ALSO_ALLOWED
            .iter()
            .find(|(path, _)| *path == relative)
            .map_or(&[][..], |(_, extra)| *extra);
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for used in used_modules(&text) {
            if used != module
                && !permitted.contains(&used.as_str())
                && !extra.contains(&used.as_str())
            {
                violations.push(format!("{relative}: `{module}` uses `crate::{used}`"));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    assert!(seen.len() >= 15, "the check found the modules: {seen:?}");
}

#[test]
fn the_check_sees_grouped_and_nested_paths_but_not_comments() {
    let text = "use crate::{auth::Caller, mcp::{self, X}};\n\
                // crate::http is only mentioned here\n\
                /// see `crate::store`\n\
                let x = crate::plugins::f();\n";
    assert_eq!(
        used_modules(text),
        BTreeSet::from(["auth".to_owned(), "mcp".to_owned(), "plugins".to_owned()])
    );
}

/// The top-level modules a file names as `crate::module`, outside comments.
fn used_modules(text: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let code: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = closing_brace(group);
            for item in split_top_level(&group[..end]) {
                used.insert(leading_ident(item));
            }
        } else {
            used.insert(leading_ident(rest));
        }
    }
    used.remove("");
    used
}

/// Where the group that `text` starts inside ends.
fn closing_brace(text: &str) -> usize {
    let mut depth = 0;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    text.len()
}

/// The comma-separated items of a group, nested groups kept whole.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&text[start..]);
    items
}

fn leading_ident(text: &str) -> String {
    text.trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}
