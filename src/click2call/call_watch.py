"""`click2call call`: place a call through a server's HTTP API and watch it live.

The call's history so far comes from `GET /api/v1/calls/{id}/events`; what follows from
the live feed (`GET /api/v1/events`, resumed from the newest id seen, so nothing falls
between the two). A rich progress bar moves one step per state until the call ends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from click2call.calls import CallState

STEPS = tuple(state.value for state in CallState)  # queued … ended
EXIT_COMPLETED, EXIT_NOT_COMPLETED, EXIT_REFUSED = 0, 1, 2
RECONNECTS = 5  # attempts in a row, a second apart, before giving up on the server


@dataclass(frozen=True, slots=True)
class Seen:
    """One event of the watched call."""

    id: int
    state: str
    result: str | None
    call: dict[str, Any]


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, str, str]]:
    """(id, event, data) of each event in a stream of SSE lines; comments are skipped."""
    fields: dict[str, list[str]] = {}
    for line in lines:
        if line == "":
            if "data" in fields:
                yield (
                    "".join(fields.get("id", [""])),
                    "".join(fields.get("event", ["message"])),
                    "\n".join(fields["data"]),
                )
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value.removeprefix(" "))


class Watch:
    """Places one call and follows it until it ends."""

    def __init__(self, client: httpx.Client, console: Console) -> None:
        self._client = client
        self._console = console

    def run(self, order: dict[str, str]) -> int:
        reply = self._client.post("/api/v1/calls", json=order)
        if reply.status_code != 201:
            # What the server and the peers said is text, not markup ("[cause 18]").
            self._console.print(f"[red]refused ({reply.status_code}):[/] {escape(_message(reply))}")
            return EXIT_REFUSED
        call = reply.json()
        self._console.print(
            f"call {call['id']} ({call['uniqueid']}): {call['agent']['number']} → "
            f"{call['destination']}"
        )
        last = self._follow(call)
        return self._summary(last)

    def _follow(self, call: dict[str, Any]) -> Seen:
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self._console, transient=False) as progress:
            task = progress.add_task("placing", total=len(STEPS))
            last: Seen | None = None
            for seen in self._events(call):
                last = seen
                label = seen.state.replace("_", " ")
                if seen.result:
                    label = f"ended: {seen.result}"
                progress.update(task, completed=STEPS.index(seen.state) + 1, description=label)
                if seen.state == "ended":
                    progress.update(task, completed=len(STEPS))
                    break
        assert last is not None
        return last

    def _events(self, call: dict[str, Any]) -> Iterator[Seen]:
        history = self._client.get(f"/api/v1/calls/{call['id']}").json()
        last_id = 0
        for event in history.get("events") or []:
            last_id = max(last_id, event["id"])
            yield Seen(event["id"], event["state"], event["result"], history)
        if history["state"] == "ended":
            return
        failures = 0
        while True:  # the feed, reconnected from the last id whenever it drops
            try:
                for seen in self._feed(call, last_id):
                    failures = 0
                    last_id = seen.id
                    yield seen
                    if seen.state == "ended":
                        return
            except httpx.TransportError:
                failures += 1
                if failures > RECONNECTS:
                    raise
                time.sleep(1)

    def _feed(self, call: dict[str, Any], after: int) -> Iterator[Seen]:
        params = {"tenant": call["tenant"]}
        headers = {"Last-Event-ID": str(after)}
        with self._client.stream("GET", "/api/v1/events", params=params, headers=headers) as feed:
            feed.raise_for_status()
            for event_id, _type, data in sse_events(feed.iter_lines()):
                body = json.loads(data)
                if body["call"]["id"] == call["id"]:
                    state = body["call"]["state"]
                    yield Seen(int(event_id), state, body["call"]["result"], body["call"])

    def _summary(self, last: Seen) -> int:
        call = last.call
        talk = call.get("talk_seconds")
        detail = f", talked {talk:.1f} s" if talk is not None else ""
        cause = f" ({escape(call['cause'])})" if call.get("cause") else ""
        colour = "green" if last.result == "completed" else "red"
        self._console.print(f"[{colour}]{last.result}[/]{cause}{detail}")
        return EXIT_COMPLETED if last.result == "completed" else EXIT_NOT_COMPLETED


def _message(reply: httpx.Response) -> str:
    try:
        error = reply.json()["error"]
    except (ValueError, KeyError, TypeError):
        return reply.text[:200]
    field = f" [{error['field']}]" if error.get("field") else ""
    return f"{error.get('message', '')}{field}"
