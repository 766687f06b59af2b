"""Hypothesis strategies for the VMI manifests users hand the agent, valid and near-valid (env
files and handoffs are in ``side_inputs.py``, the building blocks in ``primitives.py``).

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

from tests.reliability.primitives import (
    ABSENT,
    HUGE_NUMBERS,
    NASTY_STRINGS,
    RESOURCES,
    dns_label,
    dns_name,
    entry_name,
    host_path,
    maybe,
    printable_path,
    printable_ugly,
    put,
    quantity,
    ugly_text,
)


@st.composite
def device_entries(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(entry_name, max_size=3, unique=True))
    entries = []
    for name in names:
        entry: dict[str, Any] = {"name": name, "deviceName": draw(st.sampled_from(RESOURCES))}
        put(entry, "tag", maybe(draw, draw(ugly_text)))
        entries.append(entry)
    return entries


@st.composite
def volume_sources(draw: st.DrawFn) -> dict[str, Any]:
    """One volume source of each kind the schema knows, with ugly strings where users write text."""
    kind = draw(st.sampled_from(("hostDisk", "hostDisk", "emptyDisk", "containerDisk", "cloudInit", "cloudInit")))
    if kind == "hostDisk":
        host: dict[str, Any] = {"path": draw(host_path)}
        put(host, "type", maybe(draw, draw(st.sampled_from(("Disk", "DiskOrCreate")))))
        if host.get("type") == "DiskOrCreate":
            host["capacity"] = draw(quantity)
        put(host, "shared", maybe(draw, draw(st.booleans())))
        return {"hostDisk": host}
    if kind == "emptyDisk":
        return {"emptyDisk": {"capacity": draw(quantity)}}
    if kind == "containerDisk":
        container: dict[str, Any] = {"image": draw(st.one_of(st.sampled_from(IMAGES), printable_ugly))}
        put(container, "path", maybe(draw, draw(host_path)))
        put(container, "imagePullPolicy", maybe(draw, draw(st.sampled_from(("Always", "IfNotPresent", "Never")))))
        return {"containerDisk": container}
    payload: dict[str, Any] = {}
    user = draw(st.sampled_from(("userData", "userDataBase64", "secretRef")))
    payload[user] = {"name": draw(dns_name)} if user == "secretRef" else draw(st.one_of(printable_ugly, ugly_text))
    network = draw(st.sampled_from((None, "networkData", "networkDataBase64", "networkDataSecretRef")))
    if network == "networkDataSecretRef":
        payload[network] = {"name": draw(dns_name)}
    elif network is not None:
        payload[network] = draw(st.one_of(printable_ugly, ugly_text))
    return {draw(st.sampled_from(("cloudInitNoCloud", "cloudInitConfigDrive"))): payload}


IMAGES = ("quay.io/containerdisks/fedora:40", "registry.example/disk@sha256:" + "a" * 64, "busybox", "UPPER/case:tag")


@st.composite
def network_pairs(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """spec.domain.devices.interfaces and spec.networks, paired by name (sometimes not)."""
    names = draw(st.lists(entry_name, max_size=2, unique=True))
    interfaces, networks = [], []
    for position, name in enumerate(names):
        pod = position == 0 and draw(st.booleans())
        binding = draw(st.sampled_from(("bridge", "masquerade"))) if pod else "bridge"  # masquerade: pod only
        interface: dict[str, Any] = {"name": name, binding: {}}
        put(interface, "model", maybe(draw, draw(st.sampled_from(("virtio", "e1000e")))))
        mac = draw(st.one_of(st.from_regex(r"\A02:([0-9a-f]{2}:){4}[0-9a-f]{2}\Z"), printable_ugly))
        put(interface, "macAddress", maybe(draw, mac))
        put(interface, "pciAddress", maybe(draw, f"0000:{position + 2:02x}:00.0"))
        interfaces.append(interface)
        if pod:
            networks.append({"name": name, "pod": {}})
        else:
            multus: dict[str, Any] = {"networkName": draw(st.one_of(dns_name, printable_ugly))}
            put(multus, "default", maybe(draw, False))
            networks.append({"name": name, "multus": multus})
    return interfaces, networks


@st.composite
def disks_and_volumes(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    names = draw(st.lists(st.one_of(entry_name, ugly_text), max_size=3, unique=True))
    disks, volumes = [], []
    for name in names:
        disk: dict[str, Any] = {"name": name}
        inner: dict[str, Any] = {}
        put(inner, "bus", maybe(draw, draw(st.sampled_from(("virtio", "sata")))))
        put(inner, "readonly", maybe(draw, draw(st.booleans())))
        put(disk, "disk", maybe(draw, inner))
        put(disk, "serial", maybe(draw, draw(st.one_of(st.from_regex(r"\A[A-Za-z0-9_.+ -]{1,20}\Z"), ugly_text))))
        put(disk, "bootOrder", maybe(draw, draw(st.one_of(st.integers(1, 3), st.integers(1, 1000)))))
        if draw(st.integers(0, 5)) == 0:
            disk.pop("disk", None)
            disk["cdrom"] = {"bus": "sata", "readonly": True}
        disks.append(disk)
        volumes.append({"name": name, **draw(volume_sources())})
    return disks, draw(st.permutations(volumes))


@st.composite
def domain_specs(draw: st.DrawFn) -> dict[str, Any]:
    domain: dict[str, Any] = {}
    cpu: dict[str, Any] = {}
    put(cpu, "cores", maybe(draw, draw(st.integers(1, 512))))
    put(cpu, "sockets", maybe(draw, 1))
    put(cpu, "threads", maybe(draw, 1))
    put(domain, "cpu", maybe(draw, cpu))
    if draw(st.booleans()):
        domain["memory"] = {"guest": draw(quantity)}
    else:
        resources: dict[str, Any] = {
            "requests": {"memory": draw(quantity), "cpu": draw(st.sampled_from(("1", "500m")))}
        }
        put(resources, "limits", maybe(draw, {"memory": draw(quantity)}))
        put(resources, "overcommitGuestOverhead", maybe(draw, draw(st.booleans())))
        domain["resources"] = resources
    devices: dict[str, Any] = {}
    entries = draw(device_entries())
    split = draw(st.integers(0, len(entries)))
    put(devices, "qats", entries[:split] if split or draw(st.booleans()) else ABSENT)
    put(devices, "hostDevices", entries[split:] if entries[split:] else ABSENT)
    disks, volumes = draw(disks_and_volumes())
    if disks:
        devices["disks"] = disks
        domain["_volumes"] = volumes  # moved to spec.volumes by manifests()
    interfaces, networks = draw(network_pairs())
    if interfaces:
        devices["interfaces"] = interfaces
        domain["_networks"] = networks
    put(devices, "rng", maybe(draw, {}))
    for flag, value in (
        ("autoattachPodInterface", False),
        ("autoattachGraphicsDevice", False),
        ("autoattachSerialConsole", True),
        ("autoattachMemBalloon", draw(st.booleans())),
    ):
        put(devices, flag, maybe(draw, value))
    domain["devices"] = devices
    if draw(st.booleans()):
        container: dict[str, Any] = {"kernelPath": draw(st.one_of(printable_path, host_path))}
        put(container, "initrdPath", maybe(draw, draw(host_path)))
        for key in ("image", "imagePullPolicy", "imagePullSecret"):
            put(container, key, maybe(draw, draw(ugly_text)))
        boot: dict[str, Any] = {"container": container}
        put(boot, "kernelArgs", maybe(draw, draw(st.one_of(printable_ugly, ugly_text))))
        domain["firmware"] = {"kernelBoot": boot}
    put(domain, "machine", maybe(draw, {"type": draw(st.sampled_from(("q35", "pc-q35-7.2", "")))}))
    put(domain, "features", maybe(draw, {"acpi": {"enabled": True}}))
    return domain


@st.composite
def valid_manifests(draw: st.DrawFn) -> dict[str, Any]:
    """A manifest that every rule of the parser accepts, apart from the strings it draws."""
    domain = draw(domain_specs())
    spec: dict[str, Any] = {"domain": domain}
    volumes = domain.pop("_volumes", None)
    if volumes is not None:
        spec["volumes"] = volumes
    networks = domain.pop("_networks", None)
    if networks is not None:
        spec["networks"] = networks
    put(spec, "terminationGracePeriodSeconds", maybe(draw, draw(st.integers(0, 86400))))
    put(spec, "nodeSelector", maybe(draw, draw(st.dictionaries(ugly_text, ugly_text, max_size=2))))
    for key in ("schedulerName", "priorityClassName", "evictionStrategy"):
        put(spec, key, maybe(draw, draw(ugly_text)))
    put(spec, "affinity", maybe(draw, {"nodeAffinity": {"x": draw(ugly_text)}}))
    put(spec, "tolerations", maybe(draw, [{"key": draw(ugly_text)}]))
    put(spec, "topologySpreadConstraints", maybe(draw, [{"maxSkew": 1, "topologyKey": draw(ugly_text)}]))
    meta: dict[str, Any] = {"name": draw(dns_name)}
    put(meta, "namespace", maybe(draw, draw(dns_label)))
    put(meta, "uid", maybe(draw, str(draw(st.uuids()))))
    put(meta, "labels", maybe(draw, draw(st.dictionaries(ugly_text, ugly_text, max_size=3))))
    put(meta, "generation", maybe(draw, draw(st.integers(1, 2**62))))
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


def places(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key or index path in a document, for picking the one place to break."""
    found = [path] if path else []
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(places(value, (*path, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(places(value, (*path, index)))
    return found


@st.composite
def near_valid_manifests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid manifest with exactly one place changed: replaced, removed, or given a stray key."""
    doc = copy.deepcopy(draw(valid_manifests()))
    place = draw(st.sampled_from(places(doc)))
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
