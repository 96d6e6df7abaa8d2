from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import pytest

from click2call.api.access import redacted_query
from click2call.auth import SECRET_PARAMS


def test_secrets_are_hidden_and_the_rest_kept() -> None:
    assert redacted_query("extension=200&key=c2c_secret&sig=abc") == "extension=200&key=***&sig=***"


def test_control_characters_cannot_forge_a_log_line() -> None:
    logged = redacted_query("foreignid=a%0D%0A127.0.0.1%20%22GET%20%2Fadmin%22%20200&tech=sip")
    assert "\r" not in logged and "\n" not in logged and " " not in logged
    assert logged.startswith("foreignid=a%0D%0A127.0.0.1")


@pytest.mark.parametrize(
    "query",
    [
        "extension=200&destination=0502760206&tech=sip&outboundcid=036411111&foreignid=123",
        "a=&b=c+d&e.f=~x-y_z",
        "key=secret",  # plain, but a secret: redacted
        "x=1&sig=abc",
        "a=b=c",  # "=" in a value is encoded again
        "a&b=1",  # a name alone gets its "="
        "a=1&&b=2",  # empty pairs go
        "a=%41&b=%2F",  # decoded and encoded again
        "k%65y=secret",  # an encoded secret's name is still a secret
        "",
    ],
)
def test_a_query_is_logged_as_decoding_and_encoding_it_again_would_write_it(query: str) -> None:
    pairs = parse_qsl(query, keep_blank_values=True)
    encoded = urlencode([(k, "***" if k in SECRET_PARAMS else v) for k, v in pairs], safe="*")
    assert redacted_query(query) == encoded
