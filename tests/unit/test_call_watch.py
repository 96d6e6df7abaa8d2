from __future__ import annotations

from click2call.call_watch import STEPS, sse_events


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
