"""The dashboard's form posts. Every one checks its CSRF token before anything else.

A post from the dashboard's scripts (Accept: application/json) gets JSON back; a plain
form post gets a redirect to the page that shows the outcome.
"""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from click2call.api import fields
from click2call.api.access import SESSION_COOKIE, audited, in_store_thread, runtime_of
from click2call.api.schemas import CallOut
from click2call.auth import Identity
from click2call.errors import Forbidden, InvalidInput, Unauthorized
from click2call.service import CallRequest
from click2call.ui.pages import signin_page
from click2call.ui.session import (
    SIGNIN_COOKIE,
    Visitor,
    check_form,
    clear_cookie,
    form_visitor,
    set_cookie,
)

router = APIRouter(prefix="/ui")
_KEY = re.compile(fields.KEY, re.ASCII)
_LABEL = re.compile(r"[^\x00-\x1f\x7f\u0080-\u009f\u2028\u2029]{1,128}")


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value.strip() or None if isinstance(value, str) else None


def _reply(request: Request, body: dict[str, object], page: str, status: int = 200) -> Response:
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(body, status_code=status)
    return RedirectResponse(page, status_code=303)


def _identity(who: Visitor) -> Identity:
    return Identity(who.key.tenant, "session", who.key.id)


@router.post("/signin")
async def signin(request: Request) -> Response:
    form = await request.form()
    check_form(request, request.cookies.get(SIGNIN_COOKIE), _text(form, "csrf"))
    runtime = runtime_of(request)
    key_text = _text(form, "key") or ""
    try:
        with audited(request, "ui.signin") as decision:
            valid = _KEY.fullmatch(key_text)
            key = await in_store_thread(request, runtime.keys.lookup, key_text) if valid else None
            if key is None:
                raise Unauthorized("that API key is not valid or has been revoked")
            if runtime.settings.tenant(key.tenant) is None:
                raise Unauthorized(f"this key's client '{key.tenant}' is not configured here")
            decision.identity = Identity(key.tenant, "key", key.id)
    except Unauthorized as exc:
        return signin_page(request, exc.message[:1].upper() + exc.message[1:] + ".", status=401)
    lifetime = timedelta(minutes=runtime.settings.server.session_minutes)
    token = await in_store_thread(request, runtime.sessions.open, key, runtime.clock(), lifetime)
    response = RedirectResponse("/ui/live", status_code=303)
    set_cookie(request, response, SESSION_COOKIE, token, int(lifetime.total_seconds()))
    clear_cookie(response, SIGNIN_COOKIE)
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    form = await request.form()
    who = await form_visitor(request, _text(form, "csrf"))
    runtime = runtime_of(request)
    await in_store_thread(request, runtime.sessions.close, who.token, runtime.clock())
    response = RedirectResponse("/ui/signin", status_code=303)
    clear_cookie(response, SESSION_COOKIE)
    return response


@router.post("/calls")
async def place_call(request: Request) -> Response:
    form = await request.form()
    # Audited from the start: a forged form (CSRF) or bad input is a refusal on record.
    with audited(request, "ui.calls") as decision:
        who = await form_visitor(request, _text(form, "csrf"))
        decision.identity = _identity(who)
        order = _call_request(form, who.key.tenant)
        decision.call = call = await runtime_of(request).service.place(order)
    return _reply(request, CallOut.of(call).model_dump(mode="json"), f"/ui/calls/{call.id}", 201)


def _call_request(form: FormData, tenant: str) -> CallRequest:
    agent = _text(form, "agent") or "extension"
    if agent not in ("extension", "phone"):
        raise InvalidInput("agent", "must be 'extension' or 'phone'")
    return CallRequest(
        tenant=tenant,
        extension=fields.extension(fields.required("extension", _text(form, "extension")))
        if agent == "extension"
        else None,
        tech=fields.tech(_text(form, "tech")) if agent == "extension" else None,
        phone=fields.phone("phone", fields.required("phone", _text(form, "phone")))
        if agent == "phone"
        else None,
        destination=fields.phone(
            "destination", fields.required("destination", _text(form, "destination"))
        ),
        outboundcid=fields.caller_id(_text(form, "outboundcid")),
        foreignid=fields.foreignid(_text(form, "foreignid")),
    )


@router.post("/calls/{ref}/hangup")
async def hangup(request: Request, ref: str) -> Response:
    form = await request.form()
    service = runtime_of(request).service
    with audited(request, "ui.hangup") as decision:
        who = await form_visitor(request, _text(form, "csrf"))
        decision.identity = _identity(who)
        ref = fields.name("id", ref)
        decision.call = await in_store_thread(request, service.get, ref, who.key.tenant)
        call = await service.hangup(decision.call.uniqueid, who.key.tenant)
    return _reply(request, CallOut.of(call).model_dump(mode="json"), "/ui/live", 202)


async def _admin(request: Request, form: FormData) -> Visitor:
    who = await form_visitor(request, _text(form, "csrf"))
    if not who.key.admin:
        raise Forbidden("only admin keys (keys create --admin) may manage keys")
    return who


@router.post("/keys")
async def create_key(request: Request) -> Response:
    form = await request.form()
    who = await _admin(request, form)
    label = _text(form, "label")
    if label is not None and not _LABEL.fullmatch(label):
        raise InvalidInput("label", "must be 1-128 characters without control characters")
    runtime = runtime_of(request)
    key, secret = await in_store_thread(
        request,
        runtime.keys.create,
        who.key.tenant,
        label,
        runtime.clock(),
        admin=form.get("admin") == "on",
    )
    body = {"id": key.id, "prefix": key.prefix, "label": key.label, "admin": key.admin}
    return _reply(request, body | {"key": secret}, "/ui/keys", 201)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: int) -> Response:
    form = await request.form()
    who = await _admin(request, form)
    runtime = runtime_of(request)
    revoked = await in_store_thread(
        request, runtime.keys.revoke, key_id, runtime.clock(), tenant=who.key.tenant
    )
    if not revoked:
        raise InvalidInput("key", f"no active key {key_id} in tenant {who.key.tenant}")
    return _reply(request, {"id": key_id, "revoked": True}, "/ui/keys")
