//! The wit-bindgen output for both worlds of `wit/plugin.wit`.
//!
//! Generated once here so plugin crates need neither the WIT file nor
//! wit-bindgen: they implement [`Encoder`](crate::Encoder) or
//! [`Provider`](crate::Provider) and call the matching export macro. The
//! provider world reuses the encoder world's `types`, so there is one
//! `ChatEvent`, one `PluginError` and so on.

pub mod encoder_world {
    wit_bindgen::generate!({
        path: "wit",
        world: "encoder",
        pub_export_macro: true,
        export_macro_name: "export_encoder_world",
        default_bindings_module: "agenthost_plugin::bindings::encoder_world",
    });
}

pub mod provider_world {
    wit_bindgen::generate!({
        path: "wit",
        world: "provider",
        pub_export_macro: true,
        export_macro_name: "export_provider_world",
        default_bindings_module: "agenthost_plugin::bindings::provider_world",
        with: {
            "agenthost:plugin/types@0.2.0": crate::bindings::encoder_world::agenthost::plugin::types,
        },
    });
}
