"""What preparing guest files adds per VMI: a cloud-init ISO, and a cloud-init ISO plus a
containerDisk overlay, each against the same VMIs without them, measured in the same run.

    python bench/guest_files.py                 # 200 VMIs, 3 runs per variant, median
    python bench/guest_files.py --vmis 100 --repeat 5 --json

Part 1 runs the real agent CLI (in its own process, on test:///default, a simulated QAT host)
three times per repeat over the same VMIs with one VF each: *plain*, *+cloud-init* (a
cloudInitNoCloud volume) and *+cloud-init +containerDisk* (a containerDisk from an OCI layout,
whose image is fetched into the cache once before the clock starts: the per-VMI cost is the
overlay, the one-time fetch is reported on its own). The time is from the CLI's start to every
VMI Running in the status file on disk. Part 2 times GuestFiles.prepare alone, in this
process, for one VMI of each kind. A benchmark, never a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import machine
import throughput
from workload import NAMESPACE, RESOURCE, Workload, build_host

from handler.core.disk_sources import ContainerDisk
from handler.core.vmi_parse import parse_vmi
from handler.host.guest_files import GuestFiles
from handler.host.image_cache import ImageCache, Pending

USER_DATA = "#cloud-config\npassword: fedora\nchpasswd: { expire: False }\nruncmd:\n  - [ sh, -c, 'echo booted' ]\n"
VARIANTS = ("plain", "cloud-init", "cloud-init+containerDisk")


def manifest(name: str, variant: str, image: str) -> dict[str, Any]:
    disks: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    if "containerDisk" in variant:
        disks.append({"name": "containerdisk", "disk": {"bus": "virtio"}})
        volumes.append({"name": "containerdisk", "containerDisk": {"image": image}})
    if "cloud-init" in variant:
        disks.append({"name": "cloudinitdisk", "disk": {"bus": "virtio"}})
        volumes.append({"name": "cloudinitdisk", "cloudInitNoCloud": {"userData": USER_DATA}})
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "domain": {
                "memory": {"guest": "64Mi"},
                "devices": {"disks": disks, "qats": [{"name": "qat0", "deviceName": RESOURCE}]},
            },
            "volumes": volumes,
        },
    }


def make_layout(work: Path) -> tuple[str, Path]:
    """A containerDisk image (a 64 MiB qcow2 under /disk) in an OCI layout, made with umoci."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.support.oci_images import disk_layout, qcow2_disk

    layout = work / "layout"
    work.mkdir(parents=True, exist_ok=True)
    disk_layout(layout, "disk", {"/disk/disk.qcow2": qcow2_disk(work / "disk.qcow2", size_mib=64)})
    return f"oci:{layout}:disk", layout


def prefetch(state_dir: Path, image: str) -> float:
    cache = ImageCache(state_dir / "images")
    started = time.perf_counter()
    while isinstance(cache.lookup(ContainerDisk(image, None, "IfNotPresent")), Pending):
        time.sleep(0.005)
    return time.perf_counter() - started


def run_variant(
    work: Path, host_root: Path, vfs: tuple[Any, ...], count: int, variant: str, image: str
) -> dict[str, float]:
    vmi_dir, state_dir = work / "vmis", work / "state"
    vmi_dir.mkdir(parents=True)
    names = tuple(f"vmi-{index:04d}" for index in range(count))
    for name, vf in zip(names, vfs, strict=False):
        (vmi_dir / f"{name}.json").write_text(json.dumps(manifest(name, variant, image)))
        (vmi_dir / f"{name}.env").write_text(f"QAT0={vf}\n")
    fetch = prefetch(state_dir, image) if "containerDisk" in variant else 0.0
    workload = Workload(vmi_dir, state_dir, host_root, names, vfs[:count])
    run = throughput.run_agent(workload, work / "agent.log", workers=4)
    return {"seconds": run.seconds, "cpu_seconds": run.cpu_seconds, "fetch_seconds": fetch}


