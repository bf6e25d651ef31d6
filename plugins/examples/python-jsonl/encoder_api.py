"""The `response-stream` resource of the python-jsonl format.

componentize-py finds an exported resource's class in a module named
after its interface, so it lives here rather than in app.py.
"""

import json

from wit_world.exports import encoder_api
from wit_world.imports import types


class ResponseStream(encoder_api.ResponseStream):
    def __init__(self, options: types.StreamOptions) -> None:
        self.model = options.model

    def encode(self, events) -> bytes:
        lines = []
        for event in events:
            if isinstance(event, types.ChatEvent_TextDelta):
                lines.append({"type": "text", "text": event.value})
            elif isinstance(event, types.ChatEvent_ToolCall):
                ready = event.value
                lines.append({"type": "tool_call", "name": ready.call.name,
                              "arguments": json.loads(ready.arguments)})
            elif isinstance(event, types.ChatEvent_ToolResult):
                result = event.value
                lines.append({"type": "tool_result", "name": result.call.name,
                              "is_error": result.is_error, "content": result.content})
            elif isinstance(event, types.ChatEvent_Done):
                lines.append({"type": "done", "model": self.model})
            elif isinstance(event, types.ChatEvent_Error):
                lines.append({"type": "error", "message": event.value})
        return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()

    def finish(self) -> bytes:
        return b""
