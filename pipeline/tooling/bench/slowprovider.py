"""A local inference endpoint that answers after N seconds: the slow remote provider of
`genline bench waiting`, speaking the ``http`` provider's protocol
(``pipeline.adapters.providers.http``).

One asyncio loop on a thread of the bench, so a thousand calls held open at
once cost the bench a socket each, not a thread. The prompt says what to do:

- ``slow:N`` answers one small PNG (``{"images": [...]}``) after N seconds;
- ``hang`` never answers;

and every call is recorded: its prompt, when it arrived, when it was answered,
and, when the caller hung up first, ``closed_at`` (this process's
``time.monotonic()``, so the bench can compare it with its own clock).
"""
from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time

from PIL import Image

TOKEN = "bench-provider-token"


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (30, 120, 220)).save(buf, "PNG")
    return buf.getvalue()


class SlowProvider:
    """Start with ``start()``; ``url`` is the endpoint to set as GENLINE_HTTP_PROVIDER_URL."""

    def __init__(self, token: str = TOKEN):
        self.token = token
        self.calls: list[dict] = []
        self._lock = threading.Lock()
        self._answer = json.dumps({"images": [base64.b64encode(_png()).decode()], "model": "slow-fake"}).encode()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-provider", daemon=True)
        self.url = ""

    def start(self) -> SlowProvider:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the slow provider did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def seen(self, prompt: str) -> list[dict]:
        with self._lock:
            return [c for c in self.calls if c["prompt"] == prompt]

    def waiting(self, prompt: str) -> int:
        """Calls with ``prompt`` held open right now (neither answered nor hung up on)."""
        return sum(1 for c in self.seen(prompt) if "answered_at" not in c and "closed_at" not in c)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=4096, limit=2**20))
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/infer"
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length") or 0))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            writer.close()
            return
        if headers.get("authorization") != f"Bearer {self.token}":
            await self._reply(writer, 401, b'{"error": {"message": "bad token"}}')
            return
        try:
            prompt = str(json.loads(body).get("prompt") or "")
        except (ValueError, AttributeError):
            prompt = ""
        call = {"prompt": prompt, "arrived_at": time.monotonic()}
        with self._lock:
            self.calls.append(call)
        hold = None
        for word in prompt.split():
            if word.startswith("slow:"):
                hold = float(word.split(":", 1)[1])
            elif word == "hang":
                hold = float("inf")
        if hold:
            try:
                # The caller sends nothing more: a read that ends means it hung up.
                await asyncio.wait_for(reader.read(1), None if hold == float("inf") else hold)
                call["closed_at"] = time.monotonic()
                writer.close()
                return
            except asyncio.TimeoutError:
                pass
            except ConnectionError:
                call["closed_at"] = time.monotonic()
                return
        await self._reply(writer, 200, self._answer)
        call["answered_at"] = time.monotonic()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
        head = (f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        try:
            writer.write(head + body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
