//! The WebAssembly plugin runtime: loading, limits and typed calls.
//!
//! Every provider adapter and stream format is a component implementing a
//! world of `wit/plugin.wit`. The built-in ones are embedded in the binary;
//! more are loaded from the plugins directory. Each response gets its own
//! instance (see [`instance`]), so a plugin that traps, overruns its
//! deadline or its memory cap fails only the response that used it.

mod bindings;
mod builtin;
mod cache;
mod instance;
mod sandbox;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub use bindings::*;
pub use instance::{EncoderInstance, ProviderInstance};
pub use sandbox::SandboxLimits;

use bindings::encoder::EncoderPre;
use bindings::provider::ProviderPre;
use cache::CompileCache;
use sandbox::{PluginState, Sandbox};

#[derive(Debug, thiserror::Error)]
pub enum PluginFailure {
    #[error("cannot start the plugin runtime: {0}")]
    Runtime(String),
    #[error("refused plugin {origin}: {reason}")]
    Load { origin: String, reason: String },
    #[error("no {kind} plugin named `{name}` is loaded (loaded: {available})")]
    Unknown {
        kind: &'static str,
        name: String,
        available: String,
    },
    #[error("plugin `{plugin}` exceeded its {ms} ms deadline and was stopped")]
    Timeout { plugin: String, ms: u128 },
    #[error("plugin `{plugin}` crashed: {message}")]
    Trap { plugin: String, message: String },
    #[error("plugin `{plugin}` failed: {message}")]
    Reported { plugin: String, message: String },
}

pub struct ProviderPlugin {
    pub metadata: PluginMetadata,
    pre: ProviderPre<PluginState>,
    sandbox: Arc<Sandbox>,
}

pub struct EncoderPlugin {
    pub metadata: PluginMetadata,
    pub info: EncoderInfo,
    pre: EncoderPre<PluginState>,
    sandbox: Arc<Sandbox>,
}

pub struct PluginRuntime {
    sandbox: Arc<Sandbox>,
    cache: CompileCache,
    providers: RwLock<BTreeMap<String, Arc<ProviderPlugin>>>,
    encoders: RwLock<BTreeMap<String, Arc<EncoderPlugin>>>,
}

impl PluginRuntime {
    /// A runtime with the built-in plugins loaded. `cache_dir` holds
    /// compiled code between runs.
    pub fn new(
        limits: SandboxLimits,
        cache_dir: Option<PathBuf>,
    ) -> Result<PluginRuntime, PluginFailure> {
        let sandbox = Sandbox::new(limits).map_err(|e| PluginFailure::Runtime(format!("{e:#}")))?;
        let runtime = PluginRuntime {
            sandbox: Arc::new(sandbox),
            cache: CompileCache::new(cache_dir),
            providers: RwLock::default(),
            encoders: RwLock::default(),
        };
        for (file, wasm) in builtin::BUILTINS {
            runtime.load(&format!("built-in {file}"), wasm)?;
        }
        Ok(runtime)
    }

