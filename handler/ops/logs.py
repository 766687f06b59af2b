"""Logging setup: structlog events to a terminal, JSON lines, or journald, chosen once at start.

Every log call goes through structlog (``log.info("domain started", vmi=..., bdfs=[...])``);
stdlib logging from libraries (kubernetes, urllib3) is bridged into the same pipeline at
warning and above, so there is one output and one format.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from handler.ops.journal import SOCKET_PATH, JournalEntry, JournalSender, journal_entry

FORMATS = ("auto", "console", "json", "journal")
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    """Configure structlog and the stdlib bridge; safe to call again (e.g. on SIGHUP)."""
    if level not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    threshold = LEVELS[level]
    chosen = resolve_format(fmt)
    shared: list[Processor] = [structlog.contextvars.merge_contextvars, structlog.processors.add_log_level]
    structlog.configure(
        processors=shared + _renderers(chosen),
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=_factory(chosen),
        context_class=dict,
        # Not cached, so module-level loggers follow a reconfiguration.
        cache_logger_on_first_use=False,
    )
    _bridge_stdlib(max(threshold, logging.WARNING))


def resolve_format(fmt: str) -> str:
    """``auto``: journal when systemd connected our stderr to it, a TTY gets console, else JSON."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt != "auto":
        return fmt
    if _stderr_is_journal() and _journal_socket_exists():
        return "journal"
    return "console" if sys.stderr.isatty() else "json"


def _stderr_is_journal() -> bool:
    """True if JOURNAL_STREAM names fd 2, as systemd.exec(5) says to check: children inherit the
    variable even after redirecting stderr, so its presence alone is not enough."""
    value = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        st = os.fstat(2)
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (OSError, ValueError):
        return False


def _journal_socket_exists() -> bool:
    try:
        return stat.S_ISSOCK(os.stat(SOCKET_PATH).st_mode)
    except OSError:
        return False


def _renderers(fmt: str) -> list[Processor]:
    if fmt == "console":
        return [
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S"),
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
            ),
        ]
    if fmt == "json":
        return [
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    return [structlog.processors.format_exc_info, _render_journal]


def _render_journal(logger: WrappedLogger, method: str, event: EventDict) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return (journal_entry(event),), {}


def _factory(fmt: str) -> Any:
    if fmt == "journal":
        journal = JournalLogger(JournalSender())
        return lambda *args: journal
    # Console goes with the terminal on stderr; JSON lines on stdout are what kubectl logs shows.
    return structlog.WriteLoggerFactory(file=sys.stderr if fmt == "console" else sys.stdout)


class JournalLogger:
    """structlog's wrapped logger for the journal: every level method sends one entry."""

    def __init__(self, sender: JournalSender) -> None:
        self._sender = sender

    def msg(self, entry: JournalEntry) -> None:
        try:
            self._sender.send(entry)
        except OSError:
            self._to_stderr(entry)

    def _to_stderr(self, entry: JournalEntry) -> None:
        # Logging must never take the agent down: if stderr is gone too, the entry is lost.
        try:
            sys.stderr.write(entry.readable() + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


class _ToStructlog(logging.Handler):
    """Hands stdlib records to structlog, keeping the library's logger name."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = max(lvl for lvl in LEVELS.values() if lvl <= max(record.levelno, logging.DEBUG))
            kw: dict[str, Any] = {"logger": record.name}
            if record.exc_info:
                kw["exc_info"] = record.exc_info
            structlog.get_logger().log(level, record.getMessage(), **kw)
        except Exception:
            self.handleError(record)


def _bridge_stdlib(level: int) -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _ToStructlog)]:
        root.removeHandler(handler)
    bridge = _ToStructlog(level)
    root.addHandler(bridge)
    root.setLevel(level)
    logging.captureWarnings(True)
