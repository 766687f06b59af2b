"""The manifest reader's short cuts give what the plain library calls they replace give."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from handler.baremetal.manifest_file import (
    _UID_NAMESPACE,
    MAX_FILE_BYTES,
    default_uid,
    env_path_for,
    load_env,
    read_text,
)
from handler.core.refusal import Refused

FILES = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _outcome(read: Callable[[], object]) -> tuple[str, str]:
    try:
        return "ok", repr(read())
    except (OSError, UnicodeDecodeError) as error:
        return "error", f"{type(error).__name__}: {error}"


@FILES
@given(
    st.binary(max_size=64)
    | st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b"\xc3\xa9", b"\xff", b"\xef\xbb\xbf"])).map(b"".join)
)
@example(b"a: 1\r\nb: 2\rc: 3\n")
def test_read_text_reads_what_path_read_text_reads(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "vmi.yaml"
    path.write_bytes(data)
    assert _outcome(lambda: read_text(path)) == _outcome(lambda: path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("make", [lambda p: p.mkdir(), lambda p: None, lambda p: p.symlink_to(p.parent / "gone")])
def test_read_text_fails_as_path_read_text_fails(tmp_path: Path, make: Callable[[Path], object]) -> None:
    path = tmp_path / "vmi.yaml"
    make(path)
    assert _outcome(lambda: read_text(path))[0] == "error"
    assert _outcome(lambda: read_text(path)) == _outcome(lambda: path.read_text(encoding="utf-8"))


@settings(max_examples=500, deadline=None, database=None)
@given(st.text(max_size=20), st.text(max_size=40))
@example("default", "vm")
def test_default_uid_is_the_uuid5_of_namespace_and_name(namespace: str, name: str) -> None:
    try:
        expected = str(uuid.uuid5(_UID_NAMESPACE, f"{namespace}/{name}"))
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            default_uid(namespace, name)
        return
    assert default_uid(namespace, name) == expected


@pytest.mark.parametrize("name", ["vm.yaml", "vm.yml", "vm.json", "a.b.yaml", "noext", "x."])
def test_the_env_file_is_the_one_beside_the_manifest(tmp_path: Path, name: str) -> None:
    manifest = tmp_path / name
    assert load_env(manifest) is None
    env_path_for(manifest).write_text("QAT0=0000:3d:01.1\n")
    assert load_env(manifest) == {"QAT0": "0000:3d:01.1"}
    env_path_for(manifest).write_text("not a line\n")
    with pytest.raises(Refused) as refused:
        load_env(manifest)
    assert refused.value.refusal.subject == f"{env_path_for(manifest).name} line 1"


def test_only_a_regular_file_of_a_sane_size_is_read(tmp_path: Path) -> None:
    """A FIFO named like a manifest must not block the reader waiting for a writer, a link to a
    device must not be read forever, and a huge file is no manifest."""
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    with (tmp_path / "huge.yaml").open("wb") as huge:
        huge.truncate(MAX_FILE_BYTES + 1)
    (tmp_path / "largest.yaml").write_bytes(b"#" * MAX_FILE_BYTES)
    for name, problem in [
        ("fifo.yaml", "not a regular file (a FIFO, socket or device)"),
        ("zero.yaml", "not a regular file (a FIFO, socket or device)"),
        ("huge.yaml", f"larger than {MAX_FILE_BYTES} bytes, which no VMI manifest is"),
    ]:
        with pytest.raises(OSError) as refused:
            read_text(tmp_path / name)
        assert refused.value.strerror == problem and refused.value.filename == str(tmp_path / name)
    assert len(read_text(tmp_path / "largest.yaml")) == MAX_FILE_BYTES
