"""The click-to-call widget's API: tokens minted with an API key, calls placed with a token.

    POST /api/v1/widget-tokens        with an API key: a token for one agent, some origins
    POST /api/v1/widget/calls         with X-Widget-Token, from an allowed page: place a call
    GET  /api/v1/widget/calls/{id}    with the same token: a call that token placed
    GET  /widget.js                   the script a CRM page embeds

The token travels in a header, so every browser request is preflighted; a preflight is
answered only for origins some tenant allows, and the token then pins the exact tenant,
agent and origins (auth.read_widget_token, auth.check_widget_origin).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from click2call.api import fields
from click2call.api.access import audited, identify, in_store_thread, runtime_of
from click2call.api.errors import v1_error
from click2call.api.schemas import ERRORS, CallOut, _grammar, json_body, request_body
from click2call.auth import (
    Identity,
    WidgetClaims,
    check_widget_origin,
    mint_widget_token,
    origin_of,
    read_widget_token,
)
from click2call.calls import Tech
from click2call.errors import (
    CallNotFound,
    Click2CallError,
    Forbidden,
    InvalidInput,
    Unauthorized,
    UnknownTenant,
)
from click2call.service import CallRequest

router = APIRouter(tags=["widget"])
SECRET_NAME = "widget"  # noqa: S105 (the name of the server_secrets row, not a secret)
WIDGET_JS = Path(__file__).parents[1] / "ui" / "static" / "widget.js"
_ALLOWED_HEADERS = "Content-Type, X-Widget-Token"


class WidgetTokenCreate(BaseModel):
    """One agent: `extension` (+ `tech`) or `phone`; the pages it may be used on."""

    model_config = ConfigDict(extra="forbid")

    extension: str | None = Field(None, json_schema_extra={"pattern": fields.EXTENSION})
    tech: Literal["sip", "pjsip"] | None = None
    phone: str | None = Field(None, json_schema_extra={"pattern": fields.PHONE})
    minutes: float = Field(15, gt=0, description="Lifetime, at most the tenant's maximum")
    origins: list[str] | None = Field(
        None, description="Page origins; by default all the tenant's allowed_origins"
    )

    @field_validator("extension")
    @classmethod
    def _extension(cls, v: str | None) -> str | None:
        return None if v is None else _grammar(lambda: fields.extension(v))

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        return None if v is None else _grammar(lambda: fields.phone("phone", v))

    @model_validator(mode="after")
    def _one_agent(self) -> WidgetTokenCreate:
        if (self.extension is None) == (self.phone is None):
            raise ValueError("give exactly one of 'extension' or 'phone'")
        return self


class WidgetTokenOut(BaseModel):
    token: str
    expires_at: datetime
    origins: list[str]
    agent: dict[str, str | None]


class WidgetCallCreate(BaseModel):
    """The agent comes from the token: a request cannot name another one."""

    model_config = ConfigDict(extra="forbid")

    destination: str = Field(json_schema_extra={"pattern": fields.PHONE})
    foreignid: str | None = Field(None, json_schema_extra={"pattern": fields.FOREIGNID})


@router.post(
    "/api/v1/widget-tokens",
    status_code=201,
    response_model=WidgetTokenOut,
    responses=ERRORS,
    openapi_extra=request_body(WidgetTokenCreate),  # read after the key is checked
)
async def create_token(request: Request) -> WidgetTokenOut:
    """Mint a widget token (API key only). Give it to the CRM page, never the key."""
    runtime = runtime_of(request)
    with audited(request, "widget.tokens", refusals_only=True) as decision:
        decision.identity = identity = await identify(request, None)
        if identity.method != "key" or identity.key_id is None:
            raise Forbidden("widget tokens are minted with an API key")
        body = await json_body(request, WidgetTokenCreate)
        tenant = runtime.settings.tenant(identity.tenant)
        if tenant is None:
            raise UnknownTenant(identity.tenant)
        allowed = tenant.widget.allowed_origins
        if not allowed:
            raise Forbidden(
                f"tenant {tenant.name} allows the widget on no page: set [tenants.widget] "
                "allowed_origins"
            )
        origins = _origins(body.origins, allowed)
        minutes = min(body.minutes, tenant.widget.token_max_minutes)
    now = runtime.clock()
    expires = int(now.timestamp() + minutes * 60)
    claims = WidgetClaims(
        token_id=secrets.token_hex(12),
        tenant=identity.tenant,
        key_id=identity.key_id,
        agent_kind="extension" if body.extension else "external",
        agent_tech=(body.tech or "sip") if body.extension else None,
        agent_number=body.extension or body.phone or "",
        origins=tuple(origins),
        expires=expires,
    )
    token = mint_widget_token(
        claims, await in_store_thread(request, runtime.sessions.secret, SECRET_NAME)
    )
    return WidgetTokenOut(
        token=token,
        expires_at=datetime.fromtimestamp(expires, UTC),
        origins=origins,
        agent=_agent(claims),
    )


def _origins(requested: list[str] | None, allowed: list[str]) -> list[str]:
    if requested is None:
        return list(allowed)
    chosen = []
    for entry in requested:
        try:
            origin = origin_of(entry)
        except ValueError as exc:
            raise InvalidInput("origins", str(exc)) from None
        if origin not in allowed:
            raise InvalidInput("origins", f"{origin} is not in the tenant's allowed_origins")
        chosen.append(origin)
    if not chosen:
        raise InvalidInput("origins", "give at least one origin")
    return chosen


def _agent(claims: WidgetClaims) -> dict[str, str | None]:
    return {"kind": claims.agent_kind, "tech": claims.agent_tech, "number": claims.agent_number}


# --- calls from a page -----------------------------------------------------------------


def _cors(request: Request, response: Response) -> Response:
    """Let the page read the reply when its origin is one some tenant allows."""
    origin = request.headers.get("origin")
    if origin and _known_origin(request, origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    return response


def _known_origin(request: Request, origin: str) -> bool:
    try:
        normalised = origin_of(origin)
    except ValueError:
        return False
    tenants = runtime_of(request).settings.tenants
    return any(normalised in t.widget.allowed_origins for t in tenants)


@router.options("/api/v1/widget/calls", include_in_schema=False)
@router.options("/api/v1/widget/calls/{ref}", include_in_schema=False)
async def preflight(request: Request) -> Response:
    origin = request.headers.get("origin")
    if not origin or not _known_origin(request, origin):
        return Response(status_code=403)
    headers = {
        "Access-Control-Allow-Methods": "GET, POST",
        "Access-Control-Allow-Headers": _ALLOWED_HEADERS,
        "Access-Control-Max-Age": "600",
    }
    return _cors(request, Response(status_code=204, headers=headers))


async def _claims(request: Request, token: str | None) -> WidgetClaims:
    runtime = runtime_of(request)
    if not token:
        raise Unauthorized("a widget token is required (X-Widget-Token)")
    secret = await in_store_thread(request, runtime.sessions.secret, SECRET_NAME)
    claims = read_widget_token(token, secret, runtime.clock().timestamp())
    tenant = runtime.settings.tenant(claims.tenant)
    allowed = tenant.widget.allowed_origins if tenant else []
    check_widget_origin(claims, request.headers.get("origin"), allowed)
    key = await in_store_thread(request, runtime.keys.get, claims.key_id)
    if key is None or key.revoked_at is not None or key.tenant != claims.tenant:
        raise Unauthorized("the API key that minted this widget token was revoked")
    return claims


WidgetToken = Annotated[str | None, Header(alias="X-Widget-Token")]


@router.post(
    "/api/v1/widget/calls",
    status_code=201,
    response_model=CallOut,
    responses=ERRORS,
    # Parsed by the endpoint, not by FastAPI: after the token, and refused with CORS headers.
    openapi_extra=request_body(WidgetCallCreate),
)
async def place_call(request: Request, token: WidgetToken = None) -> Response:
    """Call `destination` for the token's agent, within the tenant's policy and limits.

    Errors are the v1 shape with CORS headers, so the page can show the sentence."""
    runtime = runtime_of(request)
    try:
        with audited(request, "widget.calls") as decision:
            claims = await _claims(request, token)
            decision.identity = Identity(claims.tenant, "widget token", claims.key_id)
            body = await json_body(request, WidgetCallCreate)
            extension = claims.agent_kind == "extension"
            order = CallRequest(
                tenant=claims.tenant,
                destination=fields.phone("destination", body.destination),
                extension=claims.agent_number if extension else None,
                tech=Tech(claims.agent_tech or "sip") if extension else None,
                phone=None if extension else claims.agent_number,
                foreignid=fields.foreignid(body.foreignid),
                widget_token=claims.token_id,
            )
            decision.call = call = await runtime.service.place(order)
    except Click2CallError as exc:
        return _cors(request, v1_error(exc))
    out = CallOut.of(call).model_dump(mode="json")
    return _cors(request, JSONResponse(out, status_code=201))


@router.get("/api/v1/widget/calls/{ref}", response_model=CallOut, responses=ERRORS)
async def get_call(
    request: Request,
    ref: Annotated[int, PathParam(ge=1)],
    token: WidgetToken = None,
) -> Response:
    """A call this token placed; any other call is 404, as if it did not exist."""
    runtime = runtime_of(request)
    try:
        claims = await _claims(request, token)
        call = await in_store_thread(request, runtime.service.get, str(ref), claims.tenant)
        if not await in_store_thread(request, runtime.sessions.placed_by, call.id, claims.token_id):
            raise CallNotFound(str(ref))
    except Click2CallError as exc:
        return _cors(request, v1_error(exc))
    return _cors(request, JSONResponse(CallOut.of(call).model_dump(mode="json")))


@router.get("/widget.js", include_in_schema=False)
async def widget_js() -> Response:
    return FileResponse(
        WIDGET_JS,
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )
