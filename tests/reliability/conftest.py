"""The reliability suite's figures: each test reports what it ran (trials, cases, faults, data lost).

With WHITEBOX_RELIABILITY_FIGURES=path set (scripts/reliability_report.py sets it), every figure is
appended to that JSON-lines file, from which docs/RELIABILITY.md is written; otherwise figures go nowhere.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import pytest

from tests.reliability.saved import saved  # noqa: F401  (the session fixture, here so that it is built once)


@pytest.fixture
def figures(request) -> Callable[..., None]:
    def record(**numbers: Any) -> None:
        path = os.environ.get("WHITEBOX_RELIABILITY_FIGURES")
        if path:
            with open(path, "a") as f:
                f.write(json.dumps({"test": request.node.nodeid, "doc": (request.function.__doc__ or "").strip(),
                                    **numbers}) + "\n")

    return record
