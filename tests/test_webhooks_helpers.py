"""A real webhook receiver for the tests: a loopback HTTP server in a thread.

It verifies every request's signature with the shared secret (as a subscriber would, with
``sinks.webhooks.signing.verify``), answers ``fail_status`` to the first ``fail_first``
attempts of each delivery id and 200 afterwards, and can hold requests until released (a
slow endpoint).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from schemas.pack.webhooks import WebhookSubscription
from sinks.webhooks import signing
from sinks.webhooks.signing import SignatureError


@dataclass(frozen=True)
class Hit:
    delivery_id: str
    event_type: str
    attempt: int
    status: int
    verified: bool
    body: bytes


class Receiver:
    def __init__(
        self,
        secret: bytes,
        *,
        fail_first: int = 0,
        fail_status: int = 503,
        hold: threading.Event | None = None,
    ) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.hold = hold
        self.hits: list[Hit] = []
        self.arrived = threading.Semaphore(0)
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.arrived.release()
                if receiver.hold is not None:
                    receiver.hold.wait(timeout=120)
                status = receiver._answer(self.headers, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _answer(self, headers: Any, body: bytes) -> int:
        try:
            signing.verify(self.secret, headers.get(signing.SIGNATURE_HEADER), body)
            verified = True
        except SignatureError:
            verified = False
        delivery_id = headers.get(signing.DELIVERY_HEADER) or ""
        with self._lock:
            self._seen[delivery_id] += 1
            failing = self._seen[delivery_id] <= self.fail_first
            status = 401 if not verified else (self.fail_status if failing else 200)
            self.hits.append(
                Hit(
                    delivery_id,
                    headers.get(signing.EVENT_HEADER) or "",
                    int(headers.get(signing.ATTEMPT_HEADER) or 0),
                    status,
                    verified,
                    body,
                )
            )
        return status

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hooks"

    def subscription(self, sub_id: str, events: list[str], secret_env: str) -> WebhookSubscription:
        return WebhookSubscription(id=sub_id, url=self.url, events=events, secret_env=secret_env)

    def successes(self) -> Counter[str]:
        with self._lock:
            return Counter(hit.delivery_id for hit in self.hits if hit.status == 200)

    def snapshot(self) -> list[Hit]:
        with self._lock:
            return list(self.hits)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.hold is not None:
            self.hold.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
