from __future__ import annotations

import io
from typing import cast

import httpx
import pytest
from rich.console import Console

from click2call.call_watch import STEPS, Seen, Watch, sse_events


def test_sse_lines_become_events_and_comments_are_skipped() -> None:
    lines = [
        "retry: 2000",
        "",
        ": keep-alive",
        "",
        "id: 7",
        "event: call.queued",
        "data: {",
        'data: "a": 1}',
        "",
        "id:8",
        "data:x",
        "",
    ]
    assert list(sse_events(lines)) == [("7", "call.queued", '{\n"a": 1}'), ("8", "message", "x")]


def test_the_bar_has_one_step_per_state() -> None:
    assert STEPS[0] == "queued" and STEPS[-1] == "ended" and len(STEPS) == 8


@pytest.mark.parametrize(
    "cause", ["SIP 480 Temporarily Unavailable [cause 18]", "SIP 603 Decline [/]"]
)
def test_a_cause_in_brackets_is_printed_as_said(cause: str) -> None:
    """A peer's reason phrase is text: rich read it as markup (lost, or a crash)."""
    out = io.StringIO()
    watch = Watch(client=cast(httpx.Client, None), console=Console(file=out, width=200))
    call = {"cause": cause, "talk_seconds": None}
    assert watch._summary(Seen(9, "ended", "destination_failed", call)) != 0
    assert f"destination_failed ({cause})" in out.getvalue()
