"""Which QAT services a resource name asks for, and whether a Gen4+ PF's ``cfg_services`` offers them.

The Intel QAT device plugin names resources after services on Gen4 and later
(``qat.intel.com/cy``, ``/dc``, ``/sym``, ``/asym``); ``generic`` (and every pre-Gen4
device) takes any VF.
"""

from __future__ import annotations

_WANTS = {
    "cy": {"sym", "asym"},
    "sym": {"sym"},
    "asym": {"asym"},
    "dc": {"dc"},
    "dcc": {"dcc"},
}


def services_wanted(resource: str) -> set[str]:
    """The services a resource needs; empty when any VF will do."""
    return set(_WANTS.get(resource.rsplit("/", 1)[-1], set()))


def offers(cfg_services: str | None, resource: str) -> bool:
    """True if a PF configured with ``cfg_services`` (None: pre-Gen4) serves ``resource``."""
    wanted = services_wanted(resource)
    if not wanted or cfg_services is None:
        return True
    configured = {part.strip() for part in cfg_services.replace(",", ";").split(";") if part.strip()}
    return bool(wanted & configured) if resource.endswith("/cy") else wanted <= configured
