"""The byte shapes of the two compatible links, success and failure alike.

/web/dial.php              text:  "response: true\\nunique: <id>\\n" (+ "error: <reason>\\n")
/voipe/dial_external.php   JSON:  {"src":"502760206","uniqueid":"<epoch>.<seq>","status":"ok"}
"""

from __future__ import annotations

import json

from fastapi.responses import PlainTextResponse, Response

DIAL_PATH = "/web/dial.php"
EXTERNAL_PATH = "/voipe/dial_external.php"


def dial_text(
    ok: bool,
    unique: object,
    error: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> PlainTextResponse:
    text = f"response: {'true' if ok else 'false'}\nunique: {unique}\n"
    if error is not None:
        text += f"error: {error}\n"
    return PlainTextResponse(text, status_code=status, headers=headers)


def external_json(
    body: dict[str, str], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    # Compact separators and this key order are what existing integrations parse.
    text = json.dumps(body, separators=(",", ":"))
    return Response(text, status_code=status, media_type="application/json", headers=headers)
