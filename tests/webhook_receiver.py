"""A real HTTP webhook receiver on loopback: verifies each delivery with the
`standardwebhooks` library and records what arrived, answering as the test tells it."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

from click2call.demo.sipp import free_port


@dataclass(frozen=True)
class Received:
    message_id: str
    type: str
    call_id: int
    sequence: int
    body: dict[str, object]
    path: str


@dataclass
class Receiver:
    secret: str
    port: int = field(default_factory=lambda: free_port(__import__("socket").SOCK_STREAM))
    status: int = 200  # what to answer; change it while running
    received: list[Received] = field(default_factory=list)
    attempts: list[tuple[str, int]] = field(default_factory=list)  # (webhook-id, answered)
    refused: list[str] = field(default_factory=list)  # bad signatures
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver.status
                with receiver._lock:
                    receiver.attempts.append((headers.get("webhook-id", ""), status))
                    try:
                        payload = Webhook(receiver.secret).verify(body, headers)
                    except Exception as exc:
                        receiver.refused.append(str(exc))
                        status = 401
                    else:
                        if 200 <= status < 300:
                            receiver.received.append(
                                Received(
                                    headers["webhook-id"],
                                    payload["type"],
                                    payload["call"]["id"],
                                    payload["sequence"],
                                    payload,
                                    self.path,
                                )
                            )
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def of_call(self, call_id: int) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.call_id == call_id]

    def types(self, call_id: int) -> list[str]:
        return [r.type for r in self.of_call(call_id)]

    def wait_for(self, call_id: int, last_type: str, timeout: float = 15) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.of_call(call_id)
            if got and got[-1].type == last_type:
                return got
            time.sleep(0.05)
        raise AssertionError(f"call {call_id}: got {self.types(call_id)}, waited for {last_type}")

    @staticmethod
    def dumps(r: Received) -> str:
        return json.dumps(r.body)
