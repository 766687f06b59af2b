"""The protobuf wire format, just enough for kubelet's small pod-resources messages.

Decoding walks a message's fields in order and yields each as ``(number, wire type, value)``;
a caller picks the field numbers it knows and ignores the rest, so fields added by newer
kubelets (CPU IDs, memory, topology, DRA resources) are skipped whatever their wire type.
Encoding offers the two field kinds our messages use: length-delimited and varint.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

VARINT = 0
I64 = 1
LEN = 2
START_GROUP = 3
END_GROUP = 4
I32 = 5

_MAX_VARINT_BYTES = 10
_MAX_FIELD_NUMBER = (1 << 29) - 1


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


@dataclass(frozen=True, slots=True)
class Field:
    number: int
    wire_type: int
    value: int | bytes
    """An int for varint and fixed-width fields, the payload bytes for length-delimited ones."""

    def payload(self) -> bytes:
        """The length-delimited payload (a string, bytes or nested message), or WireError."""
        if not isinstance(self.value, bytes):
            raise WireError(f"field {self.number} has wire type {self.wire_type}, expected {LEN}")
        return self.value

    def text(self) -> str:
        try:
            return self.payload().decode("utf-8")
        except UnicodeDecodeError as error:
            raise WireError(f"field {self.number} is not valid UTF-8") from error


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The unsigned varint at ``pos`` and the position after it."""
    result = 0
    for index in range(_MAX_VARINT_BYTES):
        if pos + index >= len(data):
            raise WireError(f"varint at offset {pos} is truncated")
        byte = data[pos + index]
        result |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return result, pos + index + 1
    raise WireError(f"varint at offset {pos} is longer than {_MAX_VARINT_BYTES} bytes")


def fields(data: bytes) -> Iterator[Field]:
    """Every field of one message, in order. Groups (a deprecated encoding) are skipped whole."""
    pos = 0
    while pos < len(data):
        number, wire_type, pos = _read_tag(data, pos)
        if wire_type == START_GROUP:
            pos = _skip_group(data, pos, number)
            continue
        if wire_type == END_GROUP:
            raise WireError(f"end of group {number} at offset {pos} without its start")
        value, pos = _read_value(data, pos, wire_type)
        yield Field(number, wire_type, value)


def _read_tag(data: bytes, pos: int) -> tuple[int, int, int]:
    tag, after = read_varint(data, pos)
    number, wire_type = tag >> 3, tag & 0x7
    if number == 0 or number > _MAX_FIELD_NUMBER:
        raise WireError(f"field number {number} at offset {pos} is out of range")
    return number, wire_type, after


def _read_value(data: bytes, pos: int, wire_type: int) -> tuple[int | bytes, int]:
    if wire_type == VARINT:
        return read_varint(data, pos)
    if wire_type in (I64, I32):
        size = 8 if wire_type == I64 else 4
        end = _checked_end(data, pos, size)
        return int.from_bytes(data[pos:end], "little"), end
    if wire_type == LEN:
        size, start = read_varint(data, pos)
        end = _checked_end(data, start, size)
        return data[start:end], end
    raise WireError(f"wire type {wire_type} at offset {pos} is not a protobuf wire type")


def _skip_group(data: bytes, pos: int, number: int) -> int:
    while pos < len(data):
        inner, wire_type, pos = _read_tag(data, pos)
        if wire_type == END_GROUP:
            if inner != number:
                raise WireError(f"group {number} is closed as group {inner}")
            return pos
        if wire_type == START_GROUP:
            pos = _skip_group(data, pos, inner)
        else:
            _, pos = _read_value(data, pos, wire_type)
    raise WireError(f"group {number} is not closed")


def _checked_end(data: bytes, start: int, size: int) -> int:
    end = start + size
    if end > len(data):
        raise WireError(f"field at offset {start} needs {size} bytes, {len(data) - start} remain")
    return end


# -- encoding ------------------------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    """An unsigned varint; a negative value is written as its 64-bit two's complement (int64)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return encode_varint(number << 3 | wire_type)


def varint_field(number: int, value: int) -> bytes:
    return tag(number, VARINT) + encode_varint(value)


def len_field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: a nested message, bytes, or (through ``string_field``) text."""
    return tag(number, LEN) + encode_varint(len(payload)) + payload


def string_field(number: int, text: str) -> bytes:
    return len_field(number, text.encode("utf-8"))
