//! The plugins compiled from `plugins/` by build.rs and embedded here, so
//! the binary works with no files beside it.

macro_rules! built {
    ($file:literal) => {
        (
            $file,
            include_bytes!(concat!(env!("AGENTHOST_PLUGIN_BUILD_DIR"), "/", $file)),
        )
    };
}

pub const BUILTINS: &[(&str, &[u8])] = &[
    built!("openai_plugin.wasm"),
    built!("anthropic_plugin.wasm"),
    built!("mock_plugin.wasm"),
    built!("simple_plugin.wasm"),
    built!("truefoundry_plugin.wasm"),
    built!("mcp_chat_plugin.wasm"),
    built!("feather_plugin.wasm"),
];
