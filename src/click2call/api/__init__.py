"""The HTTP side: compatible links, the v1 JSON API, and the app that serves them."""

from click2call.api.app import create_app

__all__ = ["create_app"]
