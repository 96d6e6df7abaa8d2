"""The dashboard's pages. Each is an HTML shell; its script fills it from the JSON APIs.

No inline script or style: the Content-Security-Policy below allows only our own files.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from html import escape
from pathlib import Path
from string import Template

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from click2call.api import fields
from click2call.auth import csrf_token
from click2call.ui.session import SIGNIN_COOKIE, Visitor, set_cookie, signin_token, visitor

router = APIRouter(prefix="/ui")
STATIC = Path(__file__).parent / "static"
_TEMPLATES = Path(__file__).parent / "templates"
_SIGNIN_SECONDS = 3600
_NAV = (
    ("live", "Live calls"),
    ("history", "History"),
    ("place", "Place a call"),
    ("health", "Health"),
    ("keys", "Keys"),
)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@cache
def _template(name: str) -> Template:
    return Template((_TEMPLATES / f"{name}.html").read_text(encoding="utf-8"))


def render(
    name: str,
    title: str,
    who: Visitor | None,
    csrf: str,
    status: int = 200,
    **values: str,
) -> HTMLResponse:
    """The page `templates/<name>.html` inside the layout; every value is HTML-escaped."""
    safe = {k: escape(v) for k, v in values.items()} | {"csrf": escape(csrf)}
    layout = _template("layout").substitute(
        title=escape(title),
        csrf=escape(csrf),
        page=name,
        script=f'<script src="/ui/static/{name}.js" defer></script>'
        if (STATIC / f"{name}.js").exists()
        else "",
        nav=_nav(name, who),
        body=_template(name).substitute(safe),
    )
    return HTMLResponse(layout, status_code=status, headers=SECURITY_HEADERS)


def _nav(current: str, who: Visitor | None) -> str:
    if who is None:
        return ""
    links = "".join(
        f'<li><a href="/ui/{slug}"{" aria-current=page" if slug == current else ""}>{label}</a>'
        for slug, label in _NAV
        if slug != "keys" or who.key.admin
    )
    tenant = escape(who.key.tenant)
    return (
        f'<nav aria-label="Dashboard"><ul>{links}</ul>'
        f'<form method="post" action="/ui/signout" class="signout">'
        f'<input type="hidden" name="csrf" value="{escape(who.csrf)}">'
        f'<span class="tenant">Tenant <strong>{tenant}</strong></span>'
        f'<button type="submit">Sign out</button></form></nav>'
    )


def signin_page(request: Request, message: str = "", status: int = 200) -> HTMLResponse:
    token = signin_token(request)
    page = render("signin", "Sign in", None, csrf_token(token), status, message=message)
    set_cookie(request, page, SIGNIN_COOKIE, token, _SIGNIN_SECONDS)
    return page


@router.get("")
@router.get("/")
async def home(request: Request) -> Response:
    signed_in = await visitor(request) is not None
    return RedirectResponse("/ui/live" if signed_in else "/ui/signin", status_code=303)


@router.get("/signin")
async def signin(request: Request) -> Response:
    if await visitor(request) is not None:
        return RedirectResponse("/ui/live", status_code=303)
    return signin_page(request)


async def _page(request: Request, name: str, title: str, **values: str) -> Response:
    who = await visitor(request)
    if who is None:
        return RedirectResponse("/ui/signin", status_code=303)
    if name == "keys" and not who.key.admin:
        return render("forbidden", title, who, who.csrf, 403)
    return render(name, title, who, who.csrf, 200, **values)


def _shows(name: str, title: str) -> Callable[[Request], Awaitable[Response]]:
    async def show(request: Request) -> Response:
        return await _page(request, name, title)

    return show


for _slug, _label in _NAV:
    router.add_api_route(f"/{_slug}", _shows(_slug, _label), methods=["GET"])


@router.get("/calls/{ref}")
async def call_detail(request: Request, ref: str) -> Response:
    return await _page(request, "call", "Call", ref=fields.name("id", ref))
