//! A stream's typed view of a plugin: a lease on a shared instance (see
//! [`super::shared`]) plus the resources the stream holds in it.

use std::sync::Arc;

use wasmtime::component::ResourceAny;

use super::PluginFailure;
use super::api::{EncoderApi, EncoderApiPre, ProviderApi, ProviderApiPre};
use super::bindings::{
    ChatEvent, ChatRequest, EncoderInfo, Outbound, PluginError, PluginMetadata, ProviderConfig,
    ProviderEvent, StreamOptions,
};
use super::shared::{InstancePool, Lease};
use super::v0_1;

fn reported(plugin: &str, error: PluginError) -> PluginFailure {
    PluginFailure::Reported {
        plugin: plugin.to_owned(),
        message: error.message,
    }
}

/// Decoded text counts against the stream's output budget.
fn decoded_bytes(events: &[ProviderEvent]) -> usize {
    events
        .iter()
        .map(|event| match event {
            ProviderEvent::TextDelta(text) | ProviderEvent::Error(text) => text.len(),
            ProviderEvent::ToolCallBegin(begin) => begin.id.len() + begin.name.len(),
            ProviderEvent::ToolCallFragment(fragment) => fragment.fragment.len(),
            ProviderEvent::ResponseInfo(info) => {
                info.model.len() + info.system_fingerprint.as_ref().map_or(0, String::len)
            }
            ProviderEvent::Finish(_) | ProviderEvent::Usage(_) => 0,
        })
        .sum()
}

pub struct ProviderInstance {
    lease: Lease<ProviderApi>,
}

impl ProviderInstance {
    pub(super) async fn new(
        pool: &Arc<InstancePool<ProviderApi>>,
        pre: &ProviderApiPre,
    ) -> Result<ProviderInstance, PluginFailure> {
        let lease = pool
            .lease(async |store| pre.instantiate(store).await)
            .await?;
        Ok(ProviderInstance { lease })
    }

    pub async fn metadata(&mut self) -> Result<PluginMetadata, PluginFailure> {
        self.lease
            .call(async |store, api| match api {
                ProviderApi::Current(api) => {
                    api.agenthost_plugin_provider_api()
                        .call_metadata(store)
                        .await
                }
                ProviderApi::V0_1(api) => Ok(api
                    .agenthost_plugin_provider_api()
                    .call_metadata(store)
                    .await?
                    .into()),
            })
            .await
    }

    pub async fn build_request(
        &mut self,
        config: &ProviderConfig,
        request: &ChatRequest,
    ) -> Result<Outbound, PluginFailure> {
        self.lease
            .call(async |store, api| match api {
                ProviderApi::Current(api) => {
                    api.agenthost_plugin_provider_api()
                        .call_build_request(store, config, request)
                        .await
                }
                ProviderApi::V0_1(api) => {
                    let (config, request) =
                        (v0_1::provider_config(config), v0_1::chat_request(request));
                    Ok(api
                        .agenthost_plugin_provider_api()
                        .call_build_request(store, &config, &request)
                        .await?
                        .map(Into::into)
                        .map_err(Into::into))
                }
            })
            .await?
            .map_err(|e| reported(self.lease.plugin(), e))
    }

    /// A decoder for one response body.
    pub async fn new_decoder(&mut self) -> Result<ResourceAny, PluginFailure> {
        let decoder = self
            .lease
            .call(async |store, api| match api {
                ProviderApi::Current(api) => {
                    api.agenthost_plugin_provider_api()
                        .decoder()
                        .call_constructor(store)
                        .await
                }
                ProviderApi::V0_1(api) => {
                    api.agenthost_plugin_provider_api()
                        .decoder()
                        .call_constructor(store)
                        .await
                }
            })
            .await?;
        self.lease.own(decoder);
        Ok(decoder)
    }

    pub async fn feed(
        &mut self,
        decoder: ResourceAny,
        bytes: &[u8],
    ) -> Result<Vec<ProviderEvent>, PluginFailure> {
        let events = self
            .lease
            .call(async |store, api| match api {
                ProviderApi::Current(api) => {
                    api.agenthost_plugin_provider_api()
                        .decoder()
                        .call_feed(store, decoder, bytes)
                        .await
                }
                ProviderApi::V0_1(api) => Ok(api
                    .agenthost_plugin_provider_api()
                    .decoder()
                    .call_feed(store, decoder, bytes)
                    .await?
                    .map(v0_1::provider_events)
                    .map_err(Into::into)),
            })
            .await?
            .map_err(|e| reported(self.lease.plugin(), e))?;
        self.lease.charge(decoded_bytes(&events))?;
        Ok(events)
    }

