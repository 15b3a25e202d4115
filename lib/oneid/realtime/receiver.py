"""A webhook receiver on loopback that stands for the marketing-automation platform in the
demo, the tests and the benchmark: it checks each request's signature, records the arrival time
and counts idempotency keys (a repeated key is acknowledged again and counted as a duplicate,
as a real receiver deduplicates)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from dataclasses import dataclass, field

from oneid.realtime.delivery import KEY_HEADER, SIGNATURE_HEADER, Secret


@dataclass
class Received:
    """What arrived: first body and arrival (epoch ms) per key, and every repeat."""

    first: dict[str, tuple[dict, int]] = field(default_factory=dict)
    repeats: list[tuple[str, bytes]] = field(default_factory=list)
    bodies: dict[str, bytes] = field(default_factory=dict)
    bad_signatures: int = 0


class _Server(http.server.ThreadingHTTPServer):
    # the default listen backlog of 5 drops connections when the stream posts in parallel:
    # each dropped SYN is retried by the client after 1 s (seen as a 1 s delivery floor)
    request_queue_size = 128


class WebhookReceiver:
    """``with WebhookReceiver(secret) as receiver:`` serves ``receiver.url`` until the block
    ends. ``fail_first`` answers 503 to the first N requests (retries in tests)."""

    def __init__(self, secret: Secret, fail_first: int = 0) -> None:
        self.secret = secret
        self.received = Received()
        self.fail_first = fail_first
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/oneid/triggers"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keeps connections alive, as a platform's API does

            def end_headers(self):
                self.send_header("Content-Length", "0")  # every answer has an empty body
                super().end_headers()

            def do_POST(self):
                arrived = int(time.time() * 1000)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                key = self.headers.get(KEY_HEADER, "")
                with receiver._lock:
                    if receiver.fail_first > 0:
                        receiver.fail_first -= 1
                        self.send_response(503)
                        self.end_headers()
                        return
                    if self.headers.get(SIGNATURE_HEADER) != receiver.secret.sign(body):
                        receiver.received.bad_signatures += 1
                        self.send_response(401)
                        self.end_headers()
                        return
                    seen = receiver.received
                    if key in seen.first:
                        seen.repeats.append((key, body))
                    else:
                        seen.first[key] = (json.loads(body), arrived)
                        seen.bodies[key] = body
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        return Handler
