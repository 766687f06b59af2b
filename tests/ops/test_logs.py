"""Log formats as the agent's process really emits them: each case runs in a fresh interpreter,
so structlog's and logging's global configuration start clean."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

LOG_CALLS = """
import logging, os, structlog
from handler.ops.logs import configure_logging, resolve_format
configure_logging(FORMAT, "info")
configure_logging(FORMAT, "info")  # twice, as a SIGHUP reload does: still one bridge, one line each
log = structlog.get_logger().bind(vmi="default/a", uid="0b1c-uid")
log.info("domain started", domain="default_a", bdfs=["0000:3d:01.1", "0000:3d:01.2"])
log.debug("debug is below the level")
logging.getLogger("urllib3.connectionpool").warning("Retrying %s", "(total=2)")
logging.getLogger("urllib3.connectionpool").info("stdlib info stays out")
try:
    raise RuntimeError("libvirt went away")
except RuntimeError:
    log.exception("reconcile failed", reason="LibvirtError")
"""


def run(
    fmt: str, code: str = LOG_CALLS, env: dict[str, str] | None = None, stderr: int = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", f"FORMAT = {fmt!r}\n" + textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


def test_json_lines_on_stdout() -> None:
    result = run("json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["event"] for line in lines] == ["domain started", "Retrying (total=2)", "reconcile failed"]
    started, retry, failed = lines
    assert started["level"] == "info"
    assert started["vmi"] == "default/a"
    assert started["uid"] == "0b1c-uid"
    assert started["domain"] == "default_a"
    assert started["bdfs"] == ["0000:3d:01.1", "0000:3d:01.2"]
    assert started["timestamp"].endswith("Z")
    assert retry["level"] == "warning"
    assert retry["logger"] == "urllib3.connectionpool"
    assert failed["level"] == "error"
    assert failed["reason"] == "LibvirtError"
    assert "RuntimeError: libvirt went away" in failed["exception"]


def test_console_is_readable_on_stderr() -> None:
    result = run("console")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    err = result.stderr
    assert "\x1b[" not in err  # not a terminal: no colours
    first = err.splitlines()[0]
    assert "[info" in first
    assert "domain started" in first
    assert "vmi=default/a" in first
    assert "domain=default_a" in first
    assert "0000:3d:01.2" in first
    assert "Retrying (total=2)" in err
    assert "stdlib info stays out" not in err
    assert "debug is below the level" not in err
    assert "RuntimeError: libvirt went away" in err


def test_journal_without_journald_falls_back_to_stderr(tmp_path: Path) -> None:
    """No socket at all (as on this host outside the journald tests): nothing lost, nothing raised."""
    if Path("/run/systemd/journal/socket").exists():
        pytest.skip("a real journald listens here")
    result = run("journal")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == (
        "<6>domain started VMI=default/a VMI_UID=0b1c-uid DOMAIN=default_a QAT_BDF=0000:3d:01.1 QAT_BDF=0000:3d:01.2"
    )
    assert lines[1] == "<4>Retrying (total=2) LOGGER=urllib3.connectionpool"
    assert lines[2].startswith(
        "<3>reconcile failed VMI=default/a VMI_UID=0b1c-uid REASON=LibvirtError EXCEPTION=Traceback"
    )


AUTO = """
import sys
from handler.ops.logs import resolve_format
print(resolve_format("auto"))
"""


def test_auto_is_json_when_piped() -> None:
    result = run("auto", AUTO, env={"JOURNAL_STREAM": ""})
    assert result.stdout.strip() == "json"


def test_auto_ignores_a_journal_stream_that_is_not_our_stderr() -> None:
    """A child of a journal-logged service inherits JOURNAL_STREAM even after redirecting stderr."""
    st = os.fstat(sys.stdout.fileno())
    result = run("auto", AUTO, env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
    assert result.stdout.strip() == "json"


def test_auto_is_console_on_a_terminal() -> None:
    leader, follower = os.openpty()
    try:
        result = run("auto", AUTO, env={"JOURNAL_STREAM": ""}, stderr=follower)
    finally:
        os.close(follower)
        os.close(leader)
    assert result.stdout.strip() == "console"


@pytest.mark.parametrize(("fmt", "level"), [("xml", "info"), ("json", "verbose")])
def test_bad_settings_are_refused(fmt: str, level: str) -> None:
    from handler.ops.logs import configure_logging

    with pytest.raises(ValueError, match="is not one of"):
        configure_logging(fmt, level)
