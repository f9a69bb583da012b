"""The patterns the OpenAPI document states are the rules the validators apply: for any string, the
pattern matches exactly when the validator accepts (a mismatch would make a valid-looking request fail,
or a refused one look valid, for a client that trusts the document)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from directory.schemas import (
    FILLED,
    FILLED_LINE,
    ONE_LINE,
    PHONE,
    PRINTABLE,
    Filled,
    Input,
    Name,
    _one_line,
    _phone,
    printable,
)


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


class _Filled(Input):
    value: Filled


class _Name(Input):
    value: Name


# With the whitespace Python strips and JSON Schema's \s knows, so blank values are common.
_SPACED = st.text(st.sampled_from(" \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u2003\u3000\ufeffa\x01é"), max_size=6)


def _model_accepts(model: type[Input], value: str) -> bool:
    try:
        model(value=value)
    except ValidationError:
        return False
    return True


@given(_SPACED)
def test_the_filled_pattern_is_what_a_request_may_send(value: str) -> None:
    """Judged on the value as sent: the server strips surrounding whitespace before its rules."""
    assert (re.fullmatch(FILLED, value) is not None) == _model_accepts(_Filled, value)


@given(_SPACED)
def test_the_name_pattern_is_what_a_request_may_send(value: str) -> None:
    assert (re.fullmatch(FILLED_LINE, value) is not None) == _model_accepts(_Name, value)


def test_a_blank_value_is_refused_as_blank() -> None:
    with pytest.raises(ValidationError, match="must not be blank"):
        _Name(value=" \xa0\u3000")
