//! Compiles the guest plugins in `plugins/` to wasm32-wasip2 components so
//! that the built-in ones can be embedded in the binary and the test
//! fixtures are available to the tests.
//!
//! A nested cargo with its own target directory avoids contending for the
//! outer build's lock; the variables cargo sets for build scripts are
//! removed so they do not leak host-target settings into the wasm build.

use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("host/ lives inside the workspace");
    let plugins = root.join("plugins");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("plugins");

    // Relative to the package, so a checkout moved to another directory
    // and built into the same target directory still watches its own
    // files, not those of the path it was first built at.
    watch(Path::new("../plugins"));
    watch(Path::new("../wit"));

    let output = Command::new(env("CARGO"))
        .args(["build", "--release", "--workspace", "--target", WASM_TARGET])
        .arg("--manifest-path")
        .arg(plugins.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("cargo can be run from a build script");
    if !output.status.success() {
        panic!(
            "building the plugins for {WASM_TARGET} failed (is the target installed? \
             `rustup target add {WASM_TARGET}`):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let built = target_dir.join(WASM_TARGET).join("release");
    println!(
        "cargo:rustc-env=AGENTHOST_PLUGIN_BUILD_DIR={}",
        built.display()
    );
}

/// Reruns this script when a source file changes; build output that a
/// developer's own cargo run may leave in `target/` is not watched.
fn watch(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name != "target") {
                watch(&path);
            }
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name} for build scripts"))
}
