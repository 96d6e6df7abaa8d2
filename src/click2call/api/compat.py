"""The two links existing integrations already call, answered in exactly their shapes
(`replies.py`). Both accept GET (query) and POST (form). They only translate shapes;
CallService decides.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from click2call.api import fields
from click2call.api.access import audited, identify, runtime_of
from click2call.api.errors import DOCUMENTED_FAILURES, failure_reply
from click2call.api.replies import DIAL_PATH, EXTERNAL_PATH, dial_text, external_json
from click2call.errors import Click2CallError, InvalidInput, Unauthorized
from click2call.numbers import parse_phone
from click2call.service import CallRequest

router = APIRouter(include_in_schema=True, tags=["compatible links"])

_SHARED_FIELDS = ("destination", "outboundcid", "foreignid", "callback_url", "key")
_DIAL_FIELDS = ("extension", "tech", "tenant", *_SHARED_FIELDS)
_EXTERNAL_FIELDS = ("client", "phone", *_SHARED_FIELDS)
_SIGNED_LINK = ("exp", "sig")
# CRM templates add their own parameters (cache busters, tracking); a few are ignored,
# more are refused, so a request cannot make the server parse thousands of them.
UNKNOWN_PARAMS_ALLOWED = 20


async def _params(request: Request, names: tuple[str, ...]) -> dict[str, str | None]:
    """The named fields from the query and, for POST, the form; each at most once."""
    sources = [request.query_params]
    if request.method == "POST":
        form = await _form(request, len(names) + len(_SIGNED_LINK) + UNKNOWN_PARAMS_ALLOWED)
        if form and "sig" in request.query_params:
            # The signature covers the query only: a form field would ride along unsigned.
            raise Unauthorized("a signed link carries all its fields in its signed query")
        sources.append(form)  # type: ignore[arg-type]
    known = {*names, *_SIGNED_LINK}
    unknown = sum(1 for s in sources for name, _ in s.multi_items() if name not in known)
    if unknown > UNKNOWN_PARAMS_ALLOWED:
        raise InvalidInput(
            "parameters", f"{unknown} unknown; at most {UNKNOWN_PARAMS_ALLOWED} are ignored"
        )
    values: dict[str, str | None] = {}
    for name in names:
        found = [v for source in sources for v in source.getlist(name)]
        if len(found) > 1:
            raise InvalidInput(name, "given more than once")
        value = found[0] if found else None
        if value is not None and not isinstance(value, str):
            raise InvalidInput(name, "must be a text value, not a file")
        values[name] = value
    return values


async def _form(request: Request, max_fields: int) -> FormData:
    """The POST form; the parser's own refusals (too many fields, a field too big, junk
    multipart) become InvalidInput, answered in the link's shape and audited."""
    try:
        return await request.form(max_fields=max_fields, max_part_size=64 * 1024)
    except HTTPException as exc:
        raise InvalidInput("body", str(exc.detail)) from None


def _call_request(p: dict[str, str | None], tenant: str, **agent: Any) -> CallRequest:
    """A CallRequest from the fields both links share, checked, and the link's agent."""
    destination = fields.required("destination", p["destination"])
    return CallRequest(
        tenant=tenant,
        destination=fields.phone("destination", destination),
        outboundcid=fields.caller_id(p["outboundcid"]),
        foreignid=fields.foreignid(p["foreignid"]),
        callback_url=fields.callback_url(p["callback_url"]),
        **agent,
    )


async def dial(request: Request) -> Response:
    runtime = runtime_of(request)
    try:
        with audited(request, "dial.php") as decision:
            p = await _params(request, _DIAL_FIELDS)
            claimed = fields.name("tenant", p["tenant"]) if p["tenant"] else None
            decision.identity = await identify(request, claimed, form_key=p["key"])
            decision.call = call = await runtime.service.place(
                _call_request(
                    p,
                    decision.identity.tenant,
                    extension=fields.extension(fields.required("extension", p["extension"])),
                    tech=fields.tech(p["tech"]),
                )
            )
    except Click2CallError as exc:
        return failure_reply(DIAL_PATH, exc)
    return dial_text(True, call.id)


