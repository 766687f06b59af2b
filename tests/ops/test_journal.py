"""The native journal protocol: encoding, the memfd path, the stderr fallback, and a real
systemd-journald reading our entries back (started by hand in a private mount namespace)."""

from __future__ import annotations

import array
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handler.ops.journal import JournalEntry, JournalSender, field_name, journal_entry
from handler.ops.logs import JournalLogger

REPO = Path(__file__).resolve().parents[2]
JOURNALD = Path("/lib/systemd/systemd-journald")


def test_plain_and_binary_safe_encoding() -> None:
    entry = JournalEntry((("MESSAGE", "domain started"), ("NOTE", "a\nb"), ("EMPTY", "")))
    assert entry.encode() == (
        b"MESSAGE=domain started\n" + b"NOTE\n" + (3).to_bytes(8, "little") + b"a\nb\n" + b"EMPTY=\n"
    )


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("vmi", "VMI"),
        ("uid", "VMI_UID"),
        ("domain", "DOMAIN"),
        ("bdf", "QAT_BDF"),
        ("bdfs", "QAT_BDF"),
        ("reason", "REASON"),
        ("grace-period", "GRACE_PERIOD"),
        ("_trusted", "TRUSTED"),  # journald drops client fields led by '_'
        ("2nd_try", "FIELD_2ND_TRY"),
        ("message", "FIELD_MESSAGE"),  # ours; a context key must not overwrite it
        ("priority", "FIELD_PRIORITY"),
        ("x" * 100, "X" * 64),
    ],
)
def test_field_names(key: str, name: str) -> None:
    assert field_name(key) == name


def test_entry_from_event() -> None:
    entry = journal_entry(
        {
            "event": "domain started",
            "level": "warning",
            "timestamp": "dropped: journald stamps entries itself",
            "vmi": "default/a",
            "bdfs": ["0000:3d:01.1", "0000:3d:01.2"],
            "domain": None,
            "limits": {"b": 1, "a": 2},
        }
    )
    assert entry.fields == (
        ("MESSAGE", "domain started"),
        ("PRIORITY", "4"),
        ("SYSLOG_IDENTIFIER", "qat-handler"),
        ("VMI", "default/a"),
        ("QAT_BDF", "0000:3d:01.1"),
        ("QAT_BDF", "0000:3d:01.2"),
        ("LIMITS", '{"a": 2, "b": 1}'),
    )


@pytest.mark.parametrize(
    ("level", "priority"), [("debug", "7"), ("info", "6"), ("warning", "4"), ("error", "3"), ("critical", "2")]
)
def test_priorities(level: str, priority: str) -> None:
    assert dict(journal_entry({"event": "x", "level": level}).fields)["PRIORITY"] == priority


@pytest.fixture
def listener() -> Iterator[tuple[str, socket.socket]]:
    with (
        tempfile.TemporaryDirectory(prefix="jrn", dir="/tmp") as tmp,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
    ):
        path = os.path.join(tmp, "socket")
        sock.bind(path)
        sock.settimeout(5)
        yield path, sock


