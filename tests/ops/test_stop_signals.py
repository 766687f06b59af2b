"""A stop signal that lands while the main thread is inside a log call must not hang the process.

structlog's writer holds a per-file lock while it writes; a signal handler runs in the main
thread between two bytecodes, possibly inside that write. Each case runs in a child process
whose log file raises SIGTERM from inside ``write``, i.e. with the lock held.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import io, signal, sys
    import structlog
    from handler.ops.stop_signals import StopSignals

    class SignalInsideWrite(io.StringIO):
        fired = False
        def write(self, text):
            if not self.fired:
                self.fired = True
                signal.raise_signal(signal.SIGTERM)  # the handler runs here, the writer's lock held
            return super().write(text)

    structlog.configure(logger_factory=structlog.WriteLoggerFactory(file=SignalInsideWrite()))
    log = structlog.get_logger()
    if sys.argv[1] == "stop-signals":
        signals = StopSignals()
        signals.install()
        log.info("first sync done")
        assert signals.event.is_set() and signals.received == ("SIGTERM",), signals.received
    else:  # a handler that logs, as the agent, controller and launcher had
        signal.signal(signal.SIGTERM, lambda signum, frame: log.info("stop signal received"))
        log.info("first sync done")
    print("returned")
    """
)


def run_child(variant: str, timeout: float = 60) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run([sys.executable, "-c", CHILD, variant], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def test_stop_signals_record_the_signal_without_logging_so_a_log_call_in_flight_finishes() -> None:
    done = run_child("stop-signals")
    assert done is not None, "the process hung on the output lock"
    assert done.returncode == 0 and done.stdout == "returned\n", done.stderr


def test_a_handler_that_logs_hangs_in_the_same_place() -> None:
    """The control: the harness does reproduce the hang that StopSignals avoids."""
    assert run_child("logging-handler", timeout=5) is None
