"""A throwaway PostgreSQL cluster on loopback: initdb under a temporary folder, pg_ctl on a
free port, trust authentication for its one user, deleted when stopped.

PostgreSQL refuses to run as root; as root the cluster runs as `nobody`.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from click2call.demo.sipp import free_port

USER = "click2call"
# Only a machine crash could lose what fsync=off leaves unsynced, and the cluster does not
# outlive the run. Commits stay synchronous: the outage drill kills the server, and a
# committed call must survive that.
SETTINGS = (
    "fsync=off",
    "full_page_writes=off",
    "max_connections=300",
    "listen_addresses='127.0.0.1'",
    "unix_socket_directories=''",
)


def _bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not versions:
        raise RuntimeError("PostgreSQL is not installed: `make system-deps` installs it")
    return Path(versions[-1]).parent


@dataclass
class PostgresCluster:
    port: int = field(default_factory=lambda: free_port(socket.SOCK_STREAM))
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="c2c-pg-")))
    _names: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def _run(self, *args: str) -> None:
        command = [str(_bindir() / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "nobody", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed:\n{done.stderr}{done.stdout}{tail}")

    def start(self) -> PostgresCluster:
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.folder, nobody.pw_uid, nobody.pw_gid)
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8")
        self.resume()
        return self

    def resume(self) -> None:
        """Start the server of an existing cluster (after `pause`), waiting until it answers."""
        options = " ".join(f"-c {s}" for s in (f"port={self.port}", *SETTINGS))
        log = str(self.folder / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start")

    def pause(self) -> None:
        """Stop the server at once, keeping its data (an outage)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """The server's processes stopped where they stand (SIGSTOP), and let go on after:
        connections stay open and new ones are accepted, but nothing answers, as with a host
        that hangs. Clients wait out their timeouts instead of being refused at once."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGSTOP)  # first: it starts no backend from here on
        children = _children(postmaster)
        for pid in children:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in children:
                os.kill(pid, signal.SIGCONT)
            os.kill(postmaster, signal.SIGCONT)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """The URL of a new, empty database."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by `new_database`, ending its leftover connections."""
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _children(parent: int) -> list[int]:
    """The ids of the processes whose parent is `parent` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            after_name = stat.read_text().rsplit(")", 1)[1].split()  # state, ppid, ...
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(after_name[1]) == parent:
            found.append(int(stat.parent.name))
    return found
