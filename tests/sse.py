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

    def events(self, estimations: bool = False):
        """Every event frame (not comments) until the stream closes.

        ``estimations``: also the ``estimation`` frames of a queued job (its ETA,
        not an event of the job's log; left out by default).
        """
        while True:
            frames = self.next_frames()
            if not frames and self.closed:
                return
            for frame in frames:
                if frame["data"] is not None and (estimations or frame["event"] != "estimation"):
                    yield frame


class RawStreams:
    """Many SSE connections from one thread (non-blocking sockets and a selector).

    HTTP/1.0 requests, so the server streams the body unchunked and closes the
    connection at the end of the stream.
    """

    def __init__(self, base_url: str, paths: list[str], headers: dict | None = None):
        import selectors
        import socket
        from urllib.parse import urlsplit
        parts = urlsplit(base_url)
        self.selector = selectors.DefaultSelector()
        self.buffers = [bytearray() for _ in paths]
        self.closed = [False] * len(paths)
        self.first_byte_at = [None] * len(paths)
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        for index, path in enumerate(paths):
            sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n{extra}\r\n".encode())
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, index)

    def pump(self, seconds: float, until=None) -> None:
        """Read whatever arrives for up to ``seconds`` (or until ``until()`` is true)."""
        import time
        end = time.monotonic() + seconds
        while time.monotonic() < end and not all(self.closed):
            if until is not None and until():
                return
            for key, _ in self.selector.select(timeout=0.2):
                index = key.data
                try:
                    data = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    if self.first_byte_at[index] is None:
                        self.first_byte_at[index] = time.monotonic()
                    self.buffers[index] += data
                else:
                    self.selector.unregister(key.fileobj)
                    key.fileobj.close()
                    self.closed[index] = True

    def status(self, index: int) -> int | None:
        head = bytes(self.buffers[index]).split(b"\r\n", 1)[0].split()
        return int(head[1]) if len(head) > 1 else None

    def frames(self, index: int) -> list[dict]:
        """Complete frames received on connection ``index``."""
        raw = bytes(self.buffers[index])
        _, sep, body = raw.partition(b"\r\n\r\n")
        if not sep:
            return []
        text = body.decode(errors="replace")
        complete, _, _ = text.rpartition("\n\n")
        return parse_frames(complete + "\n\n") if complete else []

    def close(self) -> None:
        for key in list(self.selector.get_map().values()):
            self.selector.unregister(key.fileobj)
            key.fileobj.close()
        self.selector.close()
