"""The edge grammar: nothing with a control character, and nothing outside each field's charset."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from click2call.api import fields
from click2call.calls import Tech
from click2call.errors import InvalidInput

CONTROL = st.sampled_from(["\r", "\n", "\x00", "\t", "\x1b", "\x7f", "\u2028", "\x85"])


def with_control(prefix: str) -> st.SearchStrategy[str]:
    return st.tuples(st.text(max_size=10), CONTROL, st.text(max_size=10)).map(
        lambda t: prefix + t[0] + t[1] + t[2]
    )


CHECKS = [
    lambda v: fields.phone("destination", v),
    fields.extension,
    fields.caller_id,
    fields.foreignid,
    lambda v: fields.name("client", v),
    fields.tech,
]


@pytest.mark.parametrize("check", CHECKS)
@given(value=with_control("1"))
def test_no_value_with_a_control_character_is_ever_accepted(
    check: Callable[[str], object], value: str
) -> None:
    with pytest.raises(InvalidInput):
        check(value)


@given(st.text(min_size=1, max_size=80))
def test_accepted_values_stay_inside_their_charset(value: str) -> None:
    allowed = {
        fields.extension: set("0123456789"),
        fields.caller_id: set("+0123456789"),
        fields.foreignid: set(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:@/+=-"
        ),
    }
    for check, charset in allowed.items():
        try:
            accepted = check(value)
        except InvalidInput:
            continue
        assert accepted is not None
        assert set(accepted) <= charset


def test_errors_name_the_field_and_the_rule() -> None:
    with pytest.raises(InvalidInput, match="invalid extension: contains a control character"):
        fields.extension("200\r\nAction: Originate")
    with pytest.raises(InvalidInput, match="invalid foreignid: must be 1-64"):
        fields.foreignid("a b")
    with pytest.raises(InvalidInput, match="invalid destination: is required"):
        fields.required("destination", "")


def test_optional_fields_treat_empty_as_absent() -> None:
    assert fields.caller_id("") is None
    assert fields.foreignid(None) is None
    assert fields.tech("") is Tech.SIP
    assert fields.tech("PJSIP") is Tech.PJSIP


def test_non_ascii_digits_are_not_digits() -> None:
    for value in ("\u0662\u0660\u0660", "\uff12\uff10\uff10"):  # Arabic-Indic, fullwidth
        with pytest.raises(InvalidInput):
            fields.extension(value)
