"""Real HTTP servers on 127.0.0.1 that speak the providers' protocols, for tests.

``ImageServer`` answers like the OpenAI Images API (``/v1/images/generations``,
``/v1/images/edits``) and like a self-hosted inference endpoint (``/infer``).
What it does is chosen by the prompt, so one server serves many tests at once:

- ``status:503`` (optionally ``status:429:retry=2``, ``status:400:code=moderation_blocked``)
  answers that error; ``openai-status:503`` only on the OpenAI paths (for failover);
- ``slow:5`` waits 5 s before answering; ``hang`` never answers (until stopped);
  both note in the request's ``closed_at`` (``time.monotonic()``) when the client hangs up;
- ``trickle`` answers 200 at once, then one byte of its body every 0.2 s (for 600 s);
- ``raw`` (endpoint only) answers the PNG itself instead of JSON;
- ``garbage`` answers 200 with bytes that are no image;
- anything else answers one small PNG per requested image.

Every request is recorded (path, headers, JSON body or multipart fields and
files) so tests can check what genline sent.
"""
from __future__ import annotations

import base64
import io
import json
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image
from werkzeug.formparser import parse_form_data

TOKEN = "test-provider-token"


def png(size=(24, 16), colour=(30, 120, 220)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


class _QuietServer(ThreadingHTTPServer):
    request_queue_size = 2048  # benchmarks open a thousand calls at once

    def handle_error(self, request, client_address):
        pass  # clients that hang up early (abandoned or timed-out calls) are expected here


class Recorded(dict):
    """One request as the server saw it."""


class ImageServer:
    def __init__(self, token: str = TOKEN):
        self.token = token
        self.requests: list[Recorded] = []
        self.stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                server._handle(self)

            def do_GET(self):
                server._handle(self)

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> ImageServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def seen(self, prompt: str) -> list[Recorded]:
        return [r for r in self.requests if r.get("prompt") == prompt]

    # -- request handling -------------------------------------------------

    def _parse(self, h: BaseHTTPRequestHandler) -> Recorded:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        rec = Recorded(path=h.path, method=h.command, headers=dict(h.headers), json=None, form={}, files={})
        ctype = h.headers.get("Content-Type", "")
        if ctype.startswith("application/json"):
            rec["json"] = json.loads(raw)
            rec["prompt"] = rec["json"].get("prompt")
        elif ctype.startswith("multipart/form-data"):
            environ = {"wsgi.input": io.BytesIO(raw), "CONTENT_LENGTH": str(len(raw)),
                       "CONTENT_TYPE": ctype, "REQUEST_METHOD": "POST"}
            _stream, form, files = parse_form_data(environ)
            rec["form"] = {k: form.getlist(k) for k in form}
            rec["files"] = {k: [f.read() for f in files.getlist(k)] for k in files}
            rec["prompt"] = form.get("prompt")
        return rec

    def _send(self, h, status: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        if h.command == "GET" and h.path.startswith("/files/big"):
            buf = io.BytesIO()
            Image.effect_noise((96, 96), 80).save(buf, "PNG")
            return self._send(h, 200, buf.getvalue(), "image/png")
        if h.command == "GET" and h.path.startswith("/files/"):
            return self._send(h, 200, png((8, 8)), "image/png")
        rec = self._parse(h)
        self.requests.append(rec)
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            return self._send(h, 401, json.dumps({"error": {"message": "Incorrect API key provided",
                                                            "type": "invalid_request_error",
                                                            "code": "invalid_api_key"}}).encode(), "application/json")
        prompt = rec.get("prompt") or ""
        for word in prompt.split():
            if word.startswith("slow:"):
                if self._hold(h, rec, float(word.split(":")[1])):
                    return
            if word == "hang":
                self._hold(h, rec, 600)
                return
            if word == "trickle":
                return self._trickle(h, rec)
            if word.startswith("status:"):
                return self._error(h, word)
            if word.startswith("openai-status:") and h.path.startswith("/v1/"):
                return self._error(h, word.removeprefix("openai-"))
        if "garbage" in prompt.split():
            return self._send(h, 200, b"not an image at all", "image/png")
        body = rec["json"] or {}
        n = int(body.get("n") or (body.get("params") or {}).get("n") or (rec["form"].get("n") or ["1"])[0])
        if h.path == "/infer" and "raw" in prompt.split():
            return self._send(h, 200, png(), "image/png")
        items = [{"b64_json": base64.b64encode(png(colour=(10 * i, 100, 200))).decode()} for i in range(n)]
        if h.path == "/infer":
            body = {"images": [i["b64_json"] for i in items], "model": "fake-diffusion"}
        else:
            body = {"created": int(time.time()), "data": items}
        return self._send(h, 200, json.dumps(body).encode(), "application/json")

    def _hold(self, h, rec: Recorded, seconds: float) -> bool:
        """Wait ``seconds`` without answering; True (and ``closed_at`` noted) if the client hung up."""
        end = time.monotonic() + seconds
        while not self.stopping.is_set() and time.monotonic() < end:
            readable, _, _ = select.select([h.connection], [], [], 0.05)
            if readable:
                try:
                    data = h.connection.recv(1, socket.MSG_PEEK)
                except OSError:
                    data = b""
                if not data:
                    rec["closed_at"] = time.monotonic()
                    return True
                self.stopping.wait(0.05)  # bytes of a next request: not a hang-up
        return False

    def _trickle(self, h, rec: Recorded) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", "3000")
        h.end_headers()
        try:
            for _ in range(3000):
                if self.stopping.wait(0.2):
                    return
                h.wfile.write(b" ")
                h.wfile.flush()
        except OSError:
            rec["closed_at"] = time.monotonic()

    def _error(self, h, word: str) -> None:
        parts = word.split(":")
        status = int(parts[1])
        options = dict(p.split("=", 1) for p in parts[2:])
        headers = {"Retry-After": options["retry"]} if "retry" in options else {}
        error = {"message": f"simulated {status}", "type": "invalid_request_error" if status < 500 else "server_error",
                 "code": options.get("code")}
        self._send(h, status, json.dumps({"error": error}).encode(), "application/json", headers)