    /// Loads every `.wasm` file in `dir`. A missing directory is not an
    /// error; a component that is refused is reported and skipped, so one
    /// bad file never keeps the server from starting.
    pub fn load_dir(&self, dir: &Path) -> Vec<(PathBuf, Result<PluginMetadata, PluginFailure>)> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == "wasm"))
            .collect();
        paths.sort();
        paths
            .into_iter()
            .map(|path| {
                let origin = path.display().to_string();
                let result = std::fs::read(&path)
                    .map_err(|e| PluginFailure::Load {
                        origin: origin.clone(),
                        reason: e.to_string(),
                    })
                    .and_then(|wasm| self.load(&origin, &wasm));
                (path, result)
            })
            .collect()
    }

    /// Compiles (or loads from cache), checks the world and registers one
    /// component under the name its metadata gives.
    pub fn load(&self, origin: &str, wasm: &[u8]) -> Result<PluginMetadata, PluginFailure> {
        let refuse = |reason: String| PluginFailure::Load {
            origin: origin.into(),
            reason,
        };
        let engine = self.sandbox.engine();
        let component = self
            .cache
            .load(engine, wasm)
            .map_err(|e| refuse(format!("not a valid WebAssembly component: {e:#}")))?;
        let exports: Vec<String> = component
            .component_type()
            .exports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let is_provider = exports.iter().any(|e| e == PROVIDER_EXPORT);
        let is_encoder = exports.iter().any(|e| e == ENCODER_EXPORT);
        if !is_provider && !is_encoder {
            return Err(refuse(describe_unknown_world(&exports)));
        }
        let instance_pre = self
            .sandbox
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| refuse(format!("it imports what the host does not grant: {e:#}")))?;
        if is_provider {
            let pre = ProviderPre::new(instance_pre).map_err(|e| {
                refuse(format!("its exports do not match {PROVIDER_EXPORT}: {e:#}"))
            })?;
            let mut probe = ProviderInstance::new(origin, &pre, &self.sandbox)?;
            let metadata = probe.metadata()?;
            expect_kind(&metadata, PluginKind::Provider).map_err(refuse)?;
            let plugin = ProviderPlugin {
                metadata: metadata.clone(),
                pre,
                sandbox: self.sandbox.clone(),
            };
            insert(&self.providers, &metadata.name, plugin).map_err(refuse)?;
            Ok(metadata)
        } else {
            let pre = EncoderPre::new(instance_pre)
                .map_err(|e| refuse(format!("its exports do not match {ENCODER_EXPORT}: {e:#}")))?;
            let (metadata, info) = EncoderInstance::describe(origin, &pre, &self.sandbox)?;
            expect_kind(&metadata, PluginKind::Encoder).map_err(refuse)?;
            let plugin = EncoderPlugin {
                metadata: metadata.clone(),
                info,
                pre,
                sandbox: self.sandbox.clone(),
            };
            insert(&self.encoders, &metadata.name, plugin).map_err(refuse)?;
            Ok(metadata)
        }
    }

    pub fn provider(&self, name: &str) -> Result<Arc<ProviderPlugin>, PluginFailure> {
        lookup(&self.providers, "provider", name)
    }

    pub fn encoder(&self, name: &str) -> Result<Arc<EncoderPlugin>, PluginFailure> {
        lookup(&self.encoders, "encoder", name)
    }

    /// Every loaded plugin's metadata, providers first.
    pub fn list(&self) -> Vec<PluginMetadata> {
        let mut all: Vec<PluginMetadata> = read(&self.providers)
            .values()
            .map(|p| p.metadata.clone())
            .collect();
        all.extend(read(&self.encoders).values().map(|e| e.metadata.clone()));
        all
    }
}

impl ProviderPlugin {
    /// A fresh instance for one chat request.
    pub fn instantiate(&self) -> Result<ProviderInstance, PluginFailure> {
        ProviderInstance::new(&self.metadata.name, &self.pre, &self.sandbox)
    }
}

impl EncoderPlugin {
    /// A fresh instance holding the encoder for one response.
    pub fn instantiate(&self, options: &StreamOptions) -> Result<EncoderInstance, PluginFailure> {
        EncoderInstance::new(&self.metadata.name, &self.pre, &self.sandbox, options)
    }
}

fn describe_unknown_world(exports: &[String]) -> String {
    let ours: Vec<&String> = exports
        .iter()
        .filter(|e| e.starts_with("agenthost:plugin/"))
        .collect();
    if !ours.is_empty() {
        return format!(
            "it was built against a WIT version this host does not support (it exports {}); \
             this host supports {PROVIDER_EXPORT} and {ENCODER_EXPORT}",
            join(ours.iter().map(|s| s.as_str()))
        );
    }
    format!(
        "it exports neither {PROVIDER_EXPORT} (a provider) nor {ENCODER_EXPORT} (an encoder); \
         it exports: {}",
        if exports.is_empty() {
            "nothing".into()
        } else {
            join(exports.iter().map(String::as_str))
        }
    )
}

fn expect_kind(metadata: &PluginMetadata, kind: PluginKind) -> Result<(), String> {
    if metadata.kind != kind {
        return Err(format!(
            "its metadata says {:?} but it implements the {kind:?} world",
            metadata.kind
        ));
    }
    if metadata.name.is_empty() {
        return Err("its metadata has an empty name".into());
    }
    Ok(())
}

fn insert<T>(map: &RwLock<BTreeMap<String, Arc<T>>>, name: &str, plugin: T) -> Result<(), String> {
    let mut map = map.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    if map.contains_key(name) {
        return Err(format!("a plugin named `{name}` is already loaded"));
    }
    map.insert(name.to_owned(), Arc::new(plugin));
    Ok(())
}

fn lookup<T>(
    map: &RwLock<BTreeMap<String, Arc<T>>>,
    kind: &'static str,
    name: &str,
) -> Result<Arc<T>, PluginFailure> {
    let map = read(map);
    map.get(name)
        .cloned()
        .ok_or_else(|| PluginFailure::Unknown {
            kind,
            name: name.to_owned(),
            available: join(map.keys().map(String::as_str)),
        })
}

fn read<T>(
    map: &RwLock<BTreeMap<String, Arc<T>>>,
) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<T>>> {
    map.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn join<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests;
