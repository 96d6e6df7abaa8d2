"""Command line: `click2call serve | demo | check-config`."""

from __future__ import annotations

import argparse
import logging
import sys

from pydantic import ValidationError

from click2call import __version__
from click2call.settings import Settings, load_settings


def _settings(path: str | None) -> Settings:
    try:
        return load_settings(path)
    except ValidationError as exc:
        # Field paths and rules only: the rejected values may be secrets.
        problems = "\n".join(
            f"  {'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise SystemExit(f"click2call: bad configuration:\n{problems}") from None
    except (OSError, ValueError) as exc:
        raise SystemExit(f"click2call: bad configuration: {exc}") from None


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from click2call.api import create_app
    from click2call.runtime import Runtime

    settings = _settings(args.config)
    logging.basicConfig(
        level=settings.server.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = create_app(Runtime(settings))
    uvicorn.run(
        app,
        host=settings.server.host,
        port=settings.server.port,
        log_level=settings.server.log_level,
        access_log=False,  # ours (api/access.py) hides keys and signatures
    )
    return 0


def check_config(args: argparse.Namespace) -> int:
    settings = _settings(args.config)
    print(f"configuration is valid: {len(settings.tenants)} tenant(s)")
    for tenant in settings.tenants:
        print(
            f"  {tenant.name}: engine={tenant.engine} pbx={tenant.sip.pbx} trunk={tenant.sip.trunk}"
        )
    return 0


def demo(args: argparse.Namespace) -> int:
    from click2call.demo import run_demo

    return run_demo()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="click2call", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (
        ("serve", serve, "run the HTTP server and the call engines"),
        ("check-config", check_config, "validate the configuration and exit"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument(
            "--config", help="TOML file (default: $CLICK2CALL_CONFIG or ./click2call.toml)"
        )
        command.set_defaults(func=func)
    command = commands.add_parser("demo", help="place one call between two SIPp phones on loopback")
    command.set_defaults(func=demo)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
