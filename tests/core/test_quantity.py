"""Kubernetes memory quantities: what is read as bytes, and what is not a quantity at all."""

from __future__ import annotations

import pytest

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
