"""P5 and P6: what the agent adds to a real guest's start and stop, on qemu:///system (TCG).

    python bench/real_guest.py [--rounds 3] [--json]

P5: from the manifest appearing (atomic rename into the watched directory) to the guest's
boot marker on its serial console, against ``createXML`` of the very XML the agent renders
for that VMI (what ``virsh create`` does), timed from the call to the same marker. Split at
libvirt's STARTED event: up to it is what the agent adds (noticing the file, checks, the
persistent define, the start); after it the guest boots, the same work for both, so any
difference there is the machine's load. ``defineXML`` alone (then undefined) is timed too.

P6: on a guest with acpid, from the manifest's removal to the domain's STOPPED event,
against the same guest's own shutdown after a bare ACPI power-button press
(``virsh shutdown --mode acpi``), timed from the call to STOPPED.

Within each round agent and baseline take turns, and which goes first alternates from round
to round, so load drifts and whatever the previous step left behind hit both alike. A benchmark, never a test:
nothing asserts. Goals: P5 <= +0.2 s, P6 <= +0.5 s over the baseline (medians).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

import libvirt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from handler.core.domain_xml import render_domain  # noqa: E402
from handler.core.render_settings import RenderSettings  # noqa: E402
from handler.core.vmi_parse import parse_vmi  # noqa: E402
from handler.host.domain_templates import load_templates  # noqa: E402
from tests.integration.agent_harness import (  # noqa: E402
    AgentProcess,
    LifecycleEvents,
    Workspace,
    domain_name,
    remove_domain,
)
from tests.support.guest_image import BOOT_MARKER, ensure_guest_image, wait_for_serial  # noqa: E402
from tests.support.libvirtd import ensure_libvirtd  # noqa: E402

GOAL_P5 = 0.2
GOAL_P6 = 0.5
TIMEOUT = 120.0


def bare_xml(workspace: Workspace, manifest: Path, name: str) -> tuple[str, Path]:
    """The agent's own rendering of ``manifest``, renamed so it can run beside the agent's guests."""
    document = json.loads(manifest.read_text())
    document["metadata"]["name"] = name
    document["metadata"]["uid"] = str(uuid.uuid4())
    log_dir = workspace.state_dir / "logs"
    vmi = parse_vmi(document)
    # An owner of its own: a domain with none counts as everyone's, and the running agent would clean it up.
    settings = RenderSettings(domain_type="qemu", log_dir=str(log_dir), owner="bench/bare", templates=load_templates())
    return render_domain(vmi, (), settings), log_dir


def p5_agent(workspace: Workspace, image: object, events: LifecycleEvents, round_no: int) -> tuple[float, float]:
    """Seconds to the boot marker, and to libvirt's STARTED event."""
    name = f"p5-agent-{round_no}"
    wall, started = time.time(), time.monotonic()
    workspace.add_vmi(name, image, grace=0)  # type: ignore[arg-type]
    wait_for_serial(workspace.serial_log(name), BOOT_MARKER, TIMEOUT, poll=0.01)
    took = time.monotonic() - started
    running = events.wait_for(domain_name(name), libvirt.VIR_DOMAIN_EVENT_STARTED, TIMEOUT, since=wall).at - wall
    since = time.time()
    workspace.remove_vmi(name)
    events.wait_for(domain_name(name), libvirt.VIR_DOMAIN_EVENT_UNDEFINED, TIMEOUT, since=since)
    return took, running


def p5_bare(
    workspace: Workspace, conn: libvirt.virConnect, events: LifecycleEvents, template: Path, round_no: int
) -> tuple[float, float]:
    name = f"p5-bare-{round_no}"
    xml, log_dir = bare_xml(workspace, template, name)
    wall, started = time.time(), time.monotonic()
    domain = conn.createXML(xml, 0)
    # From the call, not from its return: createXML itself takes ~0.4 s of the guest's start.
    wait_for_serial(log_dir / f"{domain.name()}.serial.log", BOOT_MARKER, TIMEOUT, poll=0.01)
    took = time.monotonic() - started
    running = events.wait_for(domain.name(), libvirt.VIR_DOMAIN_EVENT_STARTED, TIMEOUT, since=wall).at - wall
    domain.destroy()
    return took, running


def define_alone(workspace: Workspace, conn: libvirt.virConnect, template: Path, round_no: int) -> float:
    """The persistent define the agent makes before its start, timed alone on the same XML."""
    xml, _ = bare_xml(workspace, template, f"p5-define-{round_no}")
    started = time.monotonic()
    domain = conn.defineXML(xml)
    took = time.monotonic() - started
    domain.undefine()
    return took


