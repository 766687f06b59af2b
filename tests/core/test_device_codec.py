"""AssignedDevice through each place it is kept, and back."""

from __future__ import annotations

import pytest

from handler.core.bdf import Bdf
from handler.core.device_codec import (
    ALLOCATION_RECORDS,
    ANNOTATION,
    DOMAIN_METADATA,
    FIELDS,
    STATUS_RECORDS,
    DeviceFormat,
    decode,
    encode,
    from_annotation,
    to_annotation,
)
from handler.core.device_env import AssignedDevice

DEVICE = AssignedDevice("qat1", "qat.intel.com/generic", Bdf(0, 0x3D, 1, 7), "QAT0..QATn")


@pytest.mark.parametrize("form", [DOMAIN_METADATA, STATUS_RECORDS, ALLOCATION_RECORDS, ANNOTATION])
def test_every_format_round_trips_what_it_keeps(form: DeviceFormat) -> None:
    written = encode(DEVICE, form)
    assert list(written) == [name for name in FIELDS if name in form.fields]
    assert written["bdf"] == "0000:3d:01.7"
    back = decode(written, form)
    assert back == DEVICE  # name, resource and BDF
    assert back is not None and back.source == (form.source or DEVICE.source)


@pytest.mark.parametrize("bdf", ["", "zz:01.1", "0000:3d:01.8", None])
def test_a_bad_bdf_reads_as_no_device(bdf: str | None) -> None:
    fields = {"name": "q", "resource": "r"} | ({} if bdf is None else {"bdf": bdf})
    assert decode(fields, STATUS_RECORDS) is None


def test_the_annotation_lists_devices_and_skips_bad_entries() -> None:
    other = AssignedDevice("b", "qat.intel.com/cy", Bdf(0, 0x6B, 0, 1), "")
    text = to_annotation((DEVICE, other))
    assert text == "qat1=qat.intel.com/generic@0000:3d:01.7,b=qat.intel.com/cy@0000:6b:00.1"
    assert from_annotation(text + ",=x@0000:3d:01.1,c=x@nope,") == (DEVICE, other)
    assert {d.source for d in from_annotation(text)} == {"annotation"}
