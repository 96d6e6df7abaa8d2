"""Command line about calls: `click2call call …` (place one, watch it) and
`click2call calls export --since … > calls.csv` (history as CSV, read from the database)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from datetime import datetime

from click2call.calls import CallState, Result
from click2call.search import parse_time
from click2call.settings import Settings

API_KEY_ENV = "CLICK2CALL_API_KEY"
SettingsOf = Callable[[str | None], Settings]


def _time(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-11-25 or 2026-11-25T06:00:00Z)"
        ) from None


def export(args: argparse.Namespace, settings_of: SettingsOf) -> int:
    from click2call.calls_csv import csv_lines
    from click2call.errors import InvalidInput
    from click2call.search import Search, call_filter
    from click2call.store import open_database
    from click2call.store.database import describe
    from click2call.store.history import History

    settings = settings_of(args.config)
    tenant = settings.tenant(args.tenant) if args.tenant else None
    if args.tenant and tenant is None:
        raise SystemExit(f"click2call: no tenant named {args.tenant!r} in the configuration")
    search = Search(
        since=args.since,
        until=args.until,
        state=CallState(args.state) if args.state else None,
        result=Result(args.result) if args.result else None,
        extension=args.extension,
        phone=args.phone,
        destination=args.destination,
        foreignid=args.foreignid,
    )
    try:
        where = call_filter(search, tenant)
    except InvalidInput as exc:
        raise SystemExit(f"click2call: --{exc.field}: {exc.reason}") from None
    print(f"database: {describe(settings.server.database)}", file=sys.stderr)  # stdout: CSV
    history = History(open_database(settings.server.database))
    for text in csv_lines(history.all(where)):
        sys.stdout.write(text)
    return 0


def call(args: argparse.Namespace, settings_of: SettingsOf) -> int:
    import httpx
    from rich.console import Console

    from click2call.call_watch import Watch

    url = args.url
    if url is None:
        server = settings_of(args.config).server
        host = "127.0.0.1" if server.host in ("0.0.0.0", "::", "") else server.host
        url = f"http://{f'[{host}]' if ':' in host else host}:{server.port}"
    key = args.key or os.environ.get(API_KEY_ENV)
    order = {"destination": args.destination}
    order.update({"extension": args.extension} if args.extension else {"phone": args.phone})
    if args.tenant:
        order["tenant"] = args.tenant
    headers = {"X-API-Key": key} if key else {}
    timeout = httpx.Timeout(10, read=60)  # the feed sends a keep-alive every 15 s
    with httpx.Client(base_url=url, headers=headers, timeout=timeout, trust_env=False) as client:
        try:
            return Watch(client, Console()).run(order)
        except httpx.HTTPError as exc:
            raise SystemExit(f"click2call: {url}: {exc}") from None


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    config: argparse.ArgumentParser,
    settings_of: SettingsOf,
) -> None:
    """Register `call` and `calls export`; `config` is the parent parser giving --config."""
    command = commands.add_parser(
        "call", help="place a call through the server's API and watch it", parents=[config]
    )
    agent = command.add_mutually_exclusive_group(required=True)
    agent.add_argument("--extension", help="the agent's extension, e.g. 200")
    agent.add_argument("--phone", help="the agent's mobile, called through the trunk")
    command.add_argument("--destination", required=True, help="the number to call")
    command.add_argument("--tenant", help="default: the key's tenant")
    command.add_argument("--url", help="server URL (default: from [server] of the config)")
    command.add_argument("--key", help=f"API key (default: ${API_KEY_ENV})")
    command.set_defaults(func=lambda args: call(args, settings_of))

    command = commands.add_parser("calls", help="call history", parents=[config])
    actions = command.add_subparsers(dest="action", required=True)
    csv = actions.add_parser(
        "export",
        help="calls as CSV on stdout, newest first, read from the database",
        parents=[config],
    )
    csv.add_argument("--since", type=_time, required=True, help="ISO 8601, created at or after")
    csv.add_argument("--until", type=_time, help="ISO 8601, created before")
    csv.add_argument("--tenant", help="one tenant (default: every tenant)")
    csv.add_argument("--state", choices=[state.value for state in CallState])
    csv.add_argument("--result", choices=[result.value for result in Result])
    for name in ("extension", "phone", "destination", "foreignid"):
        csv.add_argument(f"--{name}")
    command.set_defaults(func=lambda args: export(args, settings_of))
