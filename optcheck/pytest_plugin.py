"""pytest plugin for optcheck (entry point ``pytest11``): Hypothesis profiles.

Registers the Hypothesis profiles ``optcheck-ci`` (derandomised, no deadline,
print blob) and ``optcheck-dev``. Loaded only when pytest runs; imports nothing
heavy from optcheck at collection.
"""

from __future__ import annotations

import os
from typing import Any


def pytest_configure(config: Any) -> None:
    """Register the Hypothesis profiles and load the one asked for (``OPTCHECK_PROFILE`` or CI)."""
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "optcheck-ci",
        derandomize=True,
        deadline=None,
        print_blob=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.register_profile("optcheck-dev", deadline=None, max_examples=50)
    name = os.environ.get("OPTCHECK_PROFILE") or ("optcheck-ci" if os.environ.get("CI") else None)
    if name:
        settings.load_profile(name)
