"""A stream format written in Python: one JSON object per line.

Built with componentize-py against the same `wit/plugin.wit` as the Rust
plugins, to prove the WIT is the contract. See build.sh.
"""


from wit_world import exports
from wit_world.imports import types


class EncoderApi(exports.EncoderApi):
    def metadata(self) -> types.PluginMetadata:
        return types.PluginMetadata(
            name="python-jsonl",
            kind=types.PluginKind.ENCODER,
            version="0.1.0",
            description="JSON lines, written in Python",
        )

    def info(self) -> types.EncoderInfo:
        return types.EncoderInfo(content_type="application/jsonl", headers=[])
