"""schemathesis against the running server's own OpenAPI schema: no 5xx, no undocumented
status, content type or body. Its own server, so generated calls reach no shared peer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import launch

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


def test_the_api_keeps_its_own_contract(tmp_path: Path) -> None:
    process, server = launch(tmp_path)
    try:
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "run",
                f"{server.base_url}/openapi.json",
                "--checks",
                CHECKS,
                "--max-examples",
                "30",
                "--seed",
                "20261124",
                "--generation-deterministic",
                "--request-timeout",
                "10",
                # The live feed streams until the client leaves: each generated request
                # would wait out the timeout. tests/integration/test_feed.py covers it.
                "--exclude-path",
                "/api/v1/events",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
    finally:
        process.stop()
    if run.returncode != 0:
        pytest.fail(run.stdout[-6000:] + run.stderr[-2000:])
    assert "passed" in run.stdout.lower()
