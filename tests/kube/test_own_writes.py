"""Which copy of a VMI a status patch is based on: the informer's, or our own last write's."""

from __future__ import annotations

from typing import Any

from handler.kube.own_writes import SUPERSEDED_KEPT, OwnWrites


def vmi(version: int, uid: str = "u1") -> dict[str, Any]:
    return {"metadata": {"uid": uid, "resourceVersion": str(version)}}


def test_a_cache_showing_a_version_our_writes_replaced_gives_way_to_our_result() -> None:
    own = OwnWrites()
    own.wrote("ns/a", "1", vmi(2))  # the status, based on 1
    own.wrote("ns/a", "2", vmi(3))  # then the finalizer, based on 2
    assert own.freshest("ns/a", vmi(1)) == vmi(3)
    assert own.freshest("ns/a", vmi(2)) == vmi(3)


def test_the_cache_is_used_once_it_shows_our_write_or_a_newer_one() -> None:
    own = OwnWrites()
    own.wrote("ns/a", "1", vmi(2))
    assert own.freshest("ns/a", vmi(2)) == vmi(2)
    assert own.freshest("ns/a", vmi(1)) == vmi(1), "forgotten once the cache caught up"
    own.wrote("ns/a", "4", vmi(5))
    assert own.freshest("ns/a", vmi(7)) == vmi(7), "another writer's newer version"


def test_a_vmi_made_again_under_the_same_name_is_not_mixed_up() -> None:
    own = OwnWrites()
    own.wrote("ns/a", "1", vmi(2, uid="old"))
    assert own.freshest("ns/a", vmi(1, uid="new")) == vmi(1, uid="new")
    assert own.freshest("ns/a", None) is None


def test_nothing_is_kept_from_an_answer_without_a_version_or_after_forget() -> None:
    own = OwnWrites()
    own.wrote("ns/a", "1", None)
    own.wrote("ns/a", "1", {"metadata": {}})
    assert own.freshest("ns/a", vmi(1)) == vmi(1)
    own.wrote("ns/a", "1", vmi(2))
    own.forget("ns/a")
    assert own.freshest("ns/a", vmi(1)) == vmi(1)


def test_replaced_versions_are_bounded() -> None:
    own = OwnWrites()
    for version in range(1, 3 * SUPERSEDED_KEPT):
        own.wrote("ns/a", str(version), vmi(version + 1))
    assert own.freshest("ns/a", vmi(1)) == vmi(1), "the oldest replaced versions are let go"
