"""Bytes cut into binary properties (Edm.Binary holds at most 64 KiB each)."""

from __future__ import annotations

BINARY_PROPERTY_BYTES = 64_000  # a binary property holds at most 64 KiB


def binary_parts(data: bytes) -> list[bytes]:
    """``data`` cut into pieces a binary property can hold, in order."""
    return [data[start : start + BINARY_PROPERTY_BYTES] for start in range(0, len(data), BINARY_PROPERTY_BYTES)]
