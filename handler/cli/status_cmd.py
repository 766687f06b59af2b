"""``qat-handler status``: what the bare-metal agent reports, like ``kubectl get vmi``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from handler.baremetal.status_store import STATUS_FILE, read_status_file
from handler.cli.common import DEFAULTS, Formatter, fail

EXAMPLES = """\
examples:
  qat-handler status
  qat-handler status --state-dir /var/lib/qat-handler -o json | jq '.[] | select(.phase != "Running")'
"""
COLUMNS = ("NAMESPACE", "NAME", "PHASE", "DOMAIN", "DEVICES", "AGE")
WIDE_COLUMNS = ["NAMESPACE", "NAME", "PHASE", "DOMAIN", "DEVICES", "IP", "AGE", "MESSAGE"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "status",
        help="show the VMIs the bare-metal agent manages",
        description="Print every VMI the bare-metal agent knows, with its phase, domain and QAT devices, "
        "read from the agent's state directory. Works while the agent runs.",
        epilog=EXAMPLES,
        formatter_class=Formatter,
    )
    parser.add_argument("--state-dir", type=Path, default=DEFAULTS.state_dir, help="the agent's state directory")
    parser.add_argument("-o", "--output", choices=("table", "json", "wide"), default="table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not args.state_dir.is_dir():  # not an error: an agent that is starting makes it
        print(f"qat-handler: --state-dir {args.state_dir} does not exist (yet); is it the agent's?", file=sys.stderr)
    try:
        vmis = read_status_file(args.state_dir)
    except OSError as error:
        return fail(f"{args.state_dir / STATUS_FILE}: {error.strerror}; fix: run as the agent's user (root)")
    except ValueError:
        return fail(f"{args.state_dir / STATUS_FILE}: not JSON; fix: restart the agent, which writes it anew")
    rows = [_row(key, data) for key, data in sorted(vmis.items())]
    if args.output == "json":
        print(json.dumps(rows, indent=2))
        return 0
    table = [WIDE_COLUMNS if args.output == "wide" else list(COLUMNS)]
    for row in rows:
        cells = [
            row["namespace"],
            row["name"],
            row["phase"],
            row["domain"],
            ",".join(row["devices"]) or "<none>",
            _age(row["created"]),
        ]
        if args.output == "wide":
            cells[5:5] = [",".join(i["ipAddress"] or "-" for i in row["interfaces"]) or "<none>"]
            cells.append(row["message"])
        table.append(cells)
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        print("   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    return 0


def _row(key: str, data: dict[str, Any]) -> dict[str, Any]:
    namespace, _, name = key.partition("/")
    unhappy = [c for c in data.get("conditions", []) if c.get("status") == "False" and c.get("message")]
    return {
        "namespace": namespace,
        "name": name,
        "phase": data.get("phase", "Unknown"),
        "reason": data.get("reason", ""),
        "domain": data.get("domain", ""),
        "devices": [d["bdf"] for d in data.get("devices", [])],
        "deviceDetails": data.get("devices", []),
        "conditions": data.get("conditions", []),
        "interfaces": data.get("interfaces", []),
        "message": unhappy[-1]["message"] if unhappy else "",
        "created": data.get("created", time.time()),
        "events": data.get("events", []),
    }


def _age(created: float) -> str:
    seconds = max(0, int(time.time() - created))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
