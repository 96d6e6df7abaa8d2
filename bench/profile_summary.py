"""The top frames of a py-spy profile recorded with `--format raw` (collapsed stacks).

python -m bench.profile_summary PROFILE.txt [N]
"""

from __future__ import annotations

import collections
import re
import sys

_FRAME = re.compile(r"(?P<function>.*) \((?P<path>.*?)(?::\d+)?\)$")
# Frames every request passes through: their inclusive share says nothing.
_WRAPPERS = (
    "main (",
    "serve (",
    "<module> (",
    "BodyLimit.",
    "AccessLog.",
    "HttpLatency.",
    "observe (",
)


def _short(frame: str) -> str:
    """`function (module path)`, without the line number or the install prefix."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    path = re.sub(r".*/(site-packages|src|lib/python3\.\d+)/", "", match["path"])
    return f"{match['function']} ({path})"


def summarise(raw: str, top: int = 15) -> str:
    """Self time per frame, then inclusive time of our own code, as shares of all samples;
    and how the samples split between event loops and other threads."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [_short(f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        own[frames[-1]] += samples
        for name in set(frames):
            if "click2call/" in name and not name.startswith(_WRAPPERS):
                inclusive[name] += samples
        in_loop = any(f.startswith("Runner.run (") for f in frames)  # asyncio or uvloop
        threads["event loop" if in_loop else "other threads"] += samples
    if total == 0:
        return "  (no samples)"
    lines = [f"  {total} samples; " + ", ".join(f"{k} {v / total:.0%}" for k, v in threads.items())]
    lines.append("  self:")
    lines += [f"    {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    lines.append("  inclusive, click2call code:")
    lines += [f"    {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    with open(sys.argv[1]) as profile:
        print(summarise(profile.read(), int(sys.argv[2]) if len(sys.argv) > 2 else 15))
