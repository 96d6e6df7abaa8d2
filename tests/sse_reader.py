"""A Server-Sent Events reader for tests: a real httpx stream in a thread, events queued."""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Received:
    id: int
    type: str
    body: dict[str, Any]


class FeedReader:
    """Reads `GET /api/v1/events` until stopped; `comments` counts keep-alive lines."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        self.events: queue.Queue[Received] = queue.Queue()
        self.comments = 0
        self.status: int | None = None
        self._stop = threading.Event()
        self._client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(30, read=60))
        self._headers = headers or {}
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> FeedReader:
        self._thread.start()
        assert self._started.wait(10), "the feed did not answer"
        return self

    def _run(self) -> None:
        try:
            self._read()
        except httpx.HTTPError:
            if not self._stop.is_set():  # closed by stop(): expected
                raise

    def _read(self) -> None:
        fields: dict[str, str] = {}
        with self._client.stream("GET", "/api/v1/events", headers=self._headers) as reply:
            self.status = reply.status_code
            self._started.set()
            for line in reply.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith(":"):
                    self.comments += 1
                elif line == "":
                    if "id" in fields:
                        body = json.loads(fields["data"])
                        self.events.put(Received(int(fields["id"]), fields["event"], body))
                    fields = {}
                else:
                    name, _, value = line.partition(": ")
                    fields[name] = fields[name] + "\n" + value if name in fields else value

    def until(self, call_id: int, type_: str, timeout: float = 20) -> list[Received]:
        """Events of `call_id` up to and including the first of `type_`."""
        seen: list[Received] = []
        while True:
            event = self.events.get(timeout=timeout)
            if event.body["call"]["id"] == call_id:
                seen.append(event)
                if event.type == type_:
                    return seen

    def stop(self) -> None:
        self._stop.set()
        self._client.close()
        self._thread.join(5)
