"""Hypothesis strategies for what users and launchers hand the agent: VMI manifests, env files
and handoffs, valid and near-valid.

A valid manifest sets (or leaves out) every field of ``handler/core/vmi_schema.py`` with
values the stack accepts; the strings that reach the domain XML (kernel args and paths,
disk paths, serials and names) and those that do not (labels, tags, scheduling fields)
are drawn from ugly text: unicode, XML metacharacters, quotes, newlines, control characters.
A near-valid manifest is a valid one with one place broken: a value of the wrong type, a
huge number, an unknown key, a key removed, or a string swapped for a nasty one.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

from handler.core.bdf import Bdf
from handler.core.device_env import resource_env_var

GENERIC = "qat.intel.com/generic"
RESOURCES = (GENERIC, "qat.intel.com/cy", "qat.intel.com/dc", "intel.com/qat-vf")
XML_METACHARACTERS = "<>&'\"]]>\n\r\t;$`\\ =,/"
NASTY_STRINGS = (
    "",
    " ",
    "<",
    "&amp;",
    "]]>",
    "\"'",
    "a\nb",
    "\r\n",
    "\x00",
    "\x1b[31m",
    "\u2028",
    "\ufeff",
    "\ud7ff",
    "\U0001f600",
    "../../etc/passwd",
    "/..",
    "/",
    "${HOME}",
    "%s%n",
    "x" * 5000,
)
HUGE_NUMBERS = (-1, 0, 2**31, 2**63, 2**64 + 1, 10**40, -(10**40), 1.5, float("inf"), float("nan"), "16Ei", "9" * 25)

ugly_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from(XML_METACHARACTERS + "aé中\U0001f600"), max_size=20),
    st.sampled_from(NASTY_STRINGS),
)
dns_label = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,12}[a-z0-9])?\Z")
dns_name = st.from_regex(r"\A[a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?\Z")
entry_name = st.from_regex(r"\A[a-zA-Z0-9][-_a-zA-Z0-9]{0,10}\Z")
printable_ugly = st.one_of(
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=30),
    st.text(alphabet=st.sampled_from(XML_METACHARACTERS.strip("\n\r\t") + "aé中\U0001f600"), max_size=20),
)
_printable_path = st.builds(lambda parts: "/" + "/".join(parts), st.lists(printable_ugly, min_size=1, max_size=3))
host_path = st.one_of(
    _printable_path,
    _printable_path,
    _printable_path,
    st.builds(lambda parts: "/" + "/".join(parts), st.lists(ugly_text, min_size=1, max_size=3)),
    st.sampled_from(("/var/lib/images/disk.img", "/boot/vmlinuz", "/a b/c'd\"e<&>.img", "/")),
)
quantity = st.one_of(
    st.sampled_from(("1Mi", "256Mi", "1Gi", "1.5Gi", "1048576", "512M", "16Ti")),
    st.integers(min_value=2**20, max_value=2**40),
)
bdf = st.builds(Bdf, st.just(0), st.integers(0, 255), st.integers(0, 31), st.integers(0, 7))


def _maybe(draw: st.DrawFn, value: Any) -> Any:
    """``value``, or the marker that leaves the key out."""
    return value if draw(st.booleans()) else _ABSENT


_ABSENT = object()


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not _ABSENT:
        target[key] = value


@st.composite
def device_entries(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(entry_name, max_size=3, unique=True))
    entries = []
    for name in names:
        entry: dict[str, Any] = {"name": name, "deviceName": draw(st.sampled_from(RESOURCES))}
        _put(entry, "tag", _maybe(draw, draw(ugly_text)))
        entries.append(entry)
    return entries


@st.composite
def disks_and_volumes(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    names = draw(st.lists(st.one_of(entry_name, ugly_text), max_size=3, unique=True))
    disks, volumes = [], []
    for name in names:
        disk: dict[str, Any] = {"name": name}
        inner: dict[str, Any] = {}
        _put(inner, "bus", _maybe(draw, draw(st.sampled_from(("virtio", "sata")))))
        _put(inner, "readonly", _maybe(draw, draw(st.booleans())))
        _put(disk, "disk", _maybe(draw, inner))
        _put(disk, "serial", _maybe(draw, draw(st.one_of(st.from_regex(r"\A[A-Za-z0-9_.+ -]{1,20}\Z"), ugly_text))))
        _put(disk, "bootOrder", _maybe(draw, draw(st.one_of(st.integers(1, 3), st.integers(1, 1000)))))
        host: dict[str, Any] = {"path": draw(host_path)}
        _put(host, "type", _maybe(draw, "Disk"))
        _put(host, "shared", _maybe(draw, draw(st.booleans())))
        disks.append(disk)
        volumes.append({"name": name, "hostDisk": host})
    return disks, draw(st.permutations(volumes))


@st.composite
def domain_specs(draw: st.DrawFn) -> dict[str, Any]:
    domain: dict[str, Any] = {}
    cpu: dict[str, Any] = {}
    _put(cpu, "cores", _maybe(draw, draw(st.integers(1, 512))))
    _put(cpu, "sockets", _maybe(draw, 1))
    _put(cpu, "threads", _maybe(draw, 1))
    _put(domain, "cpu", _maybe(draw, cpu))
    if draw(st.booleans()):
        domain["memory"] = {"guest": draw(quantity)}
    else:
        resources: dict[str, Any] = {"requests": {"memory": draw(quantity)}}
        _put(resources, "limits", _maybe(draw, {"memory": draw(quantity)}))
        _put(resources, "overcommitGuestOverhead", _maybe(draw, draw(st.booleans())))
        domain["resources"] = resources
    devices: dict[str, Any] = {}
    entries = draw(device_entries())
    split = draw(st.integers(0, len(entries)))
    _put(devices, "qats", entries[:split] if split or draw(st.booleans()) else _ABSENT)
    _put(devices, "hostDevices", entries[split:] if entries[split:] else _ABSENT)
    disks, volumes = draw(disks_and_volumes())
    if disks:
        devices["disks"] = disks
        domain["_volumes"] = volumes  # moved to spec.volumes by manifests()
    _put(devices, "interfaces", _maybe(draw, []))
    for flag, value in (
        ("autoattachPodInterface", False),
        ("autoattachGraphicsDevice", False),
        ("autoattachSerialConsole", True),
        ("autoattachMemBalloon", draw(st.booleans())),
    ):
        _put(devices, flag, _maybe(draw, value))
    domain["devices"] = devices
    if draw(st.booleans()):
        container: dict[str, Any] = {"kernelPath": draw(host_path)}
        _put(container, "initrdPath", _maybe(draw, draw(host_path)))
        for key in ("image", "imagePullPolicy", "imagePullSecret"):
            _put(container, key, _maybe(draw, draw(ugly_text)))
        boot: dict[str, Any] = {"container": container}
        _put(boot, "kernelArgs", _maybe(draw, draw(st.one_of(printable_ugly, ugly_text))))
        domain["firmware"] = {"kernelBoot": boot}
    _put(domain, "machine", _maybe(draw, {"type": draw(st.sampled_from(("q35", "pc-q35-7.2", "")))}))
    _put(domain, "features", _maybe(draw, {"acpi": {"enabled": True}}))
    return domain


@st.composite
def valid_manifests(draw: st.DrawFn) -> dict[str, Any]:
    """A manifest that every rule of the parser accepts, apart from the strings it draws."""
    domain = draw(domain_specs())
    spec: dict[str, Any] = {"domain": domain}
    volumes = domain.pop("_volumes", None)
    if volumes is not None:
        spec["volumes"] = volumes
    _put(spec, "terminationGracePeriodSeconds", _maybe(draw, draw(st.integers(0, 86400))))
    _put(spec, "nodeSelector", _maybe(draw, draw(st.dictionaries(ugly_text, ugly_text, max_size=2))))
    for key in ("schedulerName", "priorityClassName", "evictionStrategy"):
        _put(spec, key, _maybe(draw, draw(ugly_text)))
    _put(spec, "affinity", _maybe(draw, {"nodeAffinity": {"x": draw(ugly_text)}}))
    _put(spec, "tolerations", _maybe(draw, [{"key": draw(ugly_text)}]))
    meta: dict[str, Any] = {"name": draw(dns_name)}
    _put(meta, "namespace", _maybe(draw, draw(dns_label)))
    _put(meta, "uid", _maybe(draw, str(draw(st.uuids()))))
    _put(meta, "labels", _maybe(draw, draw(st.dictionaries(ugly_text, ugly_text, max_size=3))))
    _put(meta, "generation", _maybe(draw, draw(st.integers(1, 2**62))))
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "metadata": meta, "spec": spec}


nasty_values = st.one_of(
    st.sampled_from(NASTY_STRINGS),
    st.sampled_from(HUGE_NUMBERS),
    st.none(),
    st.booleans(),
    st.just([]),
    st.just({}),
    st.just({"unexpected": 1}),
    st.lists(ugly_text, max_size=2),
    ugly_text,
)


def _places(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key or index path in a document, for picking the one place to break."""
    found = [path] if path else []
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_places(value, (*path, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_places(value, (*path, index)))
    return found


@st.composite
def near_valid_manifests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid manifest with exactly one place changed: replaced, removed, or given a stray key."""
    doc = copy.deepcopy(draw(valid_manifests()))
    place = draw(st.sampled_from(_places(doc)))
    *parents, last = place
    holder = doc
    for step in parents:
        holder = holder[step]
    how = draw(st.sampled_from(("replace", "remove", "stray-key")))
    if how == "remove" and isinstance(holder, dict):
        del holder[last]
    elif how == "stray-key" and isinstance(holder[last], dict):
        holder[last][draw(st.one_of(ugly_text, st.just("bogus")))] = draw(nasty_values)
    else:
        holder[last] = draw(nasty_values)
    return doc


manifests = st.one_of(valid_manifests(), near_valid_manifests())


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
        place = draw(st.sampled_from(_places(doc)))
        *parents, last = place
        holder = doc
        for step in parents:
            holder = holder[step]
        holder[last] = draw(nasty_values)
    return draw(st.one_of(st.just(doc), nasty_values)) if draw(st.integers(0, 9)) == 0 else doc