    /// Ends the body and releases the decoder.
    pub async fn finish(
        &mut self,
        decoder: ResourceAny,
    ) -> Result<Vec<ProviderEvent>, PluginFailure> {
        let events = self
            .lease
            .call(async |store, api| match api {
                ProviderApi::Current(api) => {
                    api.agenthost_plugin_provider_api()
                        .decoder()
                        .call_finish(store, decoder)
                        .await
                }
                ProviderApi::V0_1(api) => Ok(api
                    .agenthost_plugin_provider_api()
                    .decoder()
                    .call_finish(store, decoder)
                    .await?
                    .map(v0_1::provider_events)
                    .map_err(Into::into)),
            })
            .await?
            .map_err(|e| reported(self.lease.plugin(), e))?;
        self.lease.charge(decoded_bytes(&events))?;
        self.lease.release(decoder).await?;
        Ok(events)
    }
}

pub struct EncoderInstance {
    lease: Lease<EncoderApi>,
    stream: ResourceAny,
}

impl EncoderInstance {
    pub(super) async fn new(
        pool: &Arc<InstancePool<EncoderApi>>,
        pre: &EncoderApiPre,
        options: &StreamOptions,
    ) -> Result<EncoderInstance, PluginFailure> {
        let mut lease = pool
            .lease(async |store| pre.instantiate(store).await)
            .await?;
        let stream = lease
            .call(async |store, api| match api {
                EncoderApi::Current(api) => {
                    api.agenthost_plugin_encoder_api()
                        .response_stream()
                        .call_constructor(store, options)
                        .await
                }
                EncoderApi::V0_1(api) => {
                    api.agenthost_plugin_encoder_api()
                        .response_stream()
                        .call_constructor(store, &v0_1::stream_options(options))
                        .await
                }
            })
            .await?;
        lease.own(stream);
        Ok(EncoderInstance { lease, stream })
    }

    /// What the plugin says about itself, from an instance of `pool`.
    pub(super) async fn describe(
        pool: &Arc<InstancePool<EncoderApi>>,
        pre: &EncoderApiPre,
    ) -> Result<(PluginMetadata, EncoderInfo), PluginFailure> {
        let mut lease = pool
            .lease(async |store| pre.instantiate(store).await)
            .await?;
        lease
            .call(async |store, api| match api {
                EncoderApi::Current(api) => {
                    let guest = api.agenthost_plugin_encoder_api();
                    let metadata = guest.call_metadata(&mut *store).await?;
                    Ok((metadata, guest.call_info(store).await?))
                }
                EncoderApi::V0_1(api) => {
                    let guest = api.agenthost_plugin_encoder_api();
                    let metadata = guest.call_metadata(&mut *store).await?;
                    Ok((metadata.into(), guest.call_info(store).await?.into()))
                }
            })
            .await
    }

    #[cfg(test)]
    pub(super) fn lease(&self) -> &Lease<EncoderApi> {
        &self.lease
    }

    pub async fn encode(&mut self, events: &[ChatEvent]) -> Result<Vec<u8>, PluginFailure> {
        let stream = self.stream;
        let bytes = self
            .lease
            .call(async |store, api| match api {
                EncoderApi::Current(api) => {
                    api.agenthost_plugin_encoder_api()
                        .response_stream()
                        .call_encode(store, stream, events)
                        .await
                }
                EncoderApi::V0_1(api) => {
                    api.agenthost_plugin_encoder_api()
                        .response_stream()
                        .call_encode(store, stream, &v0_1::chat_events(events))
                        .await
                }
            })
            .await?;
        self.lease.charge(bytes.len())?;
        Ok(bytes)
    }

    pub async fn finish(&mut self) -> Result<Vec<u8>, PluginFailure> {
        let stream = self.stream;
        let bytes = self
            .lease
            .call(async |store, api| match api {
                EncoderApi::Current(api) => {
                    api.agenthost_plugin_encoder_api()
                        .response_stream()
                        .call_finish(store, stream)
                        .await
                }
                EncoderApi::V0_1(api) => {
                    api.agenthost_plugin_encoder_api()
                        .response_stream()
                        .call_finish(store, stream)
                        .await
                }
            })
            .await?;
        self.lease.charge(bytes.len())?;
        Ok(bytes)
    }
}
