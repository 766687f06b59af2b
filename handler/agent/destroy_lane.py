"""Destroys at the grace limit, each on its own thread.

A destroy blocks until libvirt has seen QEMU go (about 2 s under TCG on hosts whose PID 1
reaps slowly; up to 15 s when QEMU ignores SIGTERM). Run on the reconcile workers, guests
whose grace ran out together would wait for each other's destroys; here each goes out as
soon as its pass (or the deadline timer's check) decides it, and the VMI comes back to the
queue when libvirt answers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from handler.core.port_error import PortError

Logger = structlog.typing.FilteringBoundLogger


class DestroyLane:
    def __init__(
        self,
        destroy: Callable[[str], None],
        finished: Callable[[str, PortError | None], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._destroy = destroy
        self._finished = finished
        self._clock = clock

    def submit(self, key: str, name: str, deadline: float, log: Logger) -> None:
        """Destroy ``name`` now, off the caller's thread; ``finished(key, error)`` follows.

        ``deadline`` is when the guest's grace ran out (on ``clock``): the "destroy issued" line
        says how late the call went out, the agent's own measure of its promptness."""
        thread = threading.Thread(
            target=self._run, args=(key, name, deadline, log), name=f"destroy-{name}"[:60], daemon=True
        )
        thread.start()

    def run(self, key: str, job: Callable[[str], None]) -> None:
        """Run ``job(key)`` on a thread of its own (the deadline timer's check, then its destroy)."""

        def guarded() -> None:
            try:
                job(key)
            except Exception:  # the reconcile pass at the deadline is the backstop
                structlog.get_logger("qat_handler.destroy_lane").exception("deadline check crashed", vmi=key)

        threading.Thread(target=guarded, name=f"deadline-{key}"[:60], daemon=True).start()

    def destroy_now(self, key: str, name: str, deadline: float, log: Logger) -> None:
        """As submit(), on the caller's thread (one of this lane's own)."""
        self._run(key, name, deadline, log)

    def _run(self, key: str, name: str, deadline: float, log: Logger) -> None:
        issued = self._clock()
        log.info("destroy issued", overdue_seconds=round(issued - deadline, 3))
        try:
            self._destroy(name)
        except PortError as error:
            log.warning("destroy failed", reason=error.reason, error=str(error))
            self._finished(key, error)
            return
        except Exception as error:  # a bug must not leave the VMI waiting for a destroy forever
            log.exception("destroy crashed")
            self._finished(key, PortError(f"destroy {name}: {error}"))
            return
        log.warning("domain destroyed", took_seconds=round(self._clock() - issued, 2))
        self._finished(key, None)
