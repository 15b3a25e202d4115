"""A webhook receiver on loopback that stands for the marketing-automation platform in the
demo, the tests and the benchmark: it checks each request's signature, records the arrival time
and counts idempotency keys (a repeated key is acknowledged again and counted as a duplicate,
as a real receiver deduplicates).

It serves HTTP/1.1 keep-alive connections from an asyncio event loop in a daemon thread (a
thread per connection cost more Python time than the stream's sender)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field

from oneid.realtime.delivery import KEY_HEADER, SIGNATURE_HEADER, Secret, new_event_loop

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_KEY = KEY_HEADER.lower().encode()
_SIGNATURE = SIGNATURE_HEADER.lower().encode()


@dataclass
class Received:
    """What arrived: first body and arrival (epoch ms) per key, and every repeat."""

    first: dict[str, tuple[dict, int]] = field(default_factory=dict)
    repeats: list[tuple[str, bytes]] = field(default_factory=list)
    bodies: dict[str, bytes] = field(default_factory=dict)
    bad_signatures: int = 0


def _answer(status: int, reason: str) -> bytes:
    return f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n\r\n".encode()


class WebhookReceiver:
    """``with WebhookReceiver(secret) as receiver:`` serves ``receiver.url`` until the block
    ends. ``fail_first`` answers 503 to the first N requests (retries in tests)."""

    def __init__(self, secret: Secret, fail_first: int = 0) -> None:
        self.secret = secret
        self.received = Received()
        self.fail_first = fail_first
        self._loop = new_event_loop()
        self._server: asyncio.Server | None = None
        self._port = 0
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="webhook-receiver", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/oneid/triggers"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=512), self._loop
        ).result()
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while request := await reader.readline():
                headers: dict[bytes, bytes] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
                arrived = int(time.time() * 1000)
                writer.write(self._handle(request, headers, body, arrived))
                if headers.get(b"connection", b"").lower() == b"close":
                    break
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def _handle(self, request: bytes, headers: dict[bytes, bytes], body: bytes, arrived: int):
        if not request.startswith(b"POST "):
            return _answer(405, "Method Not Allowed")
        if self.fail_first > 0:
            self.fail_first -= 1
            return _answer(503, "Service Unavailable")
        if headers.get(_SIGNATURE, b"").decode("latin-1") != self.secret.sign(body):
            self.received.bad_signatures += 1
            return _answer(401, "Unauthorized")
        key = headers.get(_KEY, b"").decode("latin-1")
        seen = self.received
        if key in seen.first:
            seen.repeats.append((key, body))
        else:
            seen.first[key] = (json.loads(body), arrived)
            seen.bodies[key] = body
        return _OK
