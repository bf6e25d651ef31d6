//! The WebAssembly plugin runtime: loading, limits and typed calls.
//!
//! Every provider adapter and stream format is a component implementing a
//! world of `wit/plugin.wit`. The built-in ones are embedded in the binary;
//! more are loaded from the plugins directory. Each stream holds its state
//! in one of a few instances its plugin keeps (see [`shared`]), so a
//! plugin that traps, overruns its deadline or its memory cap fails only
//! the streams that instance held.

mod api;
mod bindings;
mod builtin;
mod capabilities;
mod instance;
mod sandbox;
mod shared;
mod v0_1;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub use bindings::*;
pub use instance::{EncoderInstance, ProviderInstance};
pub use sandbox::SandboxLimits;

use crate::wasm::CompileCache;
use api::{EncoderApi, EncoderApiPre, ProviderApi, ProviderApiPre, World};
use sandbox::Sandbox;
use shared::InstancePool;

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
    #[error("plugin `{plugin}` crashed while serving another stream; retry")]
    Lost { plugin: String },
    #[error("plugin `{plugin}` failed: {message}")]
    Reported { plugin: String, message: String },
    #[error("plugin `{plugin}` produced more than its {mib} MiB of output and was stopped")]
    Output { plugin: String, mib: usize },
}

pub struct ProviderPlugin {
    pub metadata: PluginMetadata,
    /// `built-in <file>` or the file it was loaded from.
    pub origin: String,
    pre: ProviderApiPre,
    instances: Arc<InstancePool<ProviderApi>>,
}

pub struct EncoderPlugin {
    pub metadata: PluginMetadata,
    pub info: EncoderInfo,
    pub origin: String,
    pre: EncoderApiPre,
    instances: Arc<InstancePool<EncoderApi>>,
}

pub struct PluginRuntime {
    sandbox: Arc<Sandbox>,
    cache: CompileCache,
    providers: RwLock<BTreeMap<String, Arc<ProviderPlugin>>>,
    encoders: RwLock<BTreeMap<String, Arc<EncoderPlugin>>>,
    /// Built-ins that plugins from the plugins directory may replace.
    replaceable: Vec<String>,
    /// The plugins directory.
    dir: Option<PathBuf>,
}

/// A component that passed every check [`PluginRuntime::load`] makes.
pub struct Checked {
    pub metadata: PluginMetadata,
    /// The world's export, with the contract version.
    pub contract: &'static str,
    pub imports: Vec<String>,
    plugin: Loaded,
}

enum Loaded {
    Provider(ProviderPlugin),
    Encoder(EncoderPlugin),
}

impl Checked {
    /// The checked plugin, usable without registering it.
    pub fn provider(&self) -> Option<&ProviderPlugin> {
        match &self.plugin {
            Loaded::Provider(plugin) => Some(plugin),
            Loaded::Encoder(_) => None,
        }
    }

    pub fn encoder(&self) -> Option<&EncoderPlugin> {
        match &self.plugin {
            Loaded::Encoder(plugin) => Some(plugin),
            Loaded::Provider(_) => None,
        }
    }
}

trait Named {
    fn name(&self) -> &str;
    fn origin(&self) -> &str;
}

impl Named for ProviderPlugin {
    fn name(&self) -> &str {
        &self.metadata.name
    }

    fn origin(&self) -> &str {
        &self.origin
    }
}

impl Named for EncoderPlugin {
    fn name(&self) -> &str {
        &self.metadata.name
    }

    fn origin(&self) -> &str {
        &self.origin
    }
}

const BUILTIN_ORIGIN: &str = "built-in ";

impl PluginRuntime {
    /// A runtime with the built-in plugins loaded. `cache_dir` holds
    /// compiled code between runs.
    pub async fn new(
        limits: SandboxLimits,
        cache_dir: Option<PathBuf>,
    ) -> Result<PluginRuntime, PluginFailure> {
        let runtime = Self::empty(limits, cache_dir)?;
        for (file, wasm) in builtin::BUILTINS {
            runtime
                .load(&format!("{BUILTIN_ORIGIN}{file}"), wasm)
                .await?;
        }
        Ok(runtime)
    }

    /// A runtime with nothing loaded, for checking one component the way
    /// the server would without compiling every built-in first.
    pub fn empty(
        limits: SandboxLimits,
        cache_dir: Option<PathBuf>,
    ) -> Result<PluginRuntime, PluginFailure> {
        let sandbox = Sandbox::new(limits).map_err(|e| PluginFailure::Runtime(format!("{e:#}")))?;
        Ok(PluginRuntime {
            sandbox: Arc::new(sandbox),
            cache: CompileCache::new(cache_dir),
            providers: RwLock::default(),
            encoders: RwLock::default(),
            replaceable: Vec::new(),
            dir: None,
        })
    }

