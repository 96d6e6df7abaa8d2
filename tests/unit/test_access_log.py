from __future__ import annotations

from click2call.api.access import redacted_query


def test_secrets_are_hidden_and_the_rest_kept() -> None:
    assert redacted_query("extension=200&key=c2c_secret&sig=abc") == "extension=200&key=***&sig=***"


def test_control_characters_cannot_forge_a_log_line() -> None:
    logged = redacted_query("foreignid=a%0D%0A127.0.0.1%20%22GET%20%2Fadmin%22%20200&tech=sip")
    assert "\r" not in logged and "\n" not in logged and " " not in logged
    assert logged.startswith("foreignid=a%0D%0A127.0.0.1")