async def dial_external(request: Request) -> Response:
    runtime = runtime_of(request)
    src = ""
    try:
        with audited(request, "dial_external.php") as decision:
            p = await _params(request, _EXTERNAL_FIELDS)
            client = fields.name("client", fields.required("client", p["client"]))
            decision.identity = await identify(request, client, form_key=p["key"])
            phone = fields.phone("phone", fields.required("phone", p["phone"]))
            tenant = runtime.settings.tenant(client)
            if tenant is not None:
                src = parse_phone(
                    "phone", phone, tenant.region, allow_internal=False
                ).national_significant
            decision.call = call = await runtime.service.place(
                _call_request(p, client, phone=phone)
            )
    except Click2CallError as exc:
        return failure_reply(EXTERNAL_PATH, exc, src)
    return external_json({"src": src, "uniqueid": call.uniqueid, "status": "ok"})


def _param(name: str, pattern: str, text: str, required: bool = False) -> dict[str, object]:
    schema = {"type": "string", "pattern": pattern}
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": text,
    }


def _doc(media: str, ok: str, parameters: list[dict[str, object]]) -> dict[str, object]:
    reply = {
        "content": {media: {"schema": {"type": "string" if media == "text/plain" else "object"}}}
    }
    failures = {str(code): {"description": text, **reply} for code, text in DOCUMENTED_FAILURES}
    return {
        "parameters": parameters,
        "responses": {"200": {"description": ok, **reply}, **failures},
    }


_CREDENTIALS = [
    _param("key", fields.KEY, "API key (or send X-API-Key / Authorization: Bearer)"),
    _param("exp", r"^[0-9]{1,12}$", "Signed link: expiry, unix seconds"),
    _param("sig", r"^[0-9a-fA-F]{64}$", "Signed link: HMAC-SHA256 of the canonical query"),
]
_COMMON = [
    _param("destination", fields.PHONE, "Number to call", required=True),
    _param("outboundcid", fields.CALLER_ID, "Caller ID the destination sees"),
    _param("foreignid", fields.FOREIGNID, "Your reference, stored with the call"),
    _param(
        "callback_url",
        fields.CALLBACK_URL,
        "URL that receives this call's events (signed webhooks; see README)",
    ),
]
_DIAL_DOC = _doc(
    "text/plain",
    "response: true / unique: <call id>",
    [
        _param("extension", fields.EXTENSION, "Extension that rings first", required=True),
        _param("tech", "^(sip|pjsip|SIP|PJSIP)$", "Channel technology (default sip)"),
        *_COMMON,
        _param("tenant", fields.NAME, "Tenant (default: the key's, else 'default')"),
        *_CREDENTIALS,
    ],
)
_EXTERNAL_DOC = _doc(
    "application/json",
    '{"src":"502760206","uniqueid":"<epoch>.<seq>","status":"ok"}',
    [
        _param("client", fields.NAME, "Tenant name", required=True),
        _param("phone", fields.PHONE, "The user's mobile, rung first", required=True),
        *_COMMON,
        *_CREDENTIALS,
    ],
)

for _method in ("GET", "POST"):
    router.add_api_route(
        DIAL_PATH,
        dial,
        methods=[_method],
        response_class=PlainTextResponse,
        summary="Extension click2call (compatible)",
        operation_id=f"dial_php_{_method.lower()}",
        openapi_extra=_DIAL_DOC,
    )
    router.add_api_route(
        EXTERNAL_PATH,
        dial_external,
        methods=[_method],
        summary="Mobile click2call (compatible)",
        operation_id=f"dial_external_php_{_method.lower()}",
        openapi_extra=_EXTERNAL_DOC,
    )