def part_one(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    host_root = Path(tempfile.mkdtemp(prefix="qat-bench-host-", dir="/dev/shm"))
    try:
        vfs = build_host(host_root)
        image, _ = make_layout(root)
        runs: dict[str, list[dict[str, float]]] = {variant: [] for variant in VARIANTS}
        for repeat in range(args.repeat):
            for variant in VARIANTS:  # interleaved, so drifting load hits every variant alike
                work = root / f"run-{repeat}-{variant}"
                runs[variant].append(run_variant(work, host_root, vfs, args.vmis, variant, image))
                shutil.rmtree(work, ignore_errors=True)
    finally:
        shutil.rmtree(host_root, ignore_errors=True)
    median = {v: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for v, rs in runs.items()}
    plain = median["plain"]
    result: dict[str, Any] = {"vmis": args.vmis, "repeat": args.repeat, "variants": median}
    for variant in VARIANTS[1:]:
        result[f"added_ms_per_vmi[{variant}]"] = 1000 * (median[variant]["seconds"] - plain["seconds"]) / args.vmis
        result[f"ratio[{variant}]"] = median[variant]["seconds"] / plain["seconds"]
        result[f"added_cpu_ms_per_vmi[{variant}]"] = (
            1000 * (median[variant]["cpu_seconds"] - plain["cpu_seconds"]) / args.vmis
        )
    return result


def part_two(root: Path, image: str, samples: int) -> dict[str, float]:
    """Milliseconds per GuestFiles.prepare for one VMI of each kind (median of ``samples``)."""
    files = GuestFiles(root / "guests", ImageCache(root / "state" / "images"))
    prefetch(root / "state", image)
    kinds = {
        "none (hostDisk only)": ({"name": "d", "disk": {}}, {"name": "d", "hostDisk": {"path": "/srv/d.img"}}),
        "cloudInitNoCloud ISO": ({"name": "d", "disk": {}}, {"name": "d", "cloudInitNoCloud": {"userData": USER_DATA}}),
        "emptyDisk 10Gi": ({"name": "d", "disk": {}}, {"name": "d", "emptyDisk": {"capacity": "10Gi"}}),
        "containerDisk overlay": ({"name": "d", "disk": {}}, {"name": "d", "containerDisk": {"image": image}}),
    }
    result: dict[str, float] = {}
    for label, (disk, volume) in kinds.items():
        times = []
        for _ in range(samples):
            doc = manifest("m", "plain", image)
            doc["metadata"]["uid"] = str(uuid.uuid4())
            doc["spec"]["domain"]["devices"]["disks"] = [disk]
            doc["spec"]["volumes"] = [volume]
            vmi = parse_vmi(doc)
            started = time.perf_counter()
            prepared = files.prepare(vmi)
            times.append(time.perf_counter() - started)
            assert prepared.refusal is None, prepared.refusal
            files.remove(vmi.uid)
        result[label] = 1000 * statistics.median(times)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vmis", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--samples", type=int, default=50, help="part 2: prepare() calls per kind")
    parser.add_argument("--work-dir", type=Path, default=Path("/var/tmp"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="qat-bench-guest-files-", dir=args.work_dir))
    try:
        one = part_one(args, root)
        image, _ = make_layout(root / "micro")
        two = part_two(root / "micro", image, args.samples)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report = {"machine": machine.describe(None), "agent": one, "prepare_ms": two}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(machine.summary_line(report["machine"]))
    print(f"{args.vmis} VMIs with one VF each, to all Running (median of {args.repeat}):")
    for variant, figures in one["variants"].items():
        extra = f", image fetched once before: {figures['fetch_seconds']:.2f} s" if figures["fetch_seconds"] else ""
        print(f"  {variant:26} {figures['seconds']:.2f} s  (cpu {figures['cpu_seconds']:.2f} s{extra})")
    for variant in VARIANTS[1:]:
        print(
            f"  added per VMI by {variant}: {one[f'added_ms_per_vmi[{variant}]']:.1f} ms wall, "
            f"{one[f'added_cpu_ms_per_vmi[{variant}]']:.1f} ms cpu ({one[f'ratio[{variant}]']:.2f}x plain)"
        )
    print("GuestFiles.prepare alone, per VMI (median):")
    for label, ms in two.items():
        print(f"  {label:24} {ms:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
