"""A remote provider and a webhook receiver in one small HTTP server, run as its own
process on a host of the bed, recording every request as a JSON line in a file:

- ``POST /infer`` speaks the ``http`` provider's protocol (bearer token, JSON with a
  prompt, answers ``{"images": [base64 PNG]}``); a prompt word ``slow:N`` holds the
  answer N seconds;
- ``POST /hook/...`` takes a webhook delivery and answers 204.

Each line names the caller's address (``peer``), so a test sees which host called.

    python -m tests.multihost.recorder ADDRESS PORT FILE TOKEN
"""
from __future__ import annotations

import base64
import io
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 90, 40)).save(buf, "PNG")
    return buf.getvalue()


def serve(address: str, port: int, out: Path, token: str) -> None:
    lock = threading.Lock()
    answer = json.dumps({"images": [base64.b64encode(_png()).decode()], "model": "recorder"}).encode()

    def record(line: dict) -> None:
        with lock, open(out, "a") as f:
            f.write(json.dumps(line) + "\n")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _reply(self, status: int, body: bytes = b"") -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            peer = self.client_address[0]
            if self.path.startswith("/hook"):
                record({"kind": "hook", "path": self.path, "peer": peer, "at": time.time(),
                        "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body.decode()})
                self._reply(204)
                return
            if self.headers.get("Authorization") != f"Bearer {token}":
                self._reply(401, b'{"error": {"message": "bad token"}}')
                return
            prompt = str(json.loads(body or b"{}").get("prompt") or "")
            record({"kind": "infer", "prompt": prompt, "peer": peer, "at": time.time()})
            for word in prompt.split():
                if word.startswith("slow:"):
                    time.sleep(float(word.split(":", 1)[1]))
            self._reply(200, answer)
            record({"kind": "answered", "prompt": prompt, "peer": peer, "at": time.time()})

    server = ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    print(f"recorder listening on {address}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])
