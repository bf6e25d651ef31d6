//! Stream formats: implement [`Encoder`], then `export_encoder!(MyFormat);`.
//!
//! The host creates one encoder per response and hands it batches of
//! canonical events; whatever bytes `encode` appends go to the client as
//! they are. A panic or trap ends only that response.

use std::cell::RefCell;
use std::marker::PhantomData;

use crate::bindings::encoder_world::exports::agenthost::plugin::encoder_api::{
    Guest, GuestResponseStream,
};
use crate::types::{ChatEvent, EncoderInfo, PluginKind, PluginMetadata, StreamOptions};

/// One response's encoder, and what the format declares about itself.
pub trait Encoder: 'static {
    /// The format's name: what `?format=` and the config refer to.
    const NAME: &'static str;
    /// Usually `env!("CARGO_PKG_VERSION")`.
    const VERSION: &'static str;
    const DESCRIPTION: &'static str;
    const CONTENT_TYPE: &'static str = "text/event-stream; charset=utf-8";
    /// Extra response headers.
    const HEADERS: &'static [(&'static str, &'static str)] = &[("cache-control", "no-cache")];

    fn new(options: StreamOptions) -> Self;

    /// Appends the bytes for a batch of events.
    fn encode(&mut self, events: Vec<ChatEvent>, out: &mut String);

    /// Appends whatever ends the response; most formats need nothing.
    fn finish(&mut self, _out: &mut String) {}
}

/// The component's `encoder-api` export for an [`Encoder`].
pub struct EncoderPlugin<E>(PhantomData<E>);

/// The `response-stream` resource around one encoder.
pub struct EncoderStream<E>(RefCell<E>);

impl<E: Encoder> Guest for EncoderPlugin<E> {
    type ResponseStream = EncoderStream<E>;

    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: E::NAME.into(),
            kind: PluginKind::Encoder,
            version: E::VERSION.into(),
            description: E::DESCRIPTION.into(),
        }
    }

    fn info() -> EncoderInfo {
        EncoderInfo {
            content_type: E::CONTENT_TYPE.into(),
            headers: E::HEADERS
                .iter()
                .map(|(name, value)| ((*name).into(), (*value).into()))
                .collect(),
        }
    }
}

impl<E: Encoder> GuestResponseStream for EncoderStream<E> {
    fn new(options: StreamOptions) -> Self {
        EncoderStream(RefCell::new(E::new(options)))
    }

    fn encode(&self, events: Vec<ChatEvent>) -> Vec<u8> {
        let mut out = String::new();
        self.0.borrow_mut().encode(events, &mut out);
        out.into_bytes()
    }

    fn finish(&self) -> Vec<u8> {
        let mut out = String::new();
        self.0.borrow_mut().finish(&mut out);
        out.into_bytes()
    }
}

/// Exports an [`Encoder`] as the component's encoder world.
///
/// Only when built for WebAssembly: natively the crate is a plain library
/// (the host's benchmarks compare it with its component), and every
/// plugin's exports have the same symbol names.
#[macro_export]
macro_rules! export_encoder {
    ($encoder:ty) => {
        #[cfg(target_family = "wasm")]
        type __AgenthostEncoderPlugin = $crate::encoder::EncoderPlugin<$encoder>;
        #[cfg(target_family = "wasm")]
        $crate::bindings::encoder_world::export_encoder_world!(
            __AgenthostEncoderPlugin with_types_in $crate::bindings::encoder_world
        );
    };
}
