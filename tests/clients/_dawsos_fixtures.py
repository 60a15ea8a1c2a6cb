"""Test-side helpers for the DawsOS target: fresh databases and Redis key prefixes.

Import as ``from clients._dawsos_fixtures import ...`` (tests/ is on sys.path). The
shared settings and the missing-service policy come from tests/conftest.py; it is
looked up among pytest's loaded plugins, not by ``import conftest``, because pytest
rebinds that module name to whichever directory's conftest it loaded last.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from remediator.errors import TargetTimeout, TargetUnavailable
from tests.fixtures import dawsos as testing_dawsos
from tests.support import redis_with_prefix  # noqa: F401 - re-exported
from tests.support import root_conftest as shared_conftest


def admin_dsn(config: pytest.Config) -> str:
    return str(shared_conftest(config).PG_DSN)


@asynccontextmanager
async def fresh_dawsos_database(config: pytest.Config, *, seed: bool = True) -> AsyncIterator[str]:
    """A new seeded DawsOS database for one test; dropped afterwards."""
    shared = shared_conftest(config)
    try:
        dsn = await testing_dawsos.create_dawsos_database(shared.PG_DSN, seed=seed)
    except (TargetUnavailable, TargetTimeout) as exc:
        shared.service_missing("PostgreSQL", exc)
        raise
    try:
        yield dsn
    finally:
        await testing_dawsos.drop_database(shared.PG_DSN, dsn)
