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
    output_limit: usize,
    output_left: usize,
}

impl Guarded {
    fn new(plugin: &str, sandbox: &Sandbox) -> Guarded {
        let limits = sandbox.limits();
        Guarded {
            plugin: plugin.to_owned(),
            store: sandbox.new_store(),
            timeout_ms: limits.call_timeout.as_millis(),
            output_limit: limits.output_bytes,
            output_left: limits.output_bytes,
        }
    }

    /// Counts `bytes` of output against the instance's budget.
    fn charge(&mut self, bytes: usize) -> Result<(), PluginFailure> {
        let Some(left) = self.output_left.checked_sub(bytes) else {
            return Err(PluginFailure::Output {
                plugin: self.plugin.clone(),
                mib: self.output_limit >> 20,
            });
        };
        self.output_left = left;
        Ok(())
    }

    /// Charges decoded events by the text they carry.
    fn charge_events(&mut self, events: &[ProviderEvent]) -> Result<(), PluginFailure> {
        let bytes = events
            .iter()
            .map(|event| match event {
                ProviderEvent::TextDelta(text) | ProviderEvent::Error(text) => text.len(),
                ProviderEvent::ToolCallBegin(begin) => begin.id.len() + begin.name.len(),
                ProviderEvent::ToolCallFragment(fragment) => fragment.fragment.len(),
                ProviderEvent::Finish(_) => 0,
            })
            .sum();
        self.charge(bytes)
    }

    /// Runs one call into the guest under a fresh deadline.
    async fn call<R>(
        &mut self,
        f: impl AsyncFnOnce(&mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginFailure> {
        self.store.set_epoch_deadline(ticks_for(self.timeout_ms));
        f(&mut self.store)
            .await
            .map_err(|e| failure(&self.plugin, self.timeout_ms, e))
    }
}

pub struct ProviderInstance {
    guarded: Guarded,
    api: Provider,
}

impl ProviderInstance {
    pub(super) async fn new(
        plugin: &str,
        pre: &ProviderPre<PluginState>,
        sandbox: &Sandbox,
    ) -> Result<ProviderInstance, PluginFailure> {
        let mut guarded = Guarded::new(plugin, sandbox);
        let api = guarded
            .call(async |store| pre.instantiate_async(store).await)
            .await?;
        Ok(ProviderInstance { guarded, api })
    }

    pub async fn metadata(&mut self) -> Result<PluginMetadata, PluginFailure> {
        let api = self.api.agenthost_plugin_provider_api();
        self.guarded
            .call(async |store| api.call_metadata(store).await)
            .await
    }

    pub async fn build_request(
        &mut self,
        config: &ProviderConfig,
        request: &ChatRequest,
    ) -> Result<Outbound, PluginFailure> {
        let api = self.api.agenthost_plugin_provider_api();
        let plugin = self.guarded.plugin.clone();
        self.guarded
            .call(async |store| api.call_build_request(store, config, request).await)
            .await?
            .map_err(|e| reported(&plugin, e))
    }

    /// A decoder for one response body.
    pub async fn new_decoder(&mut self) -> Result<ResourceAny, PluginFailure> {
        let api = self.api.agenthost_plugin_provider_api();
        self.guarded
            .call(async |store| api.decoder().call_constructor(store).await)
            .await
    }

    pub async fn feed(
        &mut self,
        decoder: ResourceAny,
        bytes: &[u8],
    ) -> Result<Vec<ProviderEvent>, PluginFailure> {
        let api = self.api.agenthost_plugin_provider_api();
        let plugin = self.guarded.plugin.clone();
        let events = self
            .guarded
            .call(async |store| api.decoder().call_feed(store, decoder, bytes).await)
            .await?
            .map_err(|e| reported(&plugin, e))?;
        self.guarded.charge_events(&events)?;
        Ok(events)
    }

    /// Ends the body and releases the decoder.
    pub async fn finish(
        &mut self,
        decoder: ResourceAny,
    ) -> Result<Vec<ProviderEvent>, PluginFailure> {
        let api = self.api.agenthost_plugin_provider_api();
        let plugin = self.guarded.plugin.clone();
        let events = self
            .guarded
            .call(async |store| api.decoder().call_finish(store, decoder).await)
            .await?
            .map_err(|e| reported(&plugin, e))?;
        self.guarded.charge_events(&events)?;
        self.guarded
            .call(async |store| decoder.resource_drop_async(store).await)
            .await?;
        Ok(events)
    }
}

pub struct EncoderInstance {
    guarded: Guarded,
    api: Encoder,
    stream: ResourceAny,
}

impl EncoderInstance {
    pub(super) async fn new(
        plugin: &str,
        pre: &EncoderPre<PluginState>,
        sandbox: &Sandbox,
        options: &StreamOptions,
    ) -> Result<EncoderInstance, PluginFailure> {
        let mut guarded = Guarded::new(plugin, sandbox);
        let api = guarded
            .call(async |store| pre.instantiate_async(store).await)
            .await?;
        let guest = api.agenthost_plugin_encoder_api();
        let stream = guarded
            .call(async |store| {
                guest
                    .response_stream()
                    .call_constructor(store, options)
                    .await
            })
            .await?;
        Ok(EncoderInstance {
            guarded,
            api,
            stream,
        })
    }

    /// Instantiates once to read what the plugin says about itself.
    pub(super) async fn describe(
        plugin: &str,
        pre: &EncoderPre<PluginState>,
        sandbox: &Sandbox,
    ) -> Result<(PluginMetadata, EncoderInfo), PluginFailure> {
        let mut guarded = Guarded::new(plugin, sandbox);
        let api = guarded
            .call(async |store| pre.instantiate_async(store).await)
            .await?;
        let guest = api.agenthost_plugin_encoder_api();
        let metadata = guarded
            .call(async |store| guest.call_metadata(store).await)
            .await?;
        let info = guarded
            .call(async |store| guest.call_info(store).await)
            .await?;
        Ok((metadata, info))
    }

    pub async fn encode(&mut self, events: &[ChatEvent]) -> Result<Vec<u8>, PluginFailure> {
        let guest = self.api.agenthost_plugin_encoder_api();
        let stream = self.stream;
        let bytes = self
            .guarded
            .call(async |store| {
                guest
                    .response_stream()
                    .call_encode(store, stream, events)
                    .await
            })
            .await?;
        self.guarded.charge(bytes.len())?;
        Ok(bytes)
    }

    pub async fn finish(&mut self) -> Result<Vec<u8>, PluginFailure> {
        let guest = self.api.agenthost_plugin_encoder_api();
        let stream = self.stream;
        let bytes = self
            .guarded
            .call(async |store| guest.response_stream().call_finish(store, stream).await)
            .await?;
        self.guarded.charge(bytes.len())?;
        Ok(bytes)
    }
}
