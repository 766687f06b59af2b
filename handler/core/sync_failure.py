"""What to report when executing a plan failed part-way: the guest is not touched again
until the retry, and the VMI says why in a Synchronized=False condition."""

from __future__ import annotations

from handler.core.actions import Action, RecordEvent, WriteStatus
from handler.core.status import Phase, VMIStatus, ready, synchronized


def sync_failed(last: VMIStatus | None, domain_name: str, reason: str, message: str) -> tuple[Action, ...]:
    base = last or VMIStatus(Phase.SCHEDULED, domain_name, (ready(False, reason, "the guest is not running"),))
    status = base.with_condition(synchronized(False, reason, message))
    if status == last:
        return ()
    previous = last.condition("Synchronized") if last else None
    if previous is not None and previous.message == message:
        return (WriteStatus(status),)
    return (WriteStatus(status), RecordEvent(reason, message, warning=True))
