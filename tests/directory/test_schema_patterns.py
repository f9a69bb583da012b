"""The patterns the OpenAPI document states are the rules the validators apply: for any string, the
pattern matches exactly when the validator accepts (a mismatch would make a valid-looking request fail,
or a refused one look valid, for a client that trusts the document)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from directory.schemas import ONE_LINE, PHONE, PRINTABLE, _one_line, _phone, printable


def _accepts(validator, value: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        validator(value)
    except ValueError:
        return False
    return True


@given(st.text(alphabet="0123456789+ .()-x", max_size=24))
def test_the_phone_pattern_is_the_phone_rule(value: str) -> None:
    assert (re.fullmatch(PHONE, value) is not None) == _accepts(_phone, value)


def test_the_phone_pattern_on_examples() -> None:
    for good in ("+33 1 23 45 67 89", "01 23 45 67 89", "(01).23-45-67-89", "+442079460000"):
        assert re.fullmatch(PHONE, good), good
    for bad in ("", "+", "0123", "00 23 45 67 89", "+0 123 456 789", "01 23 45 67 89 0", "01a23456789"):
        assert not re.fullmatch(PHONE, bad), bad


# Text without lone surrogates (JSON Schema has no way to say "encodable"; hypothesis never sends them).
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)


@given(_TEXT)
def test_the_printable_pattern_is_the_printable_rule(value: str) -> None:
    assert (re.fullmatch(PRINTABLE, value) is not None) == _accepts(printable, value)


@given(_TEXT)
def test_the_one_line_pattern_is_the_one_line_rule(value: str) -> None:
    accepted = _accepts(printable, value) and _accepts(_one_line, value)
    assert (re.fullmatch(ONE_LINE, value) is not None) == accepted
