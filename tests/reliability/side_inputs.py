"""Generated env files (beside a manifest) and launcher handoff documents, valid and broken."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from handler.core.device_env import resource_env_var
from tests.reliability.primitives import bdf, dns_label, dns_name, ugly_text
from tests.reliability.strategies import nasty_values, places


@st.composite
def env_texts(draw: st.DrawFn, manifest: dict[str, Any]) -> str | None:
    """An env file for ``manifest``: the right variables (either convention), sometimes broken.
    None means no env file."""
    entries = _entries(manifest)
    if not entries or draw(st.integers(0, 9)) == 0:
        return None
    addresses = draw(st.lists(bdf, min_size=len(entries), max_size=len(entries), unique=True))
    resources = list(dict.fromkeys(str(entry.get("deviceName")) for entry in entries))
    lines = []
    if len(resources) == 1 and draw(st.booleans()):
        lines = [f"QAT{index}={address}" for index, address in enumerate(addresses)]
    else:
        for resource in resources:
            mine = [str(a) for a, e in zip(addresses, entries, strict=True) if str(e.get("deviceName")) == resource]
            lines.append(f"{resource_env_var(resource)}={','.join(mine)}")
    if draw(st.integers(0, 3)) == 0:  # near-valid: one line broken
        index = draw(st.integers(0, len(lines)))
        lines.insert(index, draw(st.one_of(ugly_text, st.builds(lambda v: f"QAT9={v}", ugly_text))))
    if draw(st.booleans()):
        lines.insert(0, draw(st.sampled_from(("# devices", "export QATX_OTHER=1", ""))))
    return "\n".join(lines) + "\n"


def _entries(manifest: Any) -> list[dict[str, Any]]:
    try:
        devices = manifest["spec"]["domain"]["devices"]
        found = [*devices.get("qats", []), *devices.get("hostDevices", [])]
    except (KeyError, TypeError, AttributeError):
        return []
    return [entry for entry in found if isinstance(entry, dict)] if isinstance(found, list) else []


@st.composite
def handoff_documents(draw: st.DrawFn) -> Any:
    """Handoff file contents as a launcher (or anyone who can write a slot) might leave them."""
    doc: dict[str, Any] = {
        "version": 1,
        "vmi": {"namespace": draw(dns_label), "name": draw(dns_name), "uid": str(draw(st.uuids()))},
        "podUID": str(draw(st.uuids())),
        "env": {"QAT0": str(draw(bdf))},
        "stopRequested": draw(st.booleans()),
        "graceSeconds": draw(st.one_of(st.none(), st.integers(0, 86400))),
    }
    if draw(st.booleans()):
        place = draw(st.sampled_from(places(doc)))
        *parents, last = place
        holder = doc
        for step in parents:
            holder = holder[step]
        holder[last] = draw(nasty_values)
    return draw(st.one_of(st.just(doc), nasty_values)) if draw(st.integers(0, 9)) == 0 else doc
