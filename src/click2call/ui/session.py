"""The dashboard's session at the HTTP edge: the cookie, who is signed in, the CSRF check.

The cookie holds a random token (HttpOnly, SameSite=Strict); the store maps its hash to the
API key that signed in. Forms carry `csrf_token(token)`, which a page on another site cannot
compute because it cannot read the cookie. Before sign-in, a short-lived `c2c_signin` cookie
plays the same part for the sign-in form itself.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request, Response

from click2call.api.access import SESSION_COOKIE, in_store_thread, runtime_of
from click2call.auth import csrf_matches, csrf_token
from click2call.errors import Forbidden, Unauthorized
from click2call.store import ApiKey

SIGNIN_COOKIE = "c2c_signin"


@dataclass(frozen=True, slots=True)
class Visitor:
    """A signed-in person: the key they signed in with, and their session's CSRF token."""

    key: ApiKey
    token: str

    @property
    def csrf(self) -> str:
        return csrf_token(self.token)


async def visitor(request: Request) -> Visitor | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    runtime = runtime_of(request)
    key = await in_store_thread(request, runtime.sessions.lookup, token, runtime.clock())
    return None if key is None else Visitor(key, token)


def check_form(request: Request, token: str | None, given: str | None) -> None:
    """Refuse a form post that does not come from our own page."""
    origin = request.headers.get("origin")
    # Host only, not scheme: behind a TLS proxy the page is https while we may see http.
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden("cross-site form posts are refused")
    if not csrf_matches(token, given):
        raise Forbidden("the form's CSRF token is missing or wrong: reload the page and retry")


async def form_visitor(request: Request, given_csrf: str | None) -> Visitor:
    """The signed-in author of a form post; Unauthorized or Forbidden otherwise."""
    signed_in = await visitor(request)
    if signed_in is None:
        raise Unauthorized("your session has ended: sign in again")
    check_form(request, signed_in.token, given_csrf)
    return signed_in


def signin_token(request: Request) -> str:
    return request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(32)


def set_cookie(request: Request, response: Response, name: str, value: str, seconds: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=seconds,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_cookie(response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", httponly=True, samesite="strict")
