"""``qat-handler crd``: print or write the VirtualMachineInstance CRD generated from the field table."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from handler.cli.common import Formatter, fail
from handler.core.crd_schema import vmi_crd

CRD_FILE = "deploy/crds/virtualmachineinstances.kubevirt.io.yaml"
REGENERATE = f"qat-handler crd --output {CRD_FILE}"
"""The one command that rewrites the CRD after a field is added to handler/core/vmi_schema.py."""

HEADER = f"""\
# Generated from handler/core/vmi_schema.py (the field table the agent's parser reads).
# Do not edit by hand; after changing the table run:
#   {REGENERATE}
"""

EXAMPLES = f"""\
examples:
  {REGENERATE}
  qat-handler crd | kubectl apply -f -
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "crd",
        help="print the VirtualMachineInstance CRD generated from the parser's field table",
        description="Print the apiextensions.k8s.io/v1 CRD for virtualmachineinstances.kubevirt.io "
        "(versions v1 and v1alpha3, one schema): exactly the fields the agent accepts.",
        epilog=EXAMPLES,
        formatter_class=Formatter,
    )
    parser.add_argument("--output", type=Path, default=None, metavar="FILE", help="write here instead of stdout")
    parser.set_defaults(run=run)


def render() -> str:
    """The CRD file's text: a header naming its source, then the YAML."""
    body: str = yaml.safe_dump(vmi_crd(), sort_keys=False, default_flow_style=False, width=110)
    return HEADER + body


def run(args: argparse.Namespace) -> int:
    text = render()
    if args.output is None:
        print(text, end="")
        return 0
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    except OSError as error:
        return fail(f"{args.output}: {error.strerror}; fix: choose a writable path")
    return 0
