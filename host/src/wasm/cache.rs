//! Compiled components cached on disk by content hash.
//!
//! Compiling a component with Cranelift takes hundreds of milliseconds;
//! loading precompiled code takes microseconds. The key covers the
//! component's bytes and the engine's compatibility hash, so a new
//! wasmtime or different engine settings never load stale code.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

pub struct CompileCache {
    dir: Option<PathBuf>,
}

impl CompileCache {
    /// A cache in `dir`; with `None`, every load compiles.
    pub fn new(dir: Option<PathBuf>) -> CompileCache {
        if let Some(dir) = &dir
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            tracing::warn!(
                "compile cache disabled: cannot create {}: {e}",
                dir.display()
            );
            return CompileCache { dir: None };
        }
        CompileCache { dir }
    }

    pub fn load(&self, engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Component> {
        let Some(dir) = &self.dir else {
            return Component::new(engine, wasm);
        };
        let path = dir.join(format!("{}.cwasm", cache_key(engine, wasm)));
        if path.exists() {
            // SAFETY: only this process writes the cache directory, and the
            // file name binds the contents to this engine's configuration.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!("recompiling {}: {e}", path.display()),
            }
        }
        let compiled = engine.precompile_component(wasm)?;
        if let Err(e) = write_atomically(&path, &compiled) {
            tracing::warn!("cannot cache compiled component at {}: {e}", path.display());
        }
        // SAFETY: `compiled` was produced just now by this engine.
        unsafe { Component::deserialize(engine, &compiled) }
    }
}

fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut engine_hash = DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let digest = Sha256::digest(wasm);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}-{:016x}", engine_hash.finish())
}

/// Writes through a temporary file so a crash never leaves a torn entry.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid component.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

    fn cached_files(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    #[test]
    fn a_second_load_uses_the_cache_and_a_damaged_entry_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        CompileCache::new(Some(dir.path().into()))
            .load(&engine, EMPTY_COMPONENT)
            .unwrap();
        let files = cached_files(dir.path());
        assert_eq!(files.len(), 1);
        let written = std::fs::metadata(&files[0]).unwrap().modified().unwrap();

        // A restart: a new cache over the same directory. Compiling would
        // rewrite the file; loading from the cache leaves it untouched.
        CompileCache::new(Some(dir.path().into()))
            .load(&engine, EMPTY_COMPONENT)
            .unwrap();
        assert_eq!(cached_files(dir.path()), files);
        assert_eq!(
            std::fs::metadata(&files[0]).unwrap().modified().unwrap(),
            written
        );

        std::fs::write(&files[0], b"damaged").unwrap();
        CompileCache::new(Some(dir.path().into()))
            .load(&engine, EMPTY_COMPONENT)
            .unwrap();
        assert_ne!(std::fs::read(&files[0]).unwrap(), b"damaged");
    }
}
