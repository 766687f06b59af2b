"""Hypothesis settings for the generated-input tests: ``ci`` (default) or ``long``
(``QAT_HANDLER_FUZZ=long``, as ``bench/chaos.py`` runs them)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

EXAMPLES = {"ci": 1000, "long": 10000}
PROFILE = os.environ.get("QAT_HANDLER_FUZZ", "ci")
if PROFILE not in EXAMPLES:
    raise SystemExit(f"QAT_HANDLER_FUZZ={PROFILE!r}; use one of {', '.join(EXAMPLES)}")
for _name, _count in EXAMPLES.items():
    settings.register_profile(
        f"qat-{_name}",
        max_examples=_count,
        deadline=None,
        database=None,  # nothing written into the checkout; a failure prints its reproduction blob
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
PROFILE_SETTINGS = settings.get_profile(f"qat-{PROFILE}")
SMALL_SETTINGS = settings(PROFILE_SETTINGS, max_examples=EXAMPLES[PROFILE] // 4)
"""For the cheaper properties on handoffs, whose inputs are small and few-shaped."""