    /// Where [`reload`](Self::reload) looks for plugins.
    pub fn watch_dir(&mut self, dir: PathBuf) {
        self.dir = Some(dir);
    }

    /// Loads the plugins directory again: new and changed components are
    /// loaded, broken ones refused while the version already loaded keeps
    /// serving, and responses in flight keep the instance they started with.
    pub async fn reload(&self) -> Vec<(PathBuf, Result<PluginMetadata, PluginFailure>)> {
        let report = match self.dir.as_deref() {
            Some(dir) => self.load_dir(dir).await,
            None => Vec::new(),
        };
        for (path, result) in &report {
            match result {
                Ok(meta) => {
                    tracing::info!(plugin = %meta.name, path = %path.display(), "loaded plugin")
                }
                Err(e) => tracing::error!("{e}"),
            }
        }
        report
    }

    /// [`reload`](Self::reload) on a blocking thread: compiling takes
    /// seconds, which must not stall the requests a worker is serving.
    pub async fn reload_off_workers(
        self: &Arc<Self>,
    ) -> Vec<(PathBuf, Result<PluginMetadata, PluginFailure>)> {
        let runtime = self.clone();
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || handle.block_on(runtime.reload()))
            .await
            .unwrap_or_default()
    }

    /// Loads every `.wasm` file in `dir`. A missing directory is not an
    /// error; a component that is refused is reported and skipped, so one
    /// bad file never keeps the server from starting.
    pub async fn load_dir(
        &self,
        dir: &Path,
    ) -> Vec<(PathBuf, Result<PluginMetadata, PluginFailure>)> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == "wasm"))
            .collect();
        paths.sort();
        let mut report = Vec::with_capacity(paths.len());
        for path in paths {
            let origin = path.display().to_string();
            let result = match std::fs::read(&path) {
                Ok(wasm) => self.load(&origin, &wasm).await,
                Err(e) => Err(PluginFailure::Load {
                    origin,
                    reason: e.to_string(),
                }),
            };
            report.push((path, result));
        }
        report
    }

    /// Compiles (or loads from cache), checks and registers one component
    /// under the name its metadata gives. A name already taken is refused,
    /// unless it is a reload of the same file or a built-in the config
    /// lets plugins replace; the replaced plugin keeps serving the
    /// responses that hold it.
    pub async fn load(&self, origin: &str, wasm: &[u8]) -> Result<PluginMetadata, PluginFailure> {
        let checked = self.check(origin, wasm).await?;
        let metadata = checked.metadata.clone();
        let refuse = |reason: String| PluginFailure::Load {
            origin: origin.into(),
            reason,
        };
        match checked.plugin {
            Loaded::Provider(plugin) => self.install(&self.providers, plugin),
            Loaded::Encoder(plugin) => self.install(&self.encoders, plugin),
        }
        .map_err(refuse)?;
        Ok(metadata)
    }

    /// Everything [`load`](Self::load) checks, without registering: the
    /// component's world, contract version, metadata and imports.
    pub async fn check(&self, origin: &str, wasm: &[u8]) -> Result<Checked, PluginFailure> {
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
        let imports: Vec<String> = component
            .component_type()
            .imports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let Some(world) = World::of(&exports) else {
            return Err(refuse(describe_unknown_world(&exports)));
        };
        if let Some(denied) = imports.iter().find(|name| !capabilities::is_granted(name)) {
            return Err(refuse(capabilities::refusal(denied)));
        }
        let instance_pre = self
            .sandbox
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| refuse(format!("it imports what the host does not grant: {e:#}")))?;
        let mismatch = |e: wasmtime::Error| {
            refuse(format!(
                "its exports do not match {}: {e:#}",
                world.export()
            ))
        };
        // Export types are checked when the probe instantiates it: a
        // component built against an earlier draft of a version still in
        // the making (a type that gained a case since) fails there.
        let stale = |failure: PluginFailure| match failure {
            PluginFailure::Trap { message, .. } if message.contains("type mismatch") => {
                refuse(format!(
                    "its exports do not match {} as this host defines it ({message}); it was \
                     built against an earlier draft of that version: rebuild it against the \
                     host's wit/plugin.wit",
                    world.export()
                ))
            }
            other => other,
        };
        let (metadata, plugin) = match world {
            World::Provider(version) => {
                let pre = ProviderApiPre::new(version, instance_pre).map_err(mismatch)?;
                let probes = InstancePool::probing(origin, self.sandbox.clone());
                let metadata = ProviderInstance::new(&probes, &pre)
                    .await
                    .map_err(stale)?
                    .metadata()
                    .await?;
                expect_kind(&metadata, PluginKind::Provider).map_err(refuse)?;
                let plugin = ProviderPlugin {
                    instances: InstancePool::new(&metadata.name, self.sandbox.clone()),
                    metadata: metadata.clone(),
                    origin: origin.to_owned(),
                    pre,
                };
                (metadata, Loaded::Provider(plugin))
            }
            World::Encoder(version) => {
                let pre = EncoderApiPre::new(version, instance_pre).map_err(mismatch)?;
                let probes = InstancePool::probing(origin, self.sandbox.clone());
                let (metadata, info) = EncoderInstance::describe(&probes, &pre)
                    .await
                    .map_err(stale)?;
                expect_kind(&metadata, PluginKind::Encoder).map_err(refuse)?;
                let plugin = EncoderPlugin {
                    instances: InstancePool::new(&metadata.name, self.sandbox.clone()),
                    metadata: metadata.clone(),
                    info,
                    origin: origin.to_owned(),
                    pre,
                };
                (metadata, Loaded::Encoder(plugin))
            }
        };
        Ok(Checked {
            metadata,
            contract: world.export(),
            imports,
            plugin,
        })
    }

    fn install<T: Named>(
        &self,
        map: &RwLock<BTreeMap<String, Arc<T>>>,
        plugin: T,
    ) -> Result<(), String> {
        let mut map = map.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let name = plugin.name().to_owned();
        if let Some(existing) = map.get(&name) {
            let existing_origin = existing.origin();
            let reload = existing_origin == plugin.origin();
            let builtin = existing_origin.starts_with(BUILTIN_ORIGIN);
            let replaceable = builtin && self.replaceable.contains(&name);
            if !reload && !replaceable {
                return Err(if builtin {
                    format!(
                        "a built-in plugin is named `{name}`; list it in `replace_builtin_plugins` to let a plugin replace it"
                    )
                } else {
                    format!("a plugin named `{name}` is already loaded from {existing_origin}")
                });
            }
        }
        map.insert(name, Arc::new(plugin));
        Ok(())
    }

    /// Lets plugins from the plugins directory replace these built-ins.
    pub fn allow_replacing(&mut self, names: Vec<String>) {
        self.replaceable = names;
    }

    pub fn provider(&self, name: &str) -> Result<Arc<ProviderPlugin>, PluginFailure> {
        lookup(&self.providers, "provider", name)
    }

    pub fn encoder(&self, name: &str) -> Result<Arc<EncoderPlugin>, PluginFailure> {
        lookup(&self.encoders, "encoder", name)
    }

    /// Every loaded plugin and where it came from, providers first.
    pub fn list(&self) -> Vec<(PluginMetadata, String)> {
        let mut all: Vec<(PluginMetadata, String)> = read(&self.providers)
            .values()
            .map(|p| (p.metadata.clone(), p.origin.clone()))
            .collect();
        all.extend(
            read(&self.encoders)
                .values()
                .map(|e| (e.metadata.clone(), e.origin.clone())),
        );
        all
    }
}

