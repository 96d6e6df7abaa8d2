"""Ports handed to tests and benchmarks: free, and never the same to two processes."""

from __future__ import annotations

import fcntl
import itertools
import os
import socket
import subprocess
import sys

import pytest

from click2call.demo import sipp


def test_a_handed_out_port_is_free_on_udp_and_tcp_and_not_handed_out_again() -> None:
    ports = {sipp.free_port() for _ in range(20)}
    assert len(ports) == 20
    for port in ports:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, kind) as probe:
                probe.bind(("127.0.0.1", port))


def test_another_process_cannot_claim_a_port_this_one_holds() -> None:
    port = sipp.free_port()
    fd = os.open(sipp._CLAIM_FOLDER / str(port), os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked_by_us = False
        except OSError:
            locked_by_us = True
    finally:
        os.close(fd)
    assert locked_by_us
    code = f"from click2call.demo import sipp; print(sipp._claim({port}))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert other.stdout.strip() == "False"


def test_consecutive_ports_are_all_claimed() -> None:
    first = sipp.free_ports_in_a_row(3)
    assert {first, first + 1, first + 2} <= set(sipp._CLAIMS)


def test_ports_in_a_row_claimed_in_part_are_let_go(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process holds the last of a row: the ones before it are not kept locked (nor
    their files left open), and another row is found."""
    real_claim, real_free_port = sipp._claim, sipp.free_port
    first = real_free_port()
    held_elsewhere = first + 2

    def claim(port: int) -> bool:
        return port != held_elsewhere and real_claim(port)

    monkeypatch.setattr(
        sipp, "free_port", itertools.chain([first], iter(real_free_port, 0)).__next__
    )
    monkeypatch.setattr(sipp, "_claim", claim)
    assert sipp.free_ports_in_a_row(3) != first
    assert first not in sipp._CLAIMS and first + 1 not in sipp._CLAIMS
    assert real_claim(first + 1)  # nobody holds it now


def test_a_claim_folder_of_another_user_leaves_the_probe_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refused(*_args: object) -> int:
        raise PermissionError("not yours")

    monkeypatch.setattr(sipp.os, "open", refused)
    port = sipp.free_port()  # found, not locked, no PermissionError
    assert port not in sipp._CLAIMS
