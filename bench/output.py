"""How a bench script prints its result: the JSON itself with ``--json``, else its report."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def emit(result: dict[str, Any], as_json: bool, report: Callable[[dict[str, Any]], None]) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        report(result)
