"""Local proxies for client tests: a TCP proxy whose connections can be cut for real,
and an HTTP proxy that answers from a script (429, 503) before or after forwarding."""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from tests import services


class TcpProxy:
    """Forwards 127.0.0.1:port to an upstream port byte for byte; ``cut()`` closes every open connection.

    ``heads`` holds the first line and headers of each request seen, in order.
    """

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.port = services.free_port()
        self.heads: list[str] = []
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while data := src.recv(65536):
                if from_client and data[:4] in (b"GET ", b"POST"):
                    self.heads.append(data.split(b"\r\n\r\n", 1)[0].decode(errors="replace"))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> int:
        """Close every connection open now (both sides, as a dropped network would); new ones still work."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        return len(pairs)

    def stop(self) -> None:
        if self._listener:
            self._listener.close()
        self.cut()


class ScriptedProxy:
    """An HTTP proxy to ``upstream``; each request takes the next step of ``script`` (then plain forwarding).

    A step is ``{"status": 429, "headers": {...}, "forward": bool}``: answer with that
    status (in genline's error shape), after forwarding the request upstream when ``forward``.
    ``seen`` records every request: method, path, headers, body, and what upstream answered.
    """

    def __init__(self, upstream: str, script=()):
        self.upstream = upstream.rstrip("/")
        self.script = list(script)
        self.seen: list[dict] = []
        self.port = services.free_port()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ScriptedProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                record = {"method": self.command, "path": self.path, "headers": headers, "body": body}
                proxy.seen.append(record)
                step = proxy.script.pop(0) if proxy.script else None
                if step is None or step.get("forward"):
                    upstream = requests.request(self.command, proxy.upstream + self.path, data=body or None,
                                                headers=headers, timeout=70)
                    record["upstream"] = (upstream.status_code, upstream.content)
                if step is None:
                    return self._send(upstream.status_code, upstream.content,
                                      {"Content-Type": upstream.headers.get("Content-Type", "application/json")})
                error = {"error": {"code": "rate_limited" if step["status"] == 429 else "service_unavailable",
                                   "message": "scripted by the test proxy", "fields": {}}}
                self._send(step["status"], json.dumps(error).encode(),
                           {"Content-Type": "application/json", **step.get("headers", {})})

            def _send(self, status, content, headers):
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = _handle

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