impl ProviderPlugin {
    /// A place in one of the plugin's instances for one chat request.
    pub async fn instantiate(&self) -> Result<ProviderInstance, PluginFailure> {
        ProviderInstance::new(&self.instances, &self.pre).await
    }
}

impl EncoderPlugin {
    /// The encoder for one response, in one of the plugin's instances.
    pub async fn instantiate(
        &self,
        options: &StreamOptions,
    ) -> Result<EncoderInstance, PluginFailure> {
        EncoderInstance::new(&self.instances, &self.pre, options).await
    }
}

/// `provider` or `encoder`, as configs and listings spell it.
pub fn kind_name(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Provider => "provider",
        PluginKind::Encoder => "encoder",
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
             this host supports agenthost:plugin {}",
            join(ours.iter().map(|s| s.as_str())),
            api::SUPPORTED.join(" and ")
        );
    }
    format!(
        "it exports neither {PROVIDER_EXPORT} (a provider) nor {ENCODER_EXPORT} (an encoder), \
         nor either at 0.1.0; it exports: {}",
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
            "its metadata says it is a {} but it implements the {} world",
            kind_name(metadata.kind),
            kind_name(kind)
        ));
    }
    if metadata.name.is_empty() {
        return Err("its metadata has an empty name".into());
    }
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
mod fuzz;
#[cfg(test)]
mod tests;
