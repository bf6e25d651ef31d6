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
/// Expands in the plugin crate, where wit-bindgen generated
/// `GuestDecoder`, `ProviderEvent` and `PluginError`; they must be in scope.
#[macro_export]
macro_rules! provider_decoder {
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
