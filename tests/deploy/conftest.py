"""Fixtures for the deployment-artefact tests: the external tools they run.

promtool and amtool come from Debian's `prometheus` and `prometheus-alertmanager`;
kubectl (for `kubectl kustomize`, which needs no cluster) from the machine image. A
missing tool goes through tests/conftest.py's `service_missing`, so with
REMEDIATOR_REQUIRE_SERVICES=1 it fails the test instead of skipping it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest
from deploy_support import shared_conftest


@pytest.fixture
def tool(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Look up an executable; missing means skip, or fail under REMEDIATOR_REQUIRE_SERVICES=1."""
    shared = shared_conftest(request.config)

    def find(name: str) -> str:
        path = shutil.which(name)
        if path is None:
            shared.service_missing(name, FileNotFoundError(f"{name} is not on PATH"))
            raise AssertionError("unreachable: service_missing fails or skips")
        return path

    return find
