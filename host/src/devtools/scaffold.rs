//! `agenthost plugin new`: a plugin crate that builds on its own,
//! anywhere. The SDK and the WIT contract this binary speaks are written
//! beside it (they are embedded here), so the new crate needs nothing
//! from this repository and always matches the host that made it.

use std::path::{Path, PathBuf};

use super::DevError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Encoder,
    Provider,
}

const SDK_FILES: &[(&str, &str)] = &[
    (
        "src/lib.rs",
        include_str!("../../../plugins/sdk/src/lib.rs"),
    ),
    (
        "src/bindings.rs",
        include_str!("../../../plugins/sdk/src/bindings.rs"),
    ),
    (
        "src/encoder.rs",
        include_str!("../../../plugins/sdk/src/encoder.rs"),
    ),
    (
        "src/provider.rs",
        include_str!("../../../plugins/sdk/src/provider.rs"),
    ),
    (
        "src/json.rs",
        include_str!("../../../plugins/sdk/src/json.rs"),
    ),
    (
        "src/lines.rs",
        include_str!("../../../plugins/sdk/src/lines.rs"),
    ),
    (
        "src/tool_result.rs",
        include_str!("../../../plugins/sdk/src/tool_result.rs"),
    ),
    ("wit/plugin.wit", include_str!("../../../wit/plugin.wit")),
];

/// The plugins' workspace manifest: the SDK's dependencies come from
/// here, so a new plugin builds with the versions the built-ins use.
const PLUGINS_MANIFEST: &str = include_str!("../../../plugins/Cargo.toml");

/// The workspace dependencies the SDK crate uses.
const SDK_DEPENDENCIES: &[&str] = &["serde", "serde_json", "wit-bindgen"];

/// The SDK crate's manifest, with the workspace's versions of its
/// dependencies.
fn sdk_manifest() -> Result<String, DevError> {
    let workspace: toml::Table = toml::from_str(PLUGINS_MANIFEST)
        .map_err(|e| DevError::Usage(format!("the embedded plugins manifest is invalid: {e}")))?;
    let dependencies = workspace
        .get("workspace")
        .and_then(|w| w.get("dependencies"));
    let mut manifest = String::from(
        "[package]\nname = \"agenthost-plugin\"\nversion = \"0.1.0\"\nedition = \"2024\"\ndescription = \"The agenthost plugin SDK, as shipped by the agenthost that created this plugin\"\n\n[dependencies]\n",
    );
    for name in SDK_DEPENDENCIES {
        let version = dependencies.and_then(|d| d.get(*name)).ok_or_else(|| {
            DevError::Usage(format!(
                "the embedded plugins manifest names no workspace `{name}`"
            ))
        })?;
        manifest.push_str(&format!("{name} = {version}\n"));
    }
    Ok(manifest)
}

const ENCODER_TEMPLATE: &str = include_str!("templates/encoder.rs");
const PROVIDER_TEMPLATE: &str = include_str!("templates/provider.rs");

/// Creates `dir/name`, a plugin crate of the given kind, and returns the
/// command that builds it.
pub fn new(name: &str, kind: Kind, dir: &Path) -> Result<String, DevError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(DevError::Usage(format!(
            "plugin name `{name}`: use lowercase letters, digits and `-`, starting with a letter"
        )));
    }
    let root = dir.join(name);
    if root.exists() {
        return Err(DevError::Usage(format!(
            "{} already exists; choose another name or directory",
            root.display()
        )));
    }
    let crate_name = name.replace('-', "_");
    let template = match kind {
        Kind::Encoder => ENCODER_TEMPLATE,
        Kind::Provider => PROVIDER_TEMPLATE,
    };
    let manifest = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nagenthost-plugin = {{ path = \"sdk\" }}\n\n[profile.release]\nopt-level = \"s\"\nlto = true\ncodegen-units = 1\npanic = \"abort\"\nstrip = true\n\n# A crate of its own, wherever it is created.\n[workspace]\n"
    );
    let mut files: Vec<(PathBuf, String)> = vec![
        (root.join("Cargo.toml"), manifest),
        (
            root.join(".cargo/config.toml"),
            "[build]\ntarget = \"wasm32-wasip2\"\n".into(),
        ),
        (root.join(".gitignore"), "/target\n".into()),
        (root.join("src/lib.rs"), template.replace("{{name}}", name)),
        (root.join("sdk/Cargo.toml"), sdk_manifest()?),
    ];
    files.extend(
        SDK_FILES
            .iter()
            .map(|(path, text)| (root.join("sdk").join(path), (*text).to_owned())),
    );
    for (path, text) in files {
        let write = |source| DevError::Write {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write)?;
        }
        std::fs::write(&path, text).map_err(write)?;
    }
    Ok(format!(
        "created {root}\n\nbuild:  cd {root} && cargo build --release\nthen:   agenthost plugin test {root}/target/wasm32-wasip2/release/{crate_name}.wasm\n",
        root = root.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_manifest_takes_its_dependencies_from_the_plugins_workspace() {
        let manifest: toml::Table = toml::from_str(&sdk_manifest().unwrap()).unwrap();
        let workspace: toml::Table = toml::from_str(PLUGINS_MANIFEST).unwrap();
        for name in SDK_DEPENDENCIES {
            assert_eq!(
                manifest["dependencies"][*name],
                workspace["workspace"]["dependencies"][*name]
            );
        }
        assert_eq!(
            manifest["package"]["name"].as_str(),
            Some("agenthost-plugin")
        );
    }
}
