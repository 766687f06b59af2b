"""``qat-handler demo``: the agent's main job on the embedded default.

libvirt's in-process test hypervisor stands in for libvirtd and a generated sysfs tree
for a QAT host (C62x VFs bound to vfio-pci), so it runs on any machine.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import libvirt
from lxml import etree

from handler.baremetal.node import BareMetalNode
from handler.cli import status_cmd
from handler.cli.common import Formatter, agent_owner, fail
from handler.core.bdf import Bdf
from handler.core.render_settings import RenderSettings
from handler.core.stop_policy import StopPolicy
from handler.host.domain_templates import load_templates
from handler.host.fresh_checks import FreshDeviceChecks
from handler.host.simulated_host import SimulatedHost, SimulatedPf, build_simulated_host
from handler.ops.logs import configure_logging
from handler.settings import AgentSettings
from handler.virt.errors import VirtError

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "vmis"
DEMO_HOST = SimulatedHost(pfs=(SimulatedPf(family="C62x", bdf=Bdf(0, 0x3D, 0, 0), vfs=8),))
EXAMPLES = """\
examples:
  qat-handler demo
  qat-handler demo --vmi-dir my-vmis --work-dir /tmp/qat-demo --keep
  qat-handler demo --vmi-dir examples/kubevirt --image-store /tmp/qat-images
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "demo",
        help="run the agent on libvirt's test hypervisor and a simulated QAT host",
        description="Build a simulated QAT host (one C62x PF with 8 VFs on vfio-pci), start the agent on "
        "libvirt's in-process test:///default hypervisor with the example VMIs, show them Running "
        "with their QAT hostdevs, then stop the agent, which shuts the guests down.",
        epilog=EXAMPLES,
        formatter_class=Formatter,
    )
    parser.add_argument("--vmi-dir", type=Path, default=EXAMPLES_DIR, help="manifests to run")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the host tree and state go")
    parser.add_argument(
        "--image-store",
        type=Path,
        default=None,
        metavar="DIR",
        help="an OCI layout serving containerDisk images by reference (see examples/kubevirt)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for Running")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    configure_logging("console", "info")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="qat-handler-demo-"))
    try:
        return _demo(args, work)
    finally:
        if not args.keep and args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


def _demo(args: argparse.Namespace, work: Path) -> int:
    host_root, vmi_dir, state_dir = work / "host", work / "vmis", work / "state"
    vfs = build_simulated_host(host_root, DEMO_HOST)
    _say(f"simulated QAT host: {len(vfs)} C62x VFs on vfio-pci under {host_root}")
    shutil.copytree(args.vmi_dir, vmi_dir, dirs_exist_ok=True)
    settings = AgentSettings(
        connect="test:///default",
        vmi_dir=vmi_dir,
        state_dir=state_dir,
        host_root=host_root,
        image_store=args.image_store,
        render=RenderSettings(
            domain_type="kvm",
            log_dir=str(state_dir / "logs"),
            files_dir=str(state_dir / "guests"),
            owner=agent_owner(state_dir, None),
            templates=load_templates(),
        ),
        on_stop=StopPolicy.SHUTDOWN.value,
    )
    node = BareMetalNode(settings, FreshDeviceChecks(host_root))
    try:
        node.start()
    except VirtError as error:
        return fail(str(error))
    wanted = set(node.source.keys())
    _say(f"agent started on test:///default with {len(wanted)} VMIs from {vmi_dir}")
    running = _wait_running(node, wanted, args.timeout)
    node.store.flush()
    _say("status (qat-handler status):")
    status_cmd.run(argparse.Namespace(state_dir=state_dir, output="wide"))
    _show_hostdevs(node)
    _say("stopping the agent (--on-stop shutdown): guests get an ACPI shutdown")
    node.shutdown(StopPolicy.SHUTDOWN)
    status_cmd.run(argparse.Namespace(state_dir=state_dir, output="table"))
    if running != wanted:
        return fail(f"not Running after {args.timeout:.0f} s: {', '.join(sorted(wanted - running))}", code=1)
    _say(f"demo done: {len(running)} VMIs reached Running with their QAT VFs and were shut down")
    return 0


def _wait_running(node: BareMetalNode, wanted: set[str], timeout: float) -> set[str]:
    deadline = time.monotonic() + timeout
    running: set[str] = set()
    while time.monotonic() < deadline:
        running = {k for k in wanted if (s := node.store.last_status(k)) and s.phase == "Running"}
        if running == wanted:
            break
        time.sleep(0.1)
    return running


def _show_hostdevs(node: BareMetalNode) -> None:
    conn = node.hypervisor.connection.get()
    owned = {domain.name for domain in node.reconciler.owned_domains()}
    for dom in sorted(conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE), key=lambda d: d.name()):
        if dom.name() not in owned:
            continue
        root = etree.fromstring(dom.XMLDesc(0).encode())
        _show_disks(dom.name(), root)
        hostdevs = root.findall("devices/hostdev")
        if not hostdevs:
            continue
        _say(f"domain {dom.name()} (running) passes through:")
        for hostdev in hostdevs:
            etree.indent(hostdev, space="  ")
            for line in etree.tostring(hostdev, encoding="unicode").strip().splitlines():
                print(f"    {line}")


def _show_disks(name: str, root: etree._Element) -> None:
    disks = root.findall("devices/disk")
    if disks:
        _say(f"domain {name} disks:")
    for disk in disks:
        target, source, driver = disk.find("target"), disk.find("source"), disk.find("driver")
        dev = target.get("dev", "") if target is not None else ""
        bus = target.get("bus", "") if target is not None else ""
        kind = driver.get("type", "") if driver is not None else ""
        path = source.get("file", "") if source is not None else ""
        print(f"    {dev} ({bus}, {disk.get('device')}, {kind}): {path}")


def _say(text: str) -> None:
    print(f"==> {text}", flush=True)
    sys.stdout.flush()
