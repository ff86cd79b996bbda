"""One HTTP port: ``/metrics`` (Prometheus text), ``/healthz`` (liveness) and ``/readyz`` (readiness);
with a ``dispositions`` handler and a token, also ``POST /dispositions`` (``Authorization: Bearer``)."""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class OpsServer:
    """Serves the registry and two probes on a background thread."""

    def __init__(
        self,
        registry: CollectorRegistry,
        live: Callable[[], bool],
        ready: Callable[[], bool],
        host: str = "127.0.0.1",
        port: int = 0,
        dispositions: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        token: str | None = None,
    ) -> None:
        """``dispositions`` takes a posted JSON object and returns the JSON answer (raising ``ValueError``
        for a bad one); it is served only with a non-empty ``token``, which is never logged."""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(outer.registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok = outer.live()
                    self._send(200 if ok else 503, b"ok\n" if ok else b"stalled\n")
                elif path == "/readyz":
                    ok = outer.ready()
                    self._send(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
                else:
                    self._send(404, b"not found\n")

            def do_POST(self) -> None:
                if self.path.split("?", 1)[0] != "/dispositions" or outer.dispositions is None:
                    self._send(404, b"not found\n")
                    return
                given = self.headers.get("Authorization", "")
                if not outer.token or not hmac.compare_digest(
                    given.encode(), f"Bearer {outer.token}".encode()
                ):
                    self._send(401, b"unauthorized\n")
                    return
                try:
                    length = min(int(self.headers.get("Content-Length") or 0), 64 * 1024)
                    body = json.loads(self.rfile.read(length) or b"null")
                    if not isinstance(body, dict):
                        raise ValueError("expected a JSON object")
                    answer = outer.dispositions(body)
                except ValueError as exc:
                    self._send(400, json.dumps({"error": str(exc)[:500]}).encode(), "application/json")
                    return
                self._send(201, json.dumps(answer).encode(), "application/json")

            def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.registry = registry
        self.dispositions = dispositions
        self.token = token
        self.live = live
        self.ready = ready
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port: int = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="ops-http", daemon=True)

    def start(self) -> OpsServer:
        """Serve in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
