//! A component's exports, typed at the contract version it was built
//! against. The host speaks the current version; [`super::v0_1`] converts
//! for components built against 0.1.0.

use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::bindings::encoder::{Encoder, EncoderPre};
use super::bindings::provider::{Provider, ProviderPre};
use super::bindings::{ENCODER_EXPORT, PROVIDER_EXPORT};
use super::sandbox::PluginState;
use super::v0_1;

/// The contract versions this host loads, newest first.
pub const SUPPORTED: &[&str] = &["0.2.0", "0.1.0"];

/// Which world a component implements, at which version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    Provider(Version),
    Encoder(Version),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Current,
    V0_1,
}

impl World {
    /// The world a component's exports name, if it is one of ours at a
    /// version this host loads.
    pub fn of(exports: &[String]) -> Option<World> {
        let has = |name: &str| exports.iter().any(|e| e == name);
        [
            (PROVIDER_EXPORT, World::Provider(Version::Current)),
            (ENCODER_EXPORT, World::Encoder(Version::Current)),
            (v0_1::PROVIDER_EXPORT, World::Provider(Version::V0_1)),
            (v0_1::ENCODER_EXPORT, World::Encoder(Version::V0_1)),
        ]
        .into_iter()
        .find(|(export, _)| has(export))
        .map(|(_, world)| world)
    }

    /// The export that identifies it, with the contract version.
    pub fn export(self) -> &'static str {
        match self {
            World::Provider(Version::Current) => PROVIDER_EXPORT,
            World::Encoder(Version::Current) => ENCODER_EXPORT,
            World::Provider(Version::V0_1) => v0_1::PROVIDER_EXPORT,
            World::Encoder(Version::V0_1) => v0_1::ENCODER_EXPORT,
        }
    }
}

pub enum ProviderApi {
    Current(Provider),
    V0_1(v0_1::provider::Provider),
}

pub enum ProviderApiPre {
    Current(ProviderPre<PluginState>),
    V0_1(v0_1::provider::ProviderPre<PluginState>),
}

impl ProviderApiPre {
    pub fn new(version: Version, pre: InstancePre<PluginState>) -> wasmtime::Result<Self> {
        Ok(match version {
            Version::Current => ProviderApiPre::Current(ProviderPre::new(pre)?),
            Version::V0_1 => ProviderApiPre::V0_1(v0_1::provider::ProviderPre::new(pre)?),
        })
    }

    pub async fn instantiate(
        &self,
        store: &mut Store<PluginState>,
    ) -> wasmtime::Result<ProviderApi> {
        Ok(match self {
            ProviderApiPre::Current(pre) => {
                ProviderApi::Current(pre.instantiate_async(store).await?)
            }
            ProviderApiPre::V0_1(pre) => ProviderApi::V0_1(pre.instantiate_async(store).await?),
        })
    }
}

pub enum EncoderApi {
    Current(Encoder),
    V0_1(v0_1::encoder::Encoder),
}

pub enum EncoderApiPre {
    Current(EncoderPre<PluginState>),
    V0_1(v0_1::encoder::EncoderPre<PluginState>),
}

impl EncoderApiPre {
    pub fn new(version: Version, pre: InstancePre<PluginState>) -> wasmtime::Result<Self> {
        Ok(match version {
            Version::Current => EncoderApiPre::Current(EncoderPre::new(pre)?),
            Version::V0_1 => EncoderApiPre::V0_1(v0_1::encoder::EncoderPre::new(pre)?),
        })
    }

    pub async fn instantiate(
        &self,
        store: &mut Store<PluginState>,
    ) -> wasmtime::Result<EncoderApi> {
        Ok(match self {
            EncoderApiPre::Current(pre) => EncoderApi::Current(pre.instantiate_async(store).await?),
            EncoderApiPre::V0_1(pre) => EncoderApi::V0_1(pre.instantiate_async(store).await?),
        })
    }
}
