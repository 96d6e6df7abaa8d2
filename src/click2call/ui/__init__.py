"""The dashboard: pages, their form actions, and the static assets both use.

pages.py     GET pages (HTML shells; data comes from the v1 API and /ui/api/*)
actions.py   POST forms: sign in/out, place, hang up, keys; each checks the CSRF token
data.py      JSON only the dashboard reads: health with refusals, the key list
session.py   the session cookie and CSRF checks at the HTTP edge
static/      CSS and plain JavaScript, no library, no build step
"""

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from click2call.ui import actions, data, pages
from click2call.ui.pages import STATIC


def mount(app: FastAPI) -> None:
    router = APIRouter(include_in_schema=False)
    for part in (pages.router, actions.router, data.router):
        router.include_router(part)
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
