"""Protocol and decision modules are sans-IO: no sockets, clocks, threads or sippy."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "src" / "click2call"
PURE = [
    "calls.py",
    "numbers.py",
    "engines/sip/third_party.py",
    "engines/sip/message.py",
    "engines/sip/headers.py",
    "engines/sip/transaction.py",
    "engines/sip/auth.py",
    "engines/sip/challenges.py",
    "engines/sip/dialog.py",
    "engines/sip/leg.py",
    "engines/sip/snapshot.py",
    "engines/sip/probe.py",
    "engines/sip/sdp.py",
    "engines/sip/targets.py",
    "engines/sip/ringback.py",
    "api/fields.py",
    "engines/asterisk/codec.py",
    "engines/asterisk/tracker.py",
    "engines/asterisk/replies.py",
    "engines/asterisk/actions.py",
]
FORBIDDEN = {"asyncio", "socket", "time", "threading", "sippy", "select", "subprocess"}


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_no_io(module: str) -> None:
    tree = ast.parse((PACKAGE / module).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported.isdisjoint(FORBIDDEN), imported & FORBIDDEN


def test_only_the_sip_engine_imports_sippy() -> None:
    for path in PACKAGE.rglob("*.py"):
        if "sippy" in path.read_text() and "import" in path.read_text():
            relative = path.relative_to(PACKAGE).as_posix()
            tree = ast.parse(path.read_text())
            modules = {
                (n.module or "") if isinstance(n, ast.ImportFrom) else a.name
                for n in ast.walk(tree)
                if isinstance(n, ast.Import | ast.ImportFrom)
                for a in n.names
            }
            if any(m.startswith("sippy") for m in modules):
                assert relative.startswith("engines/sip/"), relative
