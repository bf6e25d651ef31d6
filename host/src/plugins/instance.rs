//! One plugin instance in its own store, with typed, deadline-armed calls.
//!
//! A store whose guest trapped must not be used again, so every failure is
//! returned to the caller, who drops the instance with the response.

use wasmtime::Store;
use wasmtime::component::ResourceAny;

use super::PluginFailure;
use super::bindings::encoder::{Encoder, EncoderPre};
use super::bindings::provider::{Provider, ProviderPre};
use super::bindings::{
    ChatEvent, ChatRequest, EncoderInfo, Outbound, PluginError, PluginMetadata, ProviderConfig,
    ProviderEvent, StreamOptions,
};
use super::sandbox::{PluginState, Sandbox, ticks_for};

/// Maps a wasmtime error to what the client is told.
fn failure(plugin: &str, sandbox_ms: u128, error: wasmtime::Error) -> PluginFailure {
    if let Some(wasmtime::Trap::Interrupt) = error.downcast_ref::<wasmtime::Trap>() {
        return PluginFailure::Timeout {
            plugin: plugin.to_owned(),
            ms: sandbox_ms,
        };
    }
    PluginFailure::Trap {
        plugin: plugin.to_owned(),
        message: format!("{error:#}"),
    }
}

fn reported(plugin: &str, error: PluginError) -> PluginFailure {
    PluginFailure::Reported {
        plugin: plugin.to_owned(),
        message: error.message,
    }
}

/// What every instance needs to arm and attribute its calls.
struct Guarded {
    plugin: String,
    store: Store<PluginState>,
    timeout_ms: u128,
}

impl Guarded {
    fn new(plugin: &str, sandbox: &Sandbox) -> Guarded {
        Guarded {
            plugin: plugin.to_owned(),
            store: sandbox.new_store(),
            timeout_ms: sandbox.limits().call_timeout.as_millis(),
        }
    }

    /// Runs one call into the guest under a fresh deadline.
    fn call<R>(
        &mut self,
        f: impl FnOnce(&mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginFailure> {
        self.store.set_epoch_deadline(ticks_for(self.timeout_ms));
        f(&mut self.store).map_err(|e| failure(&self.plugin, self.timeout_ms, e))
    }
}

pub struct ProviderInstance {
    guarded: Guarded,
    api: Provider,
}

impl ProviderInstance {
    pub(super) fn new(
        plugin: &str,
        pre: &ProviderPre<PluginState>,
        sandbox: &Sandbox,
    ) -> Result<ProviderInstance, PluginFailure> {
        let mut guarded = Guarded::new(plugin, sandbox);
        let api = guarded.call(|store| pre.instantiate(store))?;
        Ok(ProviderInstance { guarded, api })
    }

    pub fn metadata(&mut self) -> Result<PluginMetadata, PluginFailure> {
        let api = self.api.agenthost_plugin_provider_api();
        self.guarded.call(|store| api.call_metadata(store))
    }

    pub fn build_request(
        &mut self,
        config: &ProviderConfig,
        request: &ChatRequest,
    ) -> Result<Outbound, PluginFailure> {
        let api = self.api.agenthost_plugin_provider_api();
        let plugin = self.guarded.plugin.clone();
        self.guarded
            .call(|store| api.call_build_request(store, config, request))?
            .map_err(|e| reported(&plugin, e))
    }

    /// A decoder for one response body.
    pub fn new_decoder(&mut self) -> Result<ResourceAny, PluginFailure> {
        let api = self.api.agenthost_plugin_provider_api();
        self.guarded
            .call(|store| api.decoder().call_constructor(store))
    }

    pub fn feed(
        &mut self,
        decoder: ResourceAny,
        bytes: &[u8],
    ) -> Result<Vec<ProviderEvent>, PluginFailure> {
        let api = self.api.agenthost_plugin_provider_api();
        let plugin = self.guarded.plugin.clone();
        self.guarded
            .call(|store| api.decoder().call_feed(store, decoder, bytes))?
            .map_err(|e| reported(&plugin, e))
    }

    /// Ends the body and releases the decoder.
    pub fn finish(&mut self, decoder: ResourceAny) -> Result<Vec<ProviderEvent>, PluginFailure> {
        let api = self.api.agenthost_plugin_provider_api();
        let plugin = self.guarded.plugin.clone();
        let events = self
            .guarded
            .call(|store| api.decoder().call_finish(store, decoder))?
            .map_err(|e| reported(&plugin, e))?;
        self.guarded.call(|store| decoder.resource_drop(store))?;
        Ok(events)
    }
}

pub struct EncoderInstance {
    guarded: Guarded,
    api: Encoder,
    stream: ResourceAny,
}

impl EncoderInstance {
    pub(super) fn new(
        plugin: &str,
        pre: &EncoderPre<PluginState>,
        sandbox: &Sandbox,
        options: &StreamOptions,
    ) -> Result<EncoderInstance, PluginFailure> {
        let mut guarded = Guarded::new(plugin, sandbox);
        let api = guarded.call(|store| pre.instantiate(store))?;
        let guest = api.agenthost_plugin_encoder_api();
        let stream =
            guarded.call(|store| guest.response_stream().call_constructor(store, options))?;
        Ok(EncoderInstance {
            guarded,
            api,
            stream,
        })
    }

    /// Instantiates once to read what the plugin says about itself.
    pub(super) fn describe(
        plugin: &str,
        pre: &EncoderPre<PluginState>,
        sandbox: &Sandbox,
    ) -> Result<(PluginMetadata, EncoderInfo), PluginFailure> {
        let mut guarded = Guarded::new(plugin, sandbox);
        let api = guarded.call(|store| pre.instantiate(store))?;
        let guest = api.agenthost_plugin_encoder_api();
        let metadata = guarded.call(|store| guest.call_metadata(store))?;
        let info = guarded.call(|store| guest.call_info(store))?;
        Ok((metadata, info))
    }

    pub fn encode(&mut self, events: &[ChatEvent]) -> Result<Vec<u8>, PluginFailure> {
        let guest = self.api.agenthost_plugin_encoder_api();
        let stream = self.stream;
        self.guarded
            .call(|store| guest.response_stream().call_encode(store, stream, events))
    }

    pub fn finish(&mut self) -> Result<Vec<u8>, PluginFailure> {
        let guest = self.api.agenthost_plugin_encoder_api();
        let stream = self.stream;
        self.guarded
            .call(|store| guest.response_stream().call_finish(store, stream))
    }
}
