"""workers.py: each worker's own SIP ports, and settings whose workers' ports would clash."""

from __future__ import annotations

from click2call.settings import Settings
from click2call.workers import for_worker, port_clash

TLS = {"tls_cert_file": "cert.pem", "tls_key_file": "key.pem"}


def test_each_worker_has_its_own_sip_and_tls_ports() -> None:
    settings = Settings(sip={"port": 5060, "tls_port": 5161, **TLS}, server={"node_id": "gw1"})
    ports = [
        (w.sip.port, w.sip.tls_port, w.server.node_id)
        for w in (for_worker(settings, i) for i in range(3))
    ]
    assert ports == [(5060, 5161, "gw1/w0"), (5061, 5162, "gw1/w1"), (5062, 5163, "gw1/w2")]


def test_workers_whose_plain_and_tls_ports_overlap_are_refused() -> None:
    defaults = Settings(sip=TLS)  # 5060 and 5061: worker 1's TCP would be worker 0's TLS
    assert port_clash(defaults, 1) is None
    assert port_clash(defaults, 2) == (
        "2 workers take SIP ports 5060-5061 (UDP/TCP) and 5061-5062 (TLS): they overlap; "
        "move [sip] tls_port"
    )
    assert port_clash(Settings(sip={"tls_port": 5161, **TLS}), 8) is None
    assert port_clash(Settings(sip={"port": 0, **TLS}), 8) is None  # ephemeral ports
    assert port_clash(Settings(), 2) is None  # no TLS listener
    assert "past port 65535" in (port_clash(Settings(sip={"tls_port": 65535, **TLS}), 2) or "")
