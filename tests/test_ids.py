"""Numbers read from URIs, paths and headers: ASCII digits only, refused by name otherwise."""

from __future__ import annotations

import pytest

from tidal.data.uri import parse_ref
from tidal.errors import InvalidValueError
from tidal.ids import parse_count
from tidal.models.uri import parse_model_uri

#: Digits of other scripts, superscripts and forms Python's int() or str.isdigit() take.
NOT_ASCII_COUNTS = ["²", "٣", "１", "1²", "+1", "-1", " 1", "1_000", "1" * 19, ""]


@pytest.mark.parametrize("text", NOT_ASCII_COUNTS)
def test_only_ascii_digits_are_a_count(text: str):
    assert parse_count(text) is None


def test_a_count_is_its_ascii_digits():
    assert [parse_count(t) for t in ("0", "7", "007", "9" * 18)] == [0, 7, 7, int("9" * 18)]


@pytest.mark.parametrize("version", ["²", "٣", "１"])
def test_a_model_uri_with_a_unicode_digit_version_is_refused_by_name(version: str):
    with pytest.raises(InvalidValueError, match="positive whole number") as caught:
        parse_model_uri(f"models:/ctr/{version}")
    assert caught.value.field == "uri"


@pytest.mark.parametrize("version", ["²", "٣", "１"])
def test_a_dataset_reference_with_a_unicode_digit_version_is_refused_by_name(version: str):
    with pytest.raises(InvalidValueError, match="positive number") as caught:
        parse_ref(f"datasets:/sales/{version}")
    assert caught.value.field == "version"
