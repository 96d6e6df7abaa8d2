from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from click2call.settings import HostPort, Settings, load_settings

EXAMPLE = Path(__file__).parents[2] / "examples" / "click2call.toml"


def test_defaults_run_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLICK2CALL_CONFIG", raising=False)
    settings = load_settings()
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8080)
    assert settings.server.database == "sqlite:///click2call.db"
    assert settings.compat_tenant.name == "default"
    assert settings.compat_tenant.sip.pbx_address == HostPort(host="127.0.0.1", port=5070)


def test_the_documented_example_is_valid() -> None:
    settings = load_settings(EXAMPLE)
    tenant = settings.compat_tenant
    assert tenant.default_outbound_cid == "036411111"
    assert tenant.extensions["200"].outbound_cid == "036499999"
    assert tenant.agent_ring_timeout == 30


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[server]\nport = 9000\nhost = "127.0.0.2"\n')
    monkeypatch.setenv("CLICK2CALL_SERVER__PORT", "9100")
    monkeypatch.setenv("CLICK2CALL_CONFIG", str(config))
    settings = load_settings()
    assert (settings.server.host, settings.server.port) == ("127.0.0.2", 9100)


def test_the_password_is_never_printed() -> None:
    settings = Settings(tenants=[{"name": "t", "sip": {"password": "hunter2"}}])  # type: ignore[list-item]
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in settings.model_dump_json()
    assert settings.tenants[0].sip.password.get_secret_value() == "hunter2"


@pytest.mark.parametrize(
    ("tenants", "message"),
    [
        ([{"name": "a"}, {"name": "a"}], "unique"),
        ([{"name": "bad name"}], "letters"),
        ([{"name": "a", "region": "XX"}], "unknown region"),
        ([{"name": "a", "default_outbound_cid": "03-641"}], "digits"),
        ([{"name": "a", "sip": {"pbx": "host:notaport"}}], "int"),
        ([{"name": "a", "surprise": 1}], "Extra inputs"),
        ([{"name": "a", "asterisk": {"mobile_channel": "Local/1@x"}}], "phone"),
        ([{"name": "a", "asterisk": {"context": "from\r\ninternal"}}], "CR, LF"),
        ([{"name": "a", "engine": "freeswitch"}], "sip"),
    ],
)
def test_bad_configuration_is_refused_clearly(
    tenants: list[dict[str, object]], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(tenants=tenants)  # type: ignore[arg-type]


def test_host_port() -> None:
    assert HostPort.parse("pbx.example:5070") == HostPort(host="pbx.example", port=5070)
    assert HostPort.parse("pbx.example") == HostPort(host="pbx.example", port=5060)
    assert HostPort.parse("[::1]:5070") == HostPort(host="::1", port=5070)
    assert str(HostPort(host="::1", port=5070)) == "[::1]:5070"


def test_a_relative_database_is_read_beside_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "given.toml").write_text('[server]\ndatabase = "sqlite:///data/calls.db"\n')
    (folder / "default.toml").write_text("[server]\nport = 9000\n")
    (folder / "absolute.toml").write_text(f'[server]\ndatabase = "sqlite:///{tmp_path}/a.db"\n')
    monkeypatch.chdir(tmp_path)
    assert load_settings(folder / "given.toml").server.database == (
        f"sqlite:///{folder}/data/calls.db"
    )
    assert load_settings(folder / "default.toml").server.database == (
        f"sqlite:///{folder}/click2call.db"
    )
    assert load_settings(folder / "absolute.toml").server.database == f"sqlite:///{tmp_path}/a.db"
    monkeypatch.setenv("CLICK2CALL_SERVER__DATABASE", "sqlite:///here.db")
    assert load_settings(folder / "given.toml").server.database == "sqlite:///here.db"


def test_a_bad_toml_file_is_named_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("[server]\nport = 8080\nhost = 127.0.0.1\n")
    with pytest.raises(ValueError, match=r"broken\.toml: .*line 3") as raised:
        load_settings(config)
    assert str(config) in str(raised.value)


@pytest.mark.parametrize(
    ("proxies", "error"),
    [
        (["10.0.0.1/8"], "'10.0.0.1/8' is not an IP address or network"),
        (["proxy.example.com"], "'proxy.example.com' is not an IP address"),
        (["*", "10.0.0.1"], "'\\*' is not an IP address or network \\(or '\\*' alone\\)"),
    ],
)
def test_trusted_proxies_are_addresses_or_networks(proxies: list[str], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        Settings(server={"forwarded_allow_ips": proxies})
    allowed = ["10.0.0.0/8", "192.0.2.7", "::1"]
    assert Settings(server={"forwarded_allow_ips": allowed}).server.forwarded_allow_ips == allowed
    assert Settings(server={"forwarded_allow_ips": ["*"]}).server.forwarded_allow_ips == ["*"]