def test_one_datagram_per_entry(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    entry = journal_entry({"event": "hello", "level": "info", "vmi": "default/a"})
    JournalSender(path).send(entry)
    assert sock.recv(65536) == entry.encode()


def test_too_big_for_a_datagram_goes_as_a_sealed_memfd(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    wmem_max = int(Path("/proc/sys/net/core/wmem_max").read_text())
    blob = "x" * (2 * min(8 << 20, wmem_max) + 1)  # beyond the largest send buffer the kernel grants
    entry = journal_entry({"event": "big", "level": "info", "blob": blob})
    JournalSender(path).send(entry)
    data, ancillary, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(4))
    assert data == b""
    ((level, kind, raw),) = ancillary
    assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
    fd = array.array("i", raw)[0]
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SHRINK
        expected = entry.encode()
        assert os.fstat(fd).st_size == len(expected)
        assert os.pread(fd, len(expected), 0) == expected
    finally:
        os.close(fd)


def test_failed_send_falls_back_to_stderr(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    logger = JournalLogger(JournalSender(str(tmp_path / "no-journald-here")))
    logger.error(journal_entry({"event": "shutdown timed out", "level": "error", "vmi": "default/a"}))
    assert capsys.readouterr().err == "<3>shutdown timed out VMI=default/a\n"


# ---------------------------------------------------------------- a real journald

CLIENT = """
import logging, os, structlog
from handler.ops.logs import configure_logging, resolve_format

st = os.fstat(2)
os.environ["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"  # what systemd sets for a journal stderr
print("auto:", resolve_format("auto"), flush=True)
configure_logging("auto", "debug")

log = structlog.get_logger().bind(vmi="default/vmi-qat", uid="7f3e-uid", domain="default_vmi-qat")
log.info("domain started", bdfs=["0000:3d:01.1", "0000:3d:01.2"])
log.warning("shutdown timed out", reason="GracePeriodExpired", bdf="0000:3d:01.1", grace_seconds=30)
log.debug("debug detail", step=3)
log.info("two\\nlines", note="a\\nb")
try:
    raise RuntimeError("libvirt went away")
except RuntimeError:
    log.exception("reconcile failed", reason="LibvirtError")
logging.getLogger("urllib3.connectionpool").warning("Retrying %s", "(total=2)")
logging.getLogger("urllib3.connectionpool").info("stdlib info stays out")
structlog.get_logger().info("big entry", blob="y" * BIG, blob_len=BIG)
structlog.get_logger().info("client done")
"""

SCRIPT = """
set -eu
mount -t tmpfs tmpfs /run
# journald must not touch the host's persistent journal either.
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
"$JOURNALD" >"$OUT/journald.log" 2>&1 &
JPID=$!
trap 'kill $JPID 2>/dev/null; wait $JPID 2>/dev/null || true' EXIT
for _ in $(seq 200); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
"$PYTHON" "$OUT/client.py" >"$OUT/client.out" 2>"$OUT/client.err"
for _ in $(seq 200); do
    journalctl --no-pager -o json MESSAGE="client done" | grep -q . && break
    sleep 0.05
done
journalctl --no-pager -o json SYSLOG_IDENTIFIER=qat-handler >"$OUT/all.json"
journalctl --no-pager -o json VMI=default/vmi-qat >"$OUT/vmi.json"
journalctl --no-pager -o json QAT_BDF=0000:3d:01.2 >"$OUT/bdf.json"
journalctl --no-pager -o json -p warning SYSLOG_IDENTIFIER=qat-handler >"$OUT/warning.json"
journalctl --no-pager -o json --all MESSAGE="big entry" >"$OUT/big.json"
"""


def entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def by_message(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["MESSAGE"]: item for item in items}


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("a private mount namespace for journald needs root")
    assert JOURNALD.exists(), "systemd-journald is missing: apt-get install systemd"
    assert shutil.which("unshare") and shutil.which("journalctl"), "apt-get install util-linux systemd"
    out = tmp_path_factory.mktemp("journal")
    wmem_max = int(Path("/proc/sys/net/core/wmem_max").read_text())
    client = textwrap.dedent(CLIENT).replace("BIG", str(2 * min(8 << 20, wmem_max) + 1))
    (out / "client.py").write_text(client)
    (out / "script.sh").write_text(SCRIPT)
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", str(out / "script.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "OUT": str(out),
            "PYTHON": sys.executable,
            "JOURNALD": str(JOURNALD),
            "PYTHONPATH": str(REPO),
        },
    )
    client_err = (out / "client.err").read_text()
    assert result.returncode == 0, result.stderr + client_err[:2000]
    if client_err:
        pytest.fail(f"the client fell back to stderr or failed: {client_err[:500]}")
    return out


@pytest.mark.journald
def test_auto_picks_the_journal_under_systemd(journal: Path) -> None:
    assert (journal / "client.out").read_text() == "auto: journal\n"


@pytest.mark.journald
def test_entries_carry_message_priority_identifier_and_context(journal: Path) -> None:
    items = by_message(entries(journal / "vmi.json"))
    started = items["domain started"]
    assert started["PRIORITY"] == "6"
    assert started["SYSLOG_IDENTIFIER"] == "qat-handler"
    assert started["_TRANSPORT"] == "journal"  # the native socket, not a stdout stream
    assert started["VMI"] == "default/vmi-qat"
    assert started["VMI_UID"] == "7f3e-uid"
    assert started["DOMAIN"] == "default_vmi-qat"
    assert sorted(started["QAT_BDF"]) == ["0000:3d:01.1", "0000:3d:01.2"]

    timed_out = items["shutdown timed out"]
    assert timed_out["PRIORITY"] == "4"
    assert timed_out["REASON"] == "GracePeriodExpired"
    assert timed_out["QAT_BDF"] == "0000:3d:01.1"
    assert timed_out["GRACE_SECONDS"] == "30"

    assert items["debug detail"]["PRIORITY"] == "7"
    assert items["two\nlines"]["NOTE"] == "a\nb"

    failed = items["reconcile failed"]
    assert failed["PRIORITY"] == "3"
    assert failed["REASON"] == "LibvirtError"
    assert "RuntimeError: libvirt went away" in failed["EXCEPTION"]


@pytest.mark.journald
def test_a_multi_valued_field_matches_on_each_value(journal: Path) -> None:
    assert [item["MESSAGE"] for item in entries(journal / "bdf.json")] == ["domain started"]


@pytest.mark.journald
def test_priority_filter_and_stdlib_bridge(journal: Path) -> None:
    warnings = by_message(entries(journal / "warning.json"))
    assert set(warnings) == {"shutdown timed out", "reconcile failed", "Retrying (total=2)"}
    retry = warnings["Retrying (total=2)"]
    assert retry["PRIORITY"] == "4"
    assert retry["LOGGER"] == "urllib3.connectionpool"
    everything = by_message(entries(journal / "all.json"))
    assert "stdlib info stays out" not in everything
    assert "client done" in everything


@pytest.mark.journald
def test_an_entry_bigger_than_a_datagram_arrives_whole(journal: Path) -> None:
    (big,) = entries(journal / "big.json")
    assert len(big["BLOB"]) == int(big["BLOB_LEN"])
    assert set(big["BLOB"]) == {"y"}
