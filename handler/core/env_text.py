"""``KEY=VALUE`` environment files, the bare-metal stand-in for a pod's environment."""

from __future__ import annotations

import re

from handler.core.refusal import Refusal, Refused

# Dashes and dots too: KubeVirt keeps the dash of a resource such as intel.com/qat-vf in
# PCI_RESOURCE_INTEL_COM_QAT-VF, and Kubernetes allows such names in a pod environment.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def parse_env_text(text: str, source: str) -> dict[str, str]:
    """Parse lines of ``KEY=VALUE`` (``export`` prefix, quotes and ``#`` comments allowed)."""
    env: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not _NAME.match(name):
            raise Refused(
                Refusal(
                    "DeviceEnvInvalid",
                    f"{source} line {number}",
                    f"{raw.strip()!r} is not a KEY=VALUE line",
                    "write one variable per line, e.g. QAT0=0000:3d:01.1",
                )
            )
        if name in env:
            raise Refused(
                Refusal(
                    "DeviceEnvInvalid",
                    f"{source} line {number}",
                    f"sets {name} a second time",
                    "set each variable once",
                )
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[name] = value
    return env
