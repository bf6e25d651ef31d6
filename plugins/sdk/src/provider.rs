//! LLM providers: implement [`Provider`] with a [`Decoder`], then
//! `export_provider!(MyProvider);`.
//!
//! `build_request` turns a chat into an HTTP request without secrets (the
//! host adds the API key named by the request's auth scheme); the decoder
//! turns the response body, fed in arbitrary pieces, into provider events.
//! Most providers stream lines: [`LineDecoder`](crate::lines::LineDecoder)
//! over a [`LineProtocol`](crate::lines::LineProtocol) is a decoder, and
//! [`MustFinish`] adds the check that the stream reached its end marker.

use std::cell::RefCell;
use std::marker::PhantomData;

use crate::bindings::provider_world::exports::agenthost::plugin::provider_api::{
    Guest, GuestDecoder,
};
use crate::lines::{LineDecoder, LineProtocol};
use crate::types::{
    ChatRequest, Outbound, PluginError, PluginKind, PluginMetadata, ProviderConfig, ProviderEvent,
};

pub trait Provider: 'static {
    const NAME: &'static str;
    /// Usually `env!("CARGO_PKG_VERSION")`.
    const VERSION: &'static str;
    const DESCRIPTION: &'static str;

    type Decoder: Decoder;

    fn build_request(config: ProviderConfig, request: ChatRequest)
    -> Result<Outbound, PluginError>;
}

/// One response body's decoder.
pub trait Decoder: Default + 'static {
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<ProviderEvent>, PluginError>;
    /// The body ended: flush what is pending, or say it was cut short.
    fn finish(&mut self) -> Result<Vec<ProviderEvent>, PluginError>;
}

impl<P> Decoder for LineDecoder<P>
where
    P: LineProtocol<Event = ProviderEvent, Error = PluginError> + Default + 'static,
{
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<ProviderEvent>, PluginError> {
        LineDecoder::feed(self, bytes)
    }

    fn finish(&mut self) -> Result<Vec<ProviderEvent>, PluginError> {
        LineDecoder::finish(self)
    }
}

/// A line decoder for streams that must end with a marker (OpenAI's
/// `[DONE]`, Anthropic's `message_stop`). One value decodes one body, so
/// it may remember what it has seen (such as whether the model was
/// reported yet).
pub trait FinishingLines: Default + 'static {
    /// Decodes one line; sets `finished` on the end marker.
    fn line(
        &mut self,
        line: &str,
        events: &mut Vec<ProviderEvent>,
        finished: &mut bool,
    ) -> Result<(), PluginError>;
}

/// The [`LineProtocol`] of a [`FinishingLines`]: a body that ends before
/// the marker is reported as cut, never taken for a complete answer.
#[derive(Default)]
pub struct MustFinish<L> {
    finished: bool,
    lines: L,
}

impl<L: FinishingLines> LineProtocol for MustFinish<L> {
    type Event = ProviderEvent;
    type Error = PluginError;

    fn line(&mut self, line: &str, events: &mut Vec<ProviderEvent>) -> Result<(), PluginError> {
        self.lines.line(line, events, &mut self.finished)
    }

    fn end(&mut self, _events: &mut Vec<ProviderEvent>) -> Result<(), PluginError> {
        if self.finished {
            return Ok(());
        }
        Err(PluginError {
            code: "decode".into(),
            message: "the provider's stream ended before the model finished its turn".into(),
        })
    }
}

/// The component's `provider-api` export for a [`Provider`].
pub struct ProviderPlugin<P>(PhantomData<P>);

/// The `decoder` resource around one decoder.
pub struct DecoderResource<D>(RefCell<D>);

impl<P: Provider> Guest for ProviderPlugin<P> {
    type Decoder = DecoderResource<P::Decoder>;

    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: P::NAME.into(),
            kind: PluginKind::Provider,
            version: P::VERSION.into(),
            description: P::DESCRIPTION.into(),
        }
    }

    fn build_request(
        config: ProviderConfig,
        request: ChatRequest,
    ) -> Result<Outbound, PluginError> {
        P::build_request(config, request)
    }
}

impl<D: Decoder> GuestDecoder for DecoderResource<D> {
    fn new() -> Self {
        DecoderResource(RefCell::new(D::default()))
    }

    fn feed(&self, bytes: Vec<u8>) -> Result<Vec<ProviderEvent>, PluginError> {
        self.0.borrow_mut().feed(&bytes)
    }

    fn finish(&self) -> Result<Vec<ProviderEvent>, PluginError> {
        self.0.borrow_mut().finish()
    }
}

/// Exports a [`Provider`] as the component's provider world, when built
/// for WebAssembly (see [`export_encoder!`](crate::export_encoder)).
#[macro_export]
macro_rules! export_provider {
    ($provider:ty) => {
        #[cfg(target_family = "wasm")]
        type __AgenthostProviderPlugin = $crate::provider::ProviderPlugin<$provider>;
        #[cfg(target_family = "wasm")]
        $crate::bindings::provider_world::export_provider_world!(
            __AgenthostProviderPlugin with_types_in $crate::bindings::provider_world
        );
    };
}
