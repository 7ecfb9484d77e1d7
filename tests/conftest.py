"""Shared test configuration.

optcheck's own suite is deterministic by default: the pytest plugin
(``optcheck.pytest_plugin``) registers the Hypothesis profile ``optcheck-ci``
(derandomised, no deadline, no example database); it is loaded here unless
``OPTCHECK_PROFILE`` names another (``OPTCHECK_PROFILE=optcheck-dev`` for random exploration).
"""

from __future__ import annotations

import os

import pytest


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    from hypothesis import settings

    settings.load_profile(os.environ.get("OPTCHECK_PROFILE", "optcheck-ci"))
