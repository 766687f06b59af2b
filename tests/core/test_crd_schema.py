"""The CRD in deploy/crds/ is generated from the parser's field table, and the two agree.

* the file is exactly what the generator gives (regenerate with the command below);
* the generated schema lists exactly the table's paths;
* walking the table: the parser accepts every field the schema has, and refuses, by name,
  an unknown key at every place the schema closes.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import pytest
import yaml
from jsonschema import Draft4Validator

from handler.cli.crd_cmd import CRD_FILE, REGENERATE, render
from handler.core.crd_schema import PRINTER_COLUMNS, schema_paths, vmi_crd
from handler.core.refusal import Refused
from handler.core.vmi_parse import parse_vmi
from handler.core.vmi_schema import Node, leaf_paths, node_at
from tests.deploy.manifests import REPO

FIX = f"the CRD is generated from handler/core/vmi_schema.py; run: {REGENERATE}"
UID = "6a1f0c9e-0001-4d6b-9e51-000000000001"

SAMPLES: dict[str, Any] = {
    "spec.domain": {"memory": {"guest": "1Gi"}},
    "spec.domain.memory": {"guest": "1Gi"},
    "spec.domain.firmware.kernelBoot": {"container": {"kernelPath": "/boot/vmlinuz"}},
    "spec.domain.firmware.kernelBoot.container": {"kernelPath": "/boot/vmlinuz"},
    "spec.volumes[]": {"name": "root", "hostDisk": {"path": "/images/root.img"}},
    "spec.domain.devices.autoattachPodInterface": False,
    "spec.domain.devices.autoattachGraphicsDevice": False,
    "spec.domain.features.acpi.enabled": True,
    "spec.domain.machine.type": "q35",
    "spec.domain.memory.guest": "1Gi",
    "spec.domain.firmware.kernelBoot.container.kernelPath": "/boot/vmlinuz",
    "spec.domain.firmware.kernelBoot.container.initrdPath": "/boot/initrd",
    "spec.volumes[].hostDisk.path": "/images/root.img",
    "spec.volumes[].containerDisk.path": "/disk/root.qcow2",
    "spec.volumes[].cloudInitNoCloud": {"userData": "#cloud-config"},
    "spec.volumes[].cloudInitConfigDrive": {"userData": "#cloud-config"},
    "spec.volumes[].cloudInitNoCloud.userDataBase64": "eA==",
    "spec.volumes[].cloudInitNoCloud.networkDataBase64": "eA==",
    "spec.volumes[].cloudInitConfigDrive.userDataBase64": "eA==",
    "spec.volumes[].cloudInitConfigDrive.networkDataBase64": "eA==",
    "spec.volumes[].name": "root",
    "spec.domain.devices.disks[].name": "root",
    "spec.networks[]": {"name": "x0", "pod": {}},
    "spec.networks[].multus.default": False,
    "spec.domain.devices.interfaces[].macAddress": "02:00:00:00:00:01",
    "spec.domain.devices.interfaces[].pciAddress": "0000:81:01.0",
}
"""Values the parser accepts where a generic sample would be refused for its value."""
KEY_SAMPLES = {"deviceName": "qat.intel.com/generic", "name": "x0"}

REFUSED_FOR_ANY_VALUE = {}
"""Schema paths the parser refuses whatever the value. Keep this short: by the project's rule a field
the stack always refuses belongs out of the table."""


def test_the_crd_file_is_the_generators_output() -> None:
    path = REPO / CRD_FILE
    if os.environ.get("REGENERATE_GOLDEN") == "1":
        path.write_text(render(), encoding="utf-8")
    assert path.exists(), f"{CRD_FILE} is missing; {FIX}"
    assert path.read_text(encoding="utf-8") == render(), f"{CRD_FILE} is stale; {FIX}"


def test_the_schema_has_exactly_the_tables_paths() -> None:
    versions = vmi_crd()["spec"]["versions"]
    for version in versions:
        spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
        assert sorted(schema_paths(spec)) == sorted(leaf_paths()), f"{version['name']}: {FIX}"
    assert versions[0]["schema"] == versions[1]["schema"], "v1 and v1alpha3 share one schema"


def test_versions_columns_and_no_status_subresource() -> None:
    crd = vmi_crd()
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "virtualmachineinstances.kubevirt.io"
    assert spec["scope"] == "Namespaced" and spec["names"]["shortNames"] == ["vmi", "vmis"]
    v1, v1alpha3 = spec["versions"]
    assert (v1["name"], v1["served"], v1["storage"], v1.get("deprecated")) == ("v1", True, True, None)
    assert (v1alpha3["name"], v1alpha3["served"], v1alpha3["storage"], v1alpha3["deprecated"]) == (
        "v1alpha3",
        True,
        False,
        True,
    )
    for version in (v1, v1alpha3):
        assert "subresources" not in version
        assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Age", "Phase", "IP", "NodeName", "Ready"]
        root = version["schema"]["openAPIV3Schema"]
        assert root["properties"]["status"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert {c["name"]: c["jsonPath"] for c in PRINTER_COLUMNS}["IP"] == ".status.interfaces[0].ipAddress"


def test_v1_qat_requires_name_and_device_name() -> None:
    root = vmi_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    qat = root["properties"]["spec"]["properties"]["domain"]["properties"]["devices"]["properties"]["qats"]["items"]
    assert qat["type"] == "object"
    assert set(qat["required"]) == {"name", "deviceName"}
    assert qat["properties"]["name"]["type"] == qat["properties"]["deviceName"]["type"] == "string"


# -- walking the table against the parser ---------------------------------------------------


def sample(node: Node, path: str) -> Any:
    if path in SAMPLES:
        return copy.deepcopy(SAMPLES[path])
    key = path.rsplit(".", 1)[-1].rstrip("[]")
    if node.kind == "object":
        return {name: sample(node.children[name], f"{path}.{name}") for name in node.required}
    if node.kind == "array":
        assert node.items is not None
        return [sample(node.items, f"{path}[]")]
    if node.kind == "map":
        return {"k": sample(node.items, f"{path}[]")} if node.items else {}
    if node.kind == "string":
        return node.enum[0] if node.enum else KEY_SAMPLES.get(key, "x")
    if node.kind == "integer":
        return node.minimum if node.minimum is not None else 1
    if node.kind == "boolean":
        return True
    if node.kind == "quantity":
        return "1Gi"
    return {}


def manifest_with(path: str, value: Any) -> tuple[dict[str, Any], str]:
    """A minimal valid manifest with ``path`` set to ``value`` (lists get one item), and the path as
    the parser names it (``[]`` becomes ``[0]``)."""
    doc: dict[str, Any] = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "vm", "namespace": "ns", "uid": UID},
        "spec": sample(node_at("spec"), "spec"),
    }
    doc["spec"]["domain"].setdefault("memory", {"guest": "1Gi"})
    parts = path.split(".")[1:]
    holder: Any = doc["spec"]
    walked = "spec"
    for index, part in enumerate(parts):
        name, is_list = part.removesuffix("[]"), part.endswith("[]")
        walked += f".{name}"
        last = index == len(parts) - 1
        if last and not is_list:
            holder[name] = value
            break
        node = node_at(walked)
        if is_list and node.kind == "map":
            holder = holder.setdefault(name, {})
            holder["k"] = value if last else sample(node.items, f"{walked}[]")  # type: ignore[arg-type]
            walked += "[]"
            holder = holder["k"]
            continue
        if is_list:
            items = holder.setdefault(name, [sample(node.items, f"{walked}[]")])  # type: ignore[arg-type]
            walked += "[]"
            if last:
                items[0] = value
            holder = items[0]
            continue
        holder = holder.setdefault(name, sample(node, walked))
    _join_disks(doc)
    _join_networks(doc)
    return doc, path.replace("[]", "[0]")


def _join_disks(doc: dict[str, Any]) -> None:
    """A disk needs its volume and the other way round: add the partner the walk did not.
    A volume has one source: the sample's hostDisk goes when the walk set another one, and a
    hostDisk capacity comes with the type it sizes."""
    spec = doc["spec"]
    for volume in spec.get("volumes") or []:
        if isinstance(volume, dict) and len(volume) > 2:
            volume.pop("hostDisk", None)
        for source in ("cloudInitNoCloud", "cloudInitConfigDrive"):
            data = volume.get(source) if isinstance(volume, dict) else None
            if isinstance(data, dict):  # the sample's userData gives way to the walked user data
                present = [key for key in data if key in ("userData", "userDataBase64", "secretRef")]
                for key in present[:-1]:
                    del data[key]
        host_disk = volume.get("hostDisk") if isinstance(volume, dict) else None
        if isinstance(host_disk, dict) and "capacity" in host_disk and "type" not in host_disk:
            host_disk["type"] = "DiskOrCreate"
    devices = spec["domain"].setdefault("devices", {})
    if spec.get("volumes") and not devices.get("disks"):
        devices["disks"] = [{"name": spec["volumes"][0]["name"]}]
    if devices.get("disks") and not spec.get("volumes"):
        volume = {"name": devices["disks"][0]["name"], "hostDisk": {"path": "/images/root.img"}}
        spec["volumes"] = [volume]


def _join_networks(doc: dict[str, Any]) -> None:
    """A NIC needs its network and the other way round, under one name."""
    spec = doc["spec"]
    devices = spec["domain"].setdefault("devices", {})
    interfaces, networks = devices.get("interfaces") or [], spec.get("networks") or []
    if networks and not interfaces:
        devices["interfaces"] = [{"name": networks[0]["name"]}]
    if interfaces and not networks:
        spec["networks"] = [{"name": interfaces[0].get("name", "x0"), "pod": {}}]
    network = (spec.get("networks") or [{}])[0]
    if network.get("multus") is not None and "pod" in network:
        del network["pod"]  # the walk set multus: exactly one source


def refused_for_any_value(path: str) -> bool:
    return any(path == p or path.startswith((p + ".", p + "[")) for p in REFUSED_FOR_ANY_VALUE)


def schema_fields() -> list[str]:
    return [p for p in leaf_paths() if p != "spec"]


def closed_objects() -> list[str]:
    return [p for p in leaf_paths() if node_at(p).kind == "object"]


@pytest.mark.parametrize("path", schema_fields())
def test_the_parser_accepts_every_field_the_schema_has(path: str) -> None:
    doc, where = manifest_with(path, sample(node_at(path), path))
    try:
        parse_vmi(doc)
    except Refused as refused:
        if refused_for_any_value(path):
            return
        pytest.fail(f"the schema has {where} but the parser refuses it: {refused.refusal.line()}; {FIX}")


@pytest.mark.parametrize("path", closed_objects())
def test_the_parser_refuses_a_key_the_schema_lacks(path: str) -> None:
    doc, where = manifest_with(f"{path}.zzUnknown", "x")
    with pytest.raises(Refused) as caught:
        parse_vmi(doc)
    refusal = caught.value.refusal
    assert refusal.reason == "UnsupportedField", f"{where}: {refusal.line()}"
    assert refusal.subject == where or refused_for_any_value(path), (
        f"the parser takes {where}, which the schema lacks: {refusal.line()}; {FIX}"
    )


# -- the schema as the API server applies it -------------------------------------------------


def strict(schema: Any) -> Any:
    """The schema as strict field validation (kubectl's default) applies it: unknown keys refused."""
    if isinstance(schema, dict):
        out = {key: strict(value) for key, value in schema.items() if not key.startswith("x-kubernetes")}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def api_server_check(doc: dict[str, Any]) -> list[str]:
    schema = strict(vmi_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in Draft4Validator(schema).iter_errors(doc)]


EXAMPLE_VMIS = [
    REPO / "deploy/examples/vmi-qat.yaml",
    *sorted(p for p in (REPO / "examples/vmis").iterdir() if p.suffix in (".yaml", ".json")),
]


@pytest.mark.parametrize("path", EXAMPLE_VMIS, ids=lambda p: p.name)
def test_the_example_vmis_fit_the_schema(path: Any) -> None:
    assert api_server_check(yaml.safe_load(path.read_text())) == []


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        (lambda d: d["spec"]["domain"]["devices"]["qats"][0].pop("deviceName"), "'deviceName' is a required property"),
        (lambda d: d["spec"]["domain"]["devices"]["qats"][0].pop("name"), "'name' is a required property"),
        (lambda d: d["spec"]["domain"].update(clock={}), "Additional properties are not allowed ('clock'"),
        (lambda d: d["spec"]["domain"]["cpu"].update(cores="2"), "'2' is not of type 'integer'"),
        (lambda d: d["spec"].update(terminationGracePeriodSeconds=-1), "-1 is less than the minimum of 0"),
    ],
)
def test_the_schema_refuses_what_the_parser_refuses(edit: Any, error: str) -> None:
    doc = yaml.safe_load((REPO / "deploy/examples/vmi-qat.yaml").read_text())
    edit(doc)
    assert any(error in found for found in api_server_check(doc)), api_server_check(doc)
    with pytest.raises(Refused):
        parse_vmi({**doc, "metadata": {**doc["metadata"], "uid": UID}})
