"""A small Server-Sent Events reader for the tests and benchmarks (independent of the server code)."""
from __future__ import annotations

import json


def parse_frames(text: str) -> list[dict]:
    """Complete SSE messages in ``text`` as {"id", "event", "data", "comment"} dicts."""
    frames = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        frame = {"id": None, "event": "message", "data": None, "comment": None, "retry": None}
        data = []
        for line in block.split("\n"):
            if line.startswith(":"):
                frame["comment"] = line[1:].strip()
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                data.append(value)
            elif field in ("id", "event", "retry"):
                frame[field] = value
        if data:
            frame["data"] = json.loads("\n".join(data))
        frames.append(frame)
    return frames


class Reader:
    """Reads a streamed response chunk by chunk and hands out complete frames."""

    def __init__(self, chunks):
        self.chunks = iter(chunks)
        self.buffer = ""
        self.closed = False

    def next_frames(self) -> list[dict]:
        """The frames completed by the next chunk(s); [] once the stream closed."""
        while "\n\n" not in self.buffer:
            try:
                chunk = next(self.chunks)
            except StopIteration:
                self.closed = True
                return []
            self.buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        done, _, self.buffer = self.buffer.rpartition("\n\n")
        return parse_frames(done + "\n\n")

    def events(self):
        """Every event frame (not comments) until the stream closes."""
        while True:
            frames = self.next_frames()
            if not frames and self.closed:
                return
            for frame in frames:
                if frame["data"] is not None:
                    yield frame
