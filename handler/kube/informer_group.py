"""Informers that share watch settings and a restart callback, and start, sync and stop together."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypedDict, Unpack

from handler.kube.informer import DEFAULT_WATCH, Informer, ListCall, Obj, WatchSettings


class Selection(TypedDict, total=False):
    """What one informer of a group watches, beyond its list call (see ``Informer``)."""

    label_selector: str
    field_selector: str
    optional: bool


class InformerGroup:
    def __init__(
        self, settings: WatchSettings = DEFAULT_WATCH, on_restart: Callable[[str], None] = lambda _name: None
    ) -> None:
        self.watch_settings = settings
        self.on_restart = on_restart
        self.informers: list[Informer] = []

    def add(
        self, name: str, list_call: ListCall, on_change: Callable[[str, Obj], None], **options: Unpack[Selection]
    ) -> Informer:
        """A new informer of the group; it starts with the group."""
        informer = Informer(
            name, list_call, on_change, settings=self.watch_settings, on_restart=self.on_restart, **options
        )
        self.informers.append(informer)
        return informer

    def join(self, other: InformerGroup) -> None:
        """Take ``other``'s informers in too, so one start, sync and stop covers both."""
        self.informers.extend(other.informers)

    def start(self) -> None:
        for informer in self.informers:
            informer.start()

    def wait_synced(self, timeout: float) -> bool:
        """Each informer's first list, waiting up to ``timeout`` for each in turn."""
        return all(informer.synced.wait(timeout) for informer in self.informers)

    def stop(self) -> None:
        for informer in self.informers:
            informer.stop()
