"""How often libvirt's event loop wakes per new guest, and what it costs the calling process.

    python bench/event_wakeups.py                              # on a private libvirtd, 1,000 guests, 3 rounds
    python bench/event_wakeups.py --connect test+unix:///default --guests 500 --json

Over a daemon's socket, a client that has an event loop registered hands the socket to the
loop between calls, so each call wakes the loop thread (in Python, a wake-up also takes the
interpreter lock). Each child process, fresh per variant and in alternating order, defines and
starts ``--guests`` test-driver guests with the agent's three calls (a look-up that finds
nothing, ``defineXML``, ``create``) while listening for lifecycle events, and counts the loop's
iterations:

* *one connection*: calls and events share one connection, as the agent does;
* *events apart*: events on a second connection, calls on the first;
* *calls before loop*: the calls' connection was opened before the event loop was registered,
  so libvirt never gives it to the loop (no wake-ups from calls, but also no keepalive or close
  notice on it). The agent gets the same effect with a process that never registers a loop,
  and a listener process that has one (``handler/virt/event_listener.py``).

A benchmark, never a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from output import emit

HERE = Path(__file__).resolve().parent
VARIANTS = ("one connection", "events apart", "calls before loop")
XML = "<domain type='test'><name>wakeup-{index}</name><memory>65536</memory><os><type>hvm</type></os></domain>"


def child(variant: str, uri: str, guests: int) -> dict[str, Any]:
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    first = libvirt.open(uri) if variant == "calls before loop" else None
    libvirt.virEventRegisterDefaultImpl()
    calls = first or libvirt.open(uri)
    events = calls if variant == "one connection" else libvirt.open(uri)
    iterations = [0]
    seen = [0]

    def loop() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()
            iterations[0] += 1

    threading.Thread(target=loop, daemon=True).start()
    events.domainEventRegisterAny(
        None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lambda *_: seen.__setitem__(0, seen[0] + 1), None
    )
    time.sleep(0.2)
    before, cpu = iterations[0], time.process_time()
    for index in range(guests):
        with contextlib.suppress(libvirt.libvirtError):
            calls.lookupByName(f"wakeup-{index}")
        calls.defineXML(XML.format(index=index)).create()
    cpu = time.process_time() - cpu
    deadline, last = time.monotonic() + 10, -1
    while seen[0] != last and time.monotonic() < deadline:  # until the events stop coming
        last = seen[0]
        time.sleep(0.5)
    woke = iterations[0] - before
    for index in range(guests):
        domain = calls.lookupByName(f"wakeup-{index}")
        domain.destroy()
        domain.undefine()
    return {"iterations_per_guest": woke / guests, "cpu": cpu, "events": seen[0]}


def measure(args: argparse.Namespace, uri: str) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    for round_ in range(args.repeat):
        for variant in VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]:
            command = [sys.executable, __file__, "--child", variant, uri, str(args.guests)]
            runs[variant].append(json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout))
    medians = {v: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for v, rs in runs.items()}
    return {"uri": uri, "guests": args.guests, "runs": runs, "median": medians}


def report(result: dict[str, Any]) -> None:
    print(f"{result['guests']} guests on {result['uri']} (look-up, define, create each), "
          f"median of {len(result['runs'][VARIANTS[0]])} alternating rounds")  # fmt: skip
    for variant, m in result["median"].items():
        print(f"  {variant:<18} event loop woke {m['iterations_per_guest']:4.1f} times a guest, "
              f"calling process {m['cpu']:.3f} CPU-s, {m['events']:.0f} events seen")  # fmt: skip


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connect", help="a daemon's URI (default: the test driver of a private libvirtd)")
    parser.add_argument("--guests", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the median is reported")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        uri = args.connect
        if uri is None:
            sys.path.insert(0, str(HERE.parent))
            from tests.support.private_libvirtd import private_libvirtd

            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="qat-bench-wakeups-", dir="/var/tmp")))
            daemon = stack.enter_context(private_libvirtd(work)).uri
            uri = "test+unix:///default?socket=" + daemon.split("socket=", 1)[1]
        result = measure(args, uri)
    emit(result, args.json, report)


if __name__ == "__main__":
    main()
