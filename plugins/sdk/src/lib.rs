//! Helpers shared by agenthost plugins.
//!
//! Plugins run under tight per-call deadlines and are called once per batch
//! of events, so these helpers write straight into caller-owned buffers and
//! never build an intermediate JSON tree.

pub mod json;
pub mod lines;

/// Implements a provider's `decoder` resource over a
/// [`LineProtocol`](lines::LineProtocol): `provider_decoder!(Decoder, MyLines);`
///
/// `provider_decoder!(Decoder, finishing decode_line);` builds the
/// protocol too, for a stream that must end with a marker:
/// `decode_line(line, &mut events, &mut finished)` sets `finished` when it
/// sees it, and a body that ends without it is reported as cut.
///
/// Expands in the plugin crate, where wit-bindgen generated
/// `GuestDecoder`, `ProviderEvent` and `PluginError`; they must be in scope.
#[macro_export]
macro_rules! provider_decoder {
    ($decoder:ident, finishing $decode:path) => {
        #[derive(Default)]
        pub struct FinishingLines {
            finished: bool,
        }

        impl $crate::lines::LineProtocol for FinishingLines {
            type Event = ProviderEvent;
            type Error = PluginError;

            fn line(
                &mut self,
                line: &str,
                events: &mut Vec<ProviderEvent>,
            ) -> Result<(), PluginError> {
                $decode(line, events, &mut self.finished)
            }

            fn end(&mut self, _events: &mut Vec<ProviderEvent>) -> Result<(), PluginError> {
                if self.finished {
                    return Ok(());
                }
                Err(PluginError {
                    code: "decode".into(),
                    message: "the provider's stream ended before the model finished its turn"
                        .into(),
                })
            }
        }

        $crate::provider_decoder!($decoder, FinishingLines);
    };
    ($decoder:ident, $protocol:ty) => {
        #[derive(Default)]
        pub struct $decoder(::std::cell::RefCell<$crate::lines::LineDecoder<$protocol>>);

        impl GuestDecoder for $decoder {
            fn new() -> Self {
                $decoder::default()
            }

            fn feed(&self, bytes: Vec<u8>) -> Result<Vec<ProviderEvent>, PluginError> {
                self.0.borrow_mut().feed(&bytes)
            }

            fn finish(&self) -> Result<Vec<ProviderEvent>, PluginError> {
                self.0.borrow_mut().finish()
            }
        }
    };
}