def p6_agent(workspace: Workspace, image: object, events: LifecycleEvents, round_no: int) -> float:
    name = f"p6-agent-{round_no}"
    workspace.add_vmi(name, image, grace=60)  # type: ignore[arg-type]
    wait_for_serial(workspace.serial_log(name), BOOT_MARKER, TIMEOUT)
    since = workspace.remove_vmi(name)
    stopped = events.wait_for(domain_name(name), libvirt.VIR_DOMAIN_EVENT_STOPPED, TIMEOUT, since=since)
    events.wait_for(domain_name(name), libvirt.VIR_DOMAIN_EVENT_UNDEFINED, TIMEOUT, since=since)
    return stopped.at - since


def p6_bare(workspace: Workspace, conn: libvirt.virConnect, events: LifecycleEvents, template: Path, n: int) -> float:
    xml, log_dir = bare_xml(workspace, template, f"p6-bare-{n}")
    domain = conn.createXML(xml, 0)
    wait_for_serial(log_dir / f"{domain.name()}.serial.log", BOOT_MARKER, TIMEOUT)
    since = time.time()
    domain.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
    return events.wait_for(domain.name(), libvirt.VIR_DOMAIN_EVENT_STOPPED, TIMEOUT, since=since).at - since


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    ensure_libvirtd()
    image = ensure_guest_image("acpi")
    workspace = Workspace.create()
    events = LifecycleEvents()
    conn = libvirt.open("qemu:///system")
    agent = AgentProcess(workspace, "--acpi-resend-seconds", "3")
    parts = ("p5_agent", "p5_bare", "p5_agent_started", "p5_bare_started", "define", "p6_agent", "p6_bare")
    times: dict[str, list[float]] = {part: [] for part in parts}
    try:
        agent.wait_first_sync()
        template = Workspace.create().add_vmi("template", image, grace=0)  # not watched: only a source of XML
        for n in range(args.rounds):
            p5: dict[str, Callable[[], tuple[float, float]]] = {
                "p5_agent": partial(p5_agent, workspace, image, events, n),
                "p5_bare": partial(p5_bare, workspace, conn, events, template, n),
            }
            for side in sorted(p5, reverse=n % 2 == 1):  # who goes first alternates
                took, running = p5[side]()
                times[side].append(took)
                times[f"{side}_started"].append(running)
            times["define"].append(define_alone(workspace, conn, template, n))
            times["p6_bare"].append(p6_bare(workspace, conn, events, template, n))
            times["p6_agent"].append(p6_agent(workspace, image, events, n))
    finally:
        agent.signal()
        agent.wait_exit(TIMEOUT)
        for domain in conn.listAllDomains():
            if domain.name().startswith(domain_name("")):
                remove_domain(conn, domain.name())
        events.close()
        conn.close()
    medians = {key: statistics.median(values) for key, values in times.items()}
    report = {"rounds": times, "medians": medians}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for part, goal, what in (("p5", GOAL_P5, "manifest -> boot marker"), ("p6", GOAL_P6, "stop -> SHUTOFF")):
        agent_s, bare_s = medians[f"{part}_agent"], medians[f"{part}_bare"]
        verdict = "met" if agent_s - bare_s <= goal else "missed"
        print(
            f"{part.upper()} {what}: agent {agent_s:.2f} s, bare {bare_s:.2f} s, "
            f"added {agent_s - bare_s:+.2f} s (goal <= +{goal} s: {verdict}); "
            f"rounds agent {_rounded(times[part + '_agent'])}, bare {_rounded(times[part + '_bare'])}"
        )
    to_agent, to_bare = medians["p5_agent_started"], medians["p5_bare_started"]
    print(
        f"P5 split at STARTED: agent {to_agent:.3f} s, bare {to_bare:.3f} s, added {to_agent - to_bare:+.3f} s; "
        f"STARTED -> marker: agent {medians['p5_agent'] - to_agent:.2f} s, bare {medians['p5_bare'] - to_bare:.2f} s; "
        f"defineXML alone {medians['define'] * 1000:.1f} ms (rounds {_rounded(times['define'], 3)}); "
        f"to STARTED rounds agent {_rounded(times['p5_agent_started'], 3)}, "
        f"bare {_rounded(times['p5_bare_started'], 3)}"
    )
    return 0


def _rounded(values: list[float], digits: int = 2) -> list[float]:
    return [round(value, digits) for value in values]


if __name__ == "__main__":
    sys.exit(main())
