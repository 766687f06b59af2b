"""Kubernetes memory quantities: what is read as bytes, and what is not a quantity at all."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from handler.core.quantity import parse_bytes


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1Gi", 2**30),
        ("512Mi", 512 * 2**20),
        ("1.5Gi", 3 * 2**29),
        ("2Ti", 2 * 2**40),
        ("64Ki", 64 * 1024),
        ("1Pi", 2**50),
        ("1G", 10**9),
        ("256M", 256 * 10**6),
        ("100k", 100_000),
        ("1T", 10**12),
        ("1P", 10**15),
        ("268435456", 268435456),
        (" 2Mi ", 2 * 2**20),
        ("0.5", 1),
        ("1.0001Ki", 1025),
        (1048576, 1048576),
        (0, 0),
    ],
    ids=lambda value: repr(value),
)
def test_quantity_in_bytes(text: str | int, size: int) -> None:
    assert parse_bytes(text) == size


@pytest.mark.parametrize(
    "text",
    ["", "Gi", "1Gb", "1gi", "1K", "1m", "-1", "-1Gi", "1e3", "0x10", "1.Gi", ".5Gi", "1 Gi", "one", True, False, -5],
    ids=lambda value: repr(value),
)
def test_not_a_quantity(text: str | int) -> None:
    assert parse_bytes(text) is None


def _by_decimal(number: str, suffix: str) -> int:
    """The rule as first written: Decimal arithmetic (28 digits), rounded up."""
    factor = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}.get(suffix) or 2 ** (
        10 * "KMGTP".index(suffix[0]) + 10
    )
    return int((Decimal(number) * factor).to_integral_value(rounding="ROUND_CEILING"))


@settings(max_examples=500, deadline=None, database=None)
@given(
    st.from_regex(r"[0-9]{1,30}(\.[0-9]{1,4})?", fullmatch=True),
    st.sampled_from(["", "k", "M", "G", "T", "P", "Ki", "Mi", "Gi", "Ti", "Pi"]),
)
@example("999999999999", "Pi")
@example("9999999999999", "Pi")
@example("99999999999999999999999999999", "")
def test_whole_numbers_are_sized_as_decimal_arithmetic_sizes_them(number: str, suffix: str) -> None:
    assert parse_bytes(number + suffix) == _by_decimal(number, suffix)
