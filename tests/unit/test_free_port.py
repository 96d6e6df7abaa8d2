"""Ports handed to tests and benchmarks: free, and never the same to two processes."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys

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
